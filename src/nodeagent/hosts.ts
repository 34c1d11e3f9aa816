// containerd certs.d/<host>/hosts.toml for registry mirrors (seed 004) and for the
// legacy CRI registry settings moved out of config.toml, and the same mirrors for the
// stargz snapshotter's resolver. Pure renderers.
import { stringify } from "smol-toml";
import { hostsDirName, type HostsEntry, type HostTls, upstreamOf as upstream } from "./containerd-config.js";

const asUrl = (m: string, plainHttp: ReadonlySet<string>) => (/^https?:\/\//.test(m) ? m : `${plainHttp.has(m) ? "http" : "https"}://${m}`);

/** Configured mirrors (nodeAgent.mirrors) as hosts entries. */
export function configuredHosts(mirrors: Readonly<Record<string, readonly string[]>>, plainHttp: ReadonlySet<string> = new Set()): HostsEntry[] {
  return Object.entries(mirrors)
    .filter(([, ms]) => ms.length > 0)
    .map(([h, ms]) => ({ dir: hostsDirName(h), ...(h === "*" ? {} : { server: upstream(h) }), mirrors: ms.map((m) => ({ url: asUrl(m, plainHttp) })) }));
}

/** Legacy entries first (they were the node's), then the configured mirrors not already there. */
export function mergeHosts(...lists: HostsEntry[][]): HostsEntry[] {
  const out = new Map<string, HostsEntry>();
  for (const list of lists) {
    for (const e of list) {
      const have = out.get(e.dir);
      if (!have) { out.set(e.dir, structuredClone(e)); continue; }
      for (const m of e.mirrors) if (!have.mirrors.some((x) => x.url === m.url)) have.mirrors.push(structuredClone(m));
      if (e.tls && !have.tls) have.tls = e.tls;
      if (e.server && !have.server) have.server = e.server;
    }
  }
  return [...out.values()].sort((a, b) => a.dir.localeCompare(b.dir));
}

const tlsKeys = (t: HostTls | undefined) => (t ? { ...(t.ca ? { ca: t.ca } : {}), ...(t.client ? { client: t.client } : {}), ...(t.skip_verify ? { skip_verify: true } : {}) } : {});

export function renderHostsEntry(e: HostsEntry): string {
  // biome-ignore lint/suspicious/noExplicitAny: TOML tree
  const doc: Record<string, any> = { ...(e.server ? { server: e.server } : {}), ...tlsKeys(e.tls) };
  if (e.mirrors.length > 0) {
    doc.host = {};
    for (const m of e.mirrors) doc.host[m.url] = { capabilities: ["pull", "resolve"], ...tlsKeys(m.tls), ...(m.rewrite ? { rewrite: m.rewrite } : {}), ...(m.overridePath ? { override_path: true } : {}) };
  }
  return `# written by apparate node-agent: ${e.dir === "_default" ? "every registry" : e.dir}\n${stringify(doc)}\n`;
}

export function renderHostsToml(host: string, mirrors: readonly string[], plainHttp: ReadonlySet<string> = new Set()): string {
  return renderHostsEntry(configuredHosts({ [host]: mirrors }, plainHttp)[0]!);
}

/** stargz-snapshotter config.toml: resolver mirrors so that lazy fetches use them too. */
export function renderSnapshotterConfig(mirrors: Readonly<Record<string, readonly string[]>>, plainHttp: ReadonlySet<string> = new Set()): string {
  // biome-ignore lint/suspicious/noExplicitAny: TOML tree
  const host: Record<string, any> = {};
  for (const [h, ms] of Object.entries(mirrors)) {
    host[h] = { mirrors: ms.map((m) => ({ host: m.replace(/^https?:\/\//, ""), ...(plainHttp.has(m) || m.startsWith("http://") ? { insecure: true } : {}) })) };
  }
  return `# written by apparate node-agent\n${stringify({ resolver: { host } })}\n`;
}
