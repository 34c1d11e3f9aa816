// A node's files as the node-agent tests compare them: "changes nothing, deletes nothing".
import { lstatSync, readdirSync, readFileSync, readlinkSync } from "node:fs";
import { join, relative } from "node:path";
import { sha256 } from "../../src/nodeagent/files.js";

/** Every file under dir (path relative to dir) with its sha256 and mode, a symlink with its target; `skip` prunes. */
export function tree(dir: string, skip: (p: string) => boolean = () => false): Record<string, string> {
  const out: Record<string, string> = {};
  const walk = (d: string) => {
    for (const f of readdirSync(d)) {
      const p = join(d, f);
      if (skip(p)) continue;
      const st = lstatSync(p);
      if (st.isDirectory()) walk(p);
      else out[relative(dir, p)] = st.isSymbolicLink() ? `-> ${readlinkSync(p)}` : `${sha256(readFileSync(p))} ${(st.mode & 0o7777).toString(8)}`;
    }
  };
  walk(dir);
  return out;
}
