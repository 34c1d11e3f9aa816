// Registry credentials from docker config JSON (kubernetes.io/dockerconfigjson and
// the legacy kubernetes.io/dockercfg), matched to an image the way kubelet's keyring
// does: schemes ignored, ports must match, "*." globs per host label, path prefixes,
// Docker Hub's "https://index.docker.io/v1/" key, longest key first, all matches kept.
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

function splitKey(loc: string): { host: string; port: string; path: string } | undefined {
  let v = loc.trim();
  v = v.replace(/^[a-z][a-z0-9+.-]*:\/\//i, "");
  const slash = v.indexOf("/");
  let hostport = slash < 0 ? v : v.slice(0, slash);
  let path = slash < 0 ? "" : v.slice(slash);
  // docker treats /v1/ and /v2/ as the bare host (ResolveAuthConfig).
  if (path.startsWith("/v1/") || path.startsWith("/v2/")) path = path.slice(3);
  if (path === "/") path = "";
  path = path.replace(/\/+$/, "");
  if (!hostport) return undefined;
  let host = hostport;
  let port = "";
  const m = /^(\[[^\]]*\]|[^:]*)(?::(\d+))?$/.exec(hostport);
  if (m) { host = m[1]!; port = m[2] ?? ""; }
  hostport = host.toLowerCase();
  if (HUB_ALIASES.has(hostport)) hostport = "docker.io";
  return { host: hostport, port, path };
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

function toCredential(a: DockerAuth, source: string): Credential | undefined {
  if (a.username !== undefined && a.password !== undefined && a.username !== "") return { username: a.username, password: a.password, source };
  if (a.auth) {
    const decoded = Buffer.from(a.auth, "base64").toString("utf8");
    const i = decoded.indexOf(":");
    if (i > 0) return { username: decoded.slice(0, i), password: decoded.slice(i + 1), source };
  }
  return undefined;
}

/** A set of docker config entries, matched like kubelet's BasicDockerKeyring. */
export class Keyring {
  private readonly entries: Entry[] = [];

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
      const key = `${parts.host}${parts.port ? ":" + parts.port : ""}${parts.path}`;
      let e = this.entries.find((x) => x.key === key);
      if (!e) { e = { ...parts, key, creds: [] }; this.entries.push(e); }
      e.creds.push(cred);
    }
    // Longest (most specific) keys first, as kubelet sorts its index in reverse.
    this.entries.sort((x, y) => (x.key < y.key ? 1 : x.key > y.key ? -1 : 0));
  }

  get size(): number { return this.entries.length; }

  /** Credentials for `domain/path`, most specific first. */
  lookup(domain: string, path: string): Credential[] {
    const t = splitKey(`${domain}/${path}`);
    if (!t) return [];
    const tLabels = t.host.split(".");
    const out: Credential[] = [];
    for (const e of this.entries) {
      if (e.port !== t.port) continue;
      const eLabels = e.host.split(".");
      if (eLabels.length !== tLabels.length) continue;
      if (!eLabels.every((g, i) => labelMatch(g, tLabels[i]!))) continue;
      if (e.path && !(t.path === e.path || t.path.startsWith(e.path + "/"))) continue;
      out.push(...e.creds);
    }
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
