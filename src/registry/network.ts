// Where the webhook may connect. A pod author chooses the image hosts, so with
// `acceleration.registries: ["*"]` a pod could point apparate at the cloud metadata
// service, the kubelet or the API server. The check is made on the address that is
// actually dialled (inside undici's connector, after DNS), so a name that resolves to
// a public address once and to 127.0.0.1 the next time (DNS rebinding) gains nothing.
// Every direct dial goes through that check, proxy configured or not (NO_PROXY names,
// plain-http registries with only HTTPS_PROXY set). Through a proxy, the proxy resolves
// names and is the boundary for them; IP literals and "localhost" are refused before
// they reach it (assertProxyTarget).
import { lookup as dnsLookup, type LookupAddress, type LookupAllOptions, type LookupOneOptions } from "node:dns";
import { BlockList, isIP } from "node:net";
import { ApparateError } from "../errors.js";

export class AddressRefusedError extends ApparateError {}

/** Ranges that are never "the internet": a registry reached through "*" may not resolve into them. */
const SPECIAL_V4: ReadonlyArray<[string, number, string]> = [
  ["0.0.0.0", 8, "unspecified"], ["10.0.0.0", 8, "private"], ["100.64.0.0", 10, "shared (CGNAT)"],
  ["127.0.0.0", 8, "loopback"], ["169.254.0.0", 16, "link-local"], ["172.16.0.0", 12, "private"],
  ["192.0.0.0", 24, "IETF protocol"], ["192.168.0.0", 16, "private"], ["198.18.0.0", 15, "benchmarking"],
  ["224.0.0.0", 4, "multicast"], ["240.0.0.0", 4, "reserved"],
];
const SPECIAL_V6: ReadonlyArray<[string, number, string]> = [
  ["::", 128, "unspecified"], ["::1", 128, "loopback"], ["::", 96, "deprecated IPv4-compatible"], ["fc00::", 7, "private (ULA)"],
  ["fe80::", 10, "link-local"], ["ff00::", 8, "multicast"],
];

const special: Array<{ list: BlockList; kind: string }> = [...SPECIAL_V4.map(([a, p, k]) => ({ a, p, k, f: "ipv4" as const })), ...SPECIAL_V6.map(([a, p, k]) => ({ a, p, k, f: "ipv6" as const }))]
  .map(({ a, p, k, f }) => { const list = new BlockList(); list.addSubnet(a, p, f); return { list, kind: k }; });

/** An IPv4 address hidden in an IPv6 one (::ffff:a.b.c.d, NAT64 64:ff9b::a.b.c.d) is judged as IPv4. */
function unwrap(address: string): { address: string; family: "ipv4" | "ipv6" } {
  const a = address.toLowerCase();
  if (isIP(a) === 4) return { address: a, family: "ipv4" };
  const m = /^(?:::ffff:|64:ff9b::)(?:(\d+\.\d+\.\d+\.\d+)|([0-9a-f]{1,4}):([0-9a-f]{1,4}))$/.exec(a);
  if (m) {
    if (m[1]) return { address: m[1], family: "ipv4" };
    const hi = Number.parseInt(m[2]!, 16), lo = Number.parseInt(m[3]!, 16);
    return { address: `${hi >> 8}.${hi & 255}.${lo >> 8}.${lo & 255}`, family: "ipv4" };
  }
  return { address: a, family: "ipv6" };
}

/** What kind of non-public address this is, or undefined for a public one. */
export function specialAddressKind(address: string): string | undefined {
  const u = unwrap(address);
  for (const s of special) if (s.list.check(u.address, u.family)) return s.kind;
  return undefined;
}

export interface DialPolicyOptions {
  /** Hosts the operator named (acceleration.registries, registry.tokenRealms): any address. */
  namedHosts?: Iterable<string>;
  /** registry.allowPrivateNetworks: host[:port] entries and CIDR ranges. */
  allowPrivate?: Iterable<string>;
  /** Any address: for the operator's own commands (`apparate convert`), never for what pods name. */
  anyAddress?: boolean;
}

/** host[:port] without brackets around an IPv6 literal, lower-cased. */
function splitHostPort(s: string): { host: string; port: string } {
  const v = s.trim().toLowerCase();
  const m = /^\[([^\]]+)\](?::(\d+))?$/.exec(v);
  if (m) return { host: m[1]!, port: m[2] ?? "" };
  const i = v.lastIndexOf(":");
  if (i > 0 && v.indexOf(":") === i) return { host: v.slice(0, i), port: v.slice(i + 1) };
  return { host: v, port: "" };
}

export function parseCidr(s: string): { address: string; prefix: number; family: "ipv4" | "ipv6" } | undefined {
  const m = /^([^/]+)\/(\d{1,3})$/.exec(s.trim());
  if (!m) return undefined;
  const v = isIP(m[1]!);
  const prefix = Number(m[2]);
  if (v === 0 || prefix > (v === 4 ? 32 : 128)) return undefined;
  return { address: m[1]!, prefix, family: v === 4 ? "ipv4" : "ipv6" };
}

/** A CIDR range, or one IP address as a range of one. */
export function parseAddressRange(s: string): { address: string; prefix: number; family: "ipv4" | "ipv6" } | undefined {
  const v = isIP(s.trim());
  if (v !== 0) return { address: s.trim(), prefix: v === 4 ? 32 : 128, family: v === 4 ? "ipv4" : "ipv6" };
  return parseCidr(s);
}

/** Address ranges to test a peer address against; an IPv4 address inside IPv6 (::ffff:a.b.c.d) matches its IPv4 range. */
export class AddressRanges {
  private readonly list = new BlockList();
  readonly size: number;

  constructor(entries: Iterable<string>) {
    let n = 0;
    for (const e of entries) {
      const r = parseAddressRange(e);
      if (!r) throw new ApparateError("address-range", `not an address range: ${JSON.stringify(e)}`, e);
      this.list.addSubnet(r.address, r.prefix, r.family);
      n++;
    }
    this.size = n;
  }

  has(address: string): boolean {
    if (this.size === 0 || isIP(address) === 0) return false;
    const u = unwrap(address);
    return this.list.check(u.address, u.family) || this.list.check(address, isIP(address) === 6 ? "ipv6" : "ipv4");
  }
}

/**
 * The decision, pure: may `host:port` be dialled at `address`? Public addresses always;
 * loopback, link-local, private and other special ranges only for hosts named by the
 * operator, or when registry.allowPrivateNetworks lists the host or a range holding it.
 */
export class DialPolicy {
  private readonly named = new Set<string>();
  private readonly ranges = new BlockList();
  private readonly anyAddress: boolean;

  constructor(opts: DialPolicyOptions = {}) {
    this.anyAddress = opts.anyAddress === true;
    for (const h of opts.namedHosts ?? []) this.addName(h);
    for (const e of opts.allowPrivate ?? []) {
      const c = parseCidr(e);
      if (c) this.ranges.addSubnet(c.address, c.prefix, c.family);
      else this.addName(e);
    }
  }

  private addName(h: string): void {
    const { host, port } = splitHostPort(h);
    this.named.add(port ? `${host}:${port}` : host);
  }

  private isNamed(host: string, port: string | number): boolean {
    const h = host.toLowerCase().replace(/^\[|\]$/g, "");
    return this.named.has(h) || this.named.has(`${h}:${port}`);
  }

  /** Undefined when allowed, else why not (words apparate wrote: the host is the one it was asked to dial). */
  check(host: string, port: string | number, address: string): string | undefined {
    if (this.anyAddress) return undefined;
    const kind = specialAddressKind(address);
    if (kind === undefined || this.isNamed(host, port)) return undefined;
    const u = unwrap(address);
    if (this.ranges.check(u.address, u.family) || this.ranges.check(address, isIP(address) === 6 ? "ipv6" : "ipv4")) return undefined;
    return `${host.slice(0, 100)} is on a ${kind} address; list it in registry.allowPrivateNetworks to allow it`;
  }

  /** Throws AddressRefusedError for an IP-literal host that may not be dialled. */
  assertLiteral(host: string, port: string | number): void {
    const h = host.replace(/^\[|\]$/g, "");
    if (isIP(h) === 0) return;
    const why = this.check(h, port, h);
    if (why) throw new AddressRefusedError("EADDRESSREFUSED", `address refused: ${why}`, host);
  }

  /**
   * Throws AddressRefusedError for a request target ("host:port", as in an HTTP CONNECT)
   * that may not be handed to a proxy. The proxy resolves names, so it is the boundary
   * for them; what apparate can judge without resolving is judged here: IP literals, and
   * "localhost" names (RFC 6761: always loopback, which would be the proxy's own).
   */
  assertProxyTarget(target: string): void {
    const { host, port } = splitHostPort(target);
    const h = host.replace(/\.$/, "");
    const address = isIP(h) !== 0 ? h : h === "localhost" || h.endsWith(".localhost") ? "127.0.0.1" : undefined;
    if (address === undefined) return;
    const why = this.check(h, port, address);
    if (why) throw new AddressRefusedError("EADDRESSREFUSED", `address refused: ${why}`, target);
  }

  /**
   * A dns.lookup replacement for net/tls.connect: resolves, drops the addresses this
   * policy refuses, and fails with AddressRefusedError when none is left.
   */
  lookupFor(port: string | number): typeof dnsLookup {
    const guarded = (hostname: string, options: LookupOneOptions | LookupAllOptions | number | ((...a: unknown[]) => void), callback?: (...a: unknown[]) => void): void => {
      const cb = (typeof options === "function" ? options : callback)!;
      const opts = typeof options === "object" ? options : typeof options === "number" ? { family: options } : {};
      dnsLookup(hostname, { ...opts, all: true }, (err, addresses: LookupAddress[]) => {
        if (err) { cb(err); return; }
        let refusal: string | undefined;
        const ok = addresses.filter((a) => { const why = this.check(hostname, port, a.address); refusal ??= why; return why === undefined; });
        if (ok.length === 0) { cb(new AddressRefusedError("EADDRESSREFUSED", `address refused: ${refusal ?? `${hostname} has no address`}`, hostname)); return; }
        if ((opts as LookupAllOptions).all) cb(null, ok);
        else cb(null, ok[0]!.address, ok[0]!.family);
      });
    };
    return guarded as unknown as typeof dnsLookup;
  }
}
