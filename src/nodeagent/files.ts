// File operations on the host's files as the node agent needs them: paths under the
// host's root mount (symlinks resolved against that root, not the pod's), atomic
// writes that keep mode and owner, and a sha256.
import { createHash } from "node:crypto";
import { chmodSync, chownSync, existsSync, lstatSync, readFileSync, readlinkSync, renameSync, rmSync, statSync, writeFileSync } from "node:fs";
import { dirname, isAbsolute, join, normalize } from "node:path";

export const sha256 = (s: string | Buffer) => createHash("sha256").update(s).digest("hex");

export interface FileMeta { mode: number; uid: number; gid: number }

/** Host path -> path in this process (hostRoot "" means we run on the host). */
export const inHost = (hostRoot: string, p: string) => (hostRoot ? join(hostRoot, p) : p);

/**
 * Follows symlinks as the host would (an absolute target is relative to the host's
 * root). Returns the host path of the final regular file (which may not exist).
 */
export function resolveHostPath(hostRoot: string, p: string): string {
  let cur = normalize(p);
  for (let i = 0; i < 40; i++) {
    const local = inHost(hostRoot, cur);
    let st: ReturnType<typeof lstatSync> | undefined;
    try { st = lstatSync(local); } catch { return cur; }
    if (!st.isSymbolicLink()) return cur;
    const t = readlinkSync(local);
    cur = normalize(isAbsolute(t) ? t : join(dirname(cur), t));
  }
  throw new Error(`too many levels of symbolic links at ${p}`);
}

export function metaOf(local: string): FileMeta | undefined {
  if (!existsSync(local)) return undefined;
  const st = statSync(local);
  return { mode: st.mode & 0o7777, uid: st.uid, gid: st.gid };
}

/** Writes through a temp file in the same directory and renames: the file is old or new, never half. */
export function writeAtomic(local: string, data: string | Buffer, meta: FileMeta | undefined): void {
  const tmp = `${local}.apparate-tmp`;
  writeFileSync(tmp, data, { mode: meta?.mode ?? 0o644 });
  if (meta) {
    try { chownSync(tmp, meta.uid, meta.gid); } catch { /* not root (tests): keep ours */ }
    // writeFileSync's mode is masked by umask.
    chmodSync(tmp, meta.mode);
  }
  renameSync(tmp, local);
}


export function readIf(local: string): string | undefined {
  try { return readFileSync(local, "utf8"); } catch { return undefined; }
}

export function removeIf(local: string): void { rmSync(local, { force: true }); }
