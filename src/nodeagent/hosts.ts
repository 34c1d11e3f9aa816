// containerd certs.d/<host>/hosts.toml for a registry mirror (seed 004), and the
// same mirrors for the stargz snapshotter's resolver. Pure renderers.
import { stringify } from "smol-toml";

const upstream = (host: string) => (host === "docker.io" ? "https://registry-1.docker.io" : `https://${host}`);
const asUrl = (m: string, plainHttp: ReadonlySet<string>) => (/^https?:\/\//.test(m) ? m : `${plainHttp.has(m) ? "http" : "https"}://${m}`);

export function renderHostsToml(host: string, mirrors: readonly string[], plainHttp: ReadonlySet<string> = new Set()): string {
  const doc: Record<string, any> = { server: upstream(host), host: {} };
  for (const m of mirrors) doc.host[asUrl(m, plainHttp)] = { capabilities: ["pull", "resolve"] };
  return `# written by apparate node-agent: mirrors for ${host}\n${stringify(doc)}\n`;
}

/** stargz-snapshotter config.toml: resolver mirrors so that lazy fetches use them too. */
export function renderSnapshotterConfig(mirrors: Readonly<Record<string, readonly string[]>>, plainHttp: ReadonlySet<string> = new Set()): string {
  const host: Record<string, any> = {};
  for (const [h, ms] of Object.entries(mirrors)) {
    host[h] = { mirrors: ms.map((m) => ({ host: m.replace(/^https?:\/\//, ""), ...(plainHttp.has(m) || m.startsWith("http://") ? { insecure: true } : {}) })) };
  }
  return `# written by apparate node-agent\n${stringify({ resolver: { host } })}\n`;
}
