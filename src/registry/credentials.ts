// Registry credentials from docker config JSON (kubernetes.io/dockerconfigjson and
// the legacy kubernetes.io/dockercfg), matched to an image the way kubelet's keyring
// does: schemes ignored, ports must match, "*." globs per host label, the key's path a
// string prefix of the image's, longest key first, all matches kept, and Docker Hub's
// "https://index.docker.io/v1/" key only as a fallback when no other key matches.
// test/unit/kubelet-parity.test.ts cites the upstream test behind each rule.
import { createHash } from "node:crypto";
import { ApparateError } from "../errors.js";

export class CredentialError extends ApparateError {}

export interface Credential {
  readonly username: string;
  readonly password: string;
  /** Where it came from, for logs: never the secret itself. */
  readonly source: string;
}

interface Entry { host: string; port: string; path: string; key: string; creds: Credential[] }

const HUB_ALIASES = new Set(["index.docker.io", "registry-1.docker.io", "docker.io"]);
// kubelet's defaultRegistryHost: its key is consulted only when nothing else matched.
const HUB_FALLBACK_HOST = "index.docker.io";
// host[:port]: a name (no spaces: kubelet's url.Parse refuses them) or a bracketed IPv6
// address, and a port of digits only.
const HOST_PORT = /^(\[[^\]]*\]|[^:\s]*)(?::(\d+))?$/;

function splitKey(loc: string): { host: string; port: string; path: string; fallback: boolean } | undefined {
  const v = loc.replace(/^[a-z][a-z0-9+.-]*:\/\//i, "");
  const slash = v.indexOf("/");
  let hostport = slash < 0 ? v : v.slice(0, slash);
  let path = slash < 0 ? "" : v.slice(slash);
  // docker treats /v1/ and /v2/ as the bare host (ResolveAuthConfig).
  if (path.startsWith("/v1/") || path.startsWith("/v2/")) path = path.slice(3);
  // kubelet keeps the path as written ("/team/" is not "/team"); only "/" is the bare host.
  if (path === "/") path = "";
  if (!hostport) return undefined;
  // kubelet ignores an entry its URL parser refuses ("r.io:abc": the port is not a number).
  const m = HOST_PORT.exec(hostport);
  if (!m) return undefined;
  const port = m[2] ?? "";
  hostport = m[1]!.toLowerCase();
  const fallback = hostport === HUB_FALLBACK_HOST && port === "" && path === "";
  if (HUB_ALIASES.has(hostport)) hostport = "docker.io";
  return { host: hostport, port, path, fallback };
}

/** The image side of a match: no scheme and no /v1/ folding, just host, port and "/path". */
function splitTarget(domain: string, path: string): { host: string; port: string; path: string } | undefined {
  const m = HOST_PORT.exec(domain);
  if (!m) return undefined;
  let host = m[1]!.toLowerCase();
  if (HUB_ALIASES.has(host)) host = "docker.io";
  return { host, port: m[2] ?? "", path: path ? `/${path}` : "" };
}

/** Glob of one DNS label: "*" and "?" only, linear (no regex on user input). */
function labelMatch(glob: string, s: string): boolean {
  let gi = 0, si = 0, starG = -1, starS = 0;
  while (si < s.length) {
    if (gi < glob.length && (glob[gi] === "?" || glob[gi] === s[si])) { gi++; si++; }
    else if (gi < glob.length && glob[gi] === "*") { starG = gi++; starS = si; }
    else if (starG >= 0) { gi = starG + 1; si = ++starS; }
    else return false;
  }
  while (gi < glob.length && glob[gi] === "*") gi++;
  return gi === glob.length;
}

export interface DockerConfigJson { auths?: Record<string, DockerAuth>; [k: string]: unknown }
interface DockerAuth { username?: string; password?: string; auth?: string; identitytoken?: string }

// As kubelet's DockerConfigEntry.UnmarshalJSON: a non-empty `auth` overrides `username`
// and `password`, and an empty username (base64(":token")) is a valid credential.
function toCredential(a: DockerAuth, source: string): Credential | undefined {
  if (typeof a.auth === "string" && a.auth !== "") {
    const decoded = Buffer.from(a.auth, "base64").toString("utf8");
    const i = decoded.indexOf(":");
    return i < 0 ? undefined : { username: decoded.slice(0, i), password: decoded.slice(i + 1), source };
  }
  const username = typeof a.username === "string" ? a.username : undefined;
  const password = typeof a.password === "string" ? a.password : undefined;
  if (username === undefined && password === undefined) return undefined;
  return { username: username ?? "", password: password ?? "", source };
}

/** A set of docker config entries, matched like kubelet's BasicDockerKeyring. */
export class Keyring {
  private readonly entries: Entry[] = [];
  private readonly hubFallback: Credential[] = [];

  /**
   * One keyring from several, in order: how kubelet's MakeDockerKeyring adds all of a
   * pod's pull secrets to one BasicDockerKeyring, so the most specific key of any secret
   * wins and the Docker Hub fallback applies only when no secret has a matching key.
   */
  static merged(keyrings: readonly Keyring[]): Keyring {
    if (keyrings.length === 1) return keyrings[0]!;
    const k = new Keyring();
    for (const r of keyrings) {
      for (const e of r.entries) k.put(e, e.creds);
      k.hubFallback.push(...r.hubFallback);
    }
    k.sort();
    return k;
  }

  private put(parts: Omit<Entry, "key" | "creds">, creds: readonly Credential[]): void {
    const key = `${parts.host}${parts.port ? ":" + parts.port : ""}${parts.path}`;
    let e = this.entries.find((x) => x.key === key);
    if (!e) { e = { host: parts.host, port: parts.port, path: parts.path, key, creds: [] }; this.entries.push(e); }
    e.creds.push(...creds);
  }

  // Longest (most specific) keys first, as kubelet sorts its index in reverse.
  private sort(): void {
    this.entries.sort((x, y) => (x.key < y.key ? 1 : x.key > y.key ? -1 : 0));
  }

  /** Adds the `auths` of a .dockerconfigjson, or the bare map of a legacy .dockercfg. */
  add(config: DockerConfigJson | Record<string, DockerAuth>, source: string): void {
    const auths = (config as DockerConfigJson).auths && typeof (config as DockerConfigJson).auths === "object"
      ? (config as DockerConfigJson).auths!
      : (config as Record<string, DockerAuth>);
    for (const [loc, a] of Object.entries(auths)) {
      if (!a || typeof a !== "object") continue;
      const parts = splitKey(loc);
      const cred = toCredential(a, source);
      if (!parts || !cred) continue;
      if (parts.fallback) this.hubFallback.push(cred);
      else this.put(parts, [cred]);
    }
    this.sort();
  }

  get size(): number { return this.entries.length + (this.hubFallback.length > 0 ? 1 : 0); }

  /** Credentials for `domain/path`, most specific first. */
  lookup(domain: string, path: string): Credential[] {
    const t = splitTarget(domain, path);
    if (!t) return [];
    const tLabels = t.host.split(".");
    const out: Credential[] = [];
    for (const e of this.entries) {
      if (e.port !== t.port) continue;
      const eLabels = e.host.split(".");
      if (eLabels.length !== tLabels.length) continue;
      if (!eLabels.every((g, i) => labelMatch(g, tLabels[i]!))) continue;
      // A plain string prefix, as kubelet's urlsMatch: "/team" also matches "/teamx/web".
      if (!t.path.startsWith(e.path)) continue;
      out.push(...e.creds);
    }
    if (out.length === 0 && t.host === "docker.io" && t.port === "") return [...this.hubFallback];
    return out;
  }
}

export function parseDockerConfig(text: string, source: string): Keyring {
  let doc: unknown;
  try { doc = JSON.parse(text); } catch (err) {
    throw new CredentialError("dockerconfig-invalid", `${source}: not valid JSON`, source, { cause: err });
  }
  if (!doc || typeof doc !== "object") throw new CredentialError("dockerconfig-invalid", `${source}: not a JSON object`, source);
  const k = new Keyring();
  k.add(doc as DockerConfigJson, source);
  return k;
}

/** A short, stable fingerprint of a credential list: cache keys, never logged secrets. */
// Credentials come from keyrings that live as long as their Secret, so a fingerprint
// is hashed once per credential object, not once per admission.
const fingerprints = new WeakMap<Credential, string>();

function fingerprintOf(c: Credential): string {
  let f = fingerprints.get(c);
  if (f === undefined) {
    f = createHash("sha256").update(c.username).update("\0").update(c.password).digest("hex").slice(0, 16);
    fingerprints.set(c, f);
  }
  return f;
}

export function credentialFingerprint(creds: readonly Credential[]): string {
  if (creds.length === 0) return "anonymous";
  if (creds.length === 1) return fingerprintOf(creds[0]!);
  return creds.map(fingerprintOf).join("+");
}
