// Where a registry's credentials may go. A registry names its token service in
// `WWW-Authenticate: Bearer realm=...`; following that blindly sends the configured
// password (or a pod's pull secret) to any host the registry, or anyone who can alter
// its answer, chooses, and lets it aim apparate at internal services. A realm is
// used only over https and only on the registry's own host, a documented pair
// (Docker Hub), or a host the operator lists; plain http only for a registry in
// registry.plainHttp whose realm is on that very host. Pure: no I/O.

/** Registries whose token service lives on another, documented host. */
export const KNOWN_REALM_HOSTS: ReadonlyMap<string, readonly string[]> = new Map([
  // https://docs.docker.com/registry/spec/auth/token/ — Docker Hub's registry-1.docker.io
  // answers with realm="https://auth.docker.io/token".
  ["docker.io", ["auth.docker.io"]],
]);

export interface RealmPolicy {
  /** Registry hosts reached over plain HTTP (registry.plainHttp). */
  plainHttp: ReadonlySet<string>;
  /** registry.tokenRealms: host (any port) or host:port. */
  tokenRealms: ReadonlySet<string>;
}

export type RealmDecision = { ok: true; url: URL } | { ok: false; reason: string };

const shown = (s: string) => (s.length > 100 ? `${s.slice(0, 100)}…` : s);

function hostListed(list: ReadonlySet<string> | readonly string[], url: URL): boolean {
  const has = (s: string) => ("has" in list ? list.has(s) : list.includes(s));
  return has(url.host) || has(url.hostname);
}

/**
 * May the credential for `domain` (served at `origin`) go to `realm`?
 * The refusal reason names the refused host, never anything else the registry sent.
 */
export function decideRealm(realm: string, domain: string, origin: string, policy: RealmPolicy): RealmDecision {
  let url: URL;
  try { url = new URL(realm); } catch { return { ok: false, reason: "token realm refused: not a URL" }; }
  if (url.protocol !== "https:" && url.protocol !== "http:") return { ok: false, reason: "token realm refused: not an http(s) URL" };
  if (url.username || url.password) return { ok: false, reason: `token realm refused: ${shown(url.host)} carries user information` };
  const registry = new URL(origin);
  const sameHost = url.host === registry.host;
  if (url.protocol === "http:") {
    if (sameHost && registry.protocol === "http:" && policy.plainHttp.has(domain)) return { ok: true, url };
    return { ok: false, reason: `token realm refused: plain-HTTP realm on ${shown(url.host)} (only a registry in registry.plainHttp may use a plain-HTTP realm, on its own host)` };
  }
  if (sameHost || hostListed(KNOWN_REALM_HOSTS.get(domain) ?? [], url) || hostListed(policy.tokenRealms, url)) return { ok: true, url };
  return { ok: false, reason: `token realm refused: ${shown(url.host)} is neither ${shown(domain)} nor in registry.tokenRealms` };
}
