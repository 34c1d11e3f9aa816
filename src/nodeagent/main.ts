// `apparate node-agent`: not implemented in this release (see the README's status).
export async function nodeAgentMain(_argv: string[]): Promise<number> {
  process.stderr.write("apparate node-agent: not available in this release; see README \"Status\"\n");
  return 2;
}
