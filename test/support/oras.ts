// Debian unstable's `oras` (1.3), unpacked by test/support/fetch-debs.sh into .tmp/debs/oras
// (deploy/demo/install-deps.sh runs the fetch): a real OCI client nobody here wrote, to
// read the links apparate records through the referrers tag schema.
import { execFile } from "node:child_process";
import { existsSync } from "node:fs";
import { join } from "node:path";
import { promisify } from "node:util";

export const ORAS_BIN = process.env.ORAS_BIN ?? join(process.cwd(), ".tmp/debs/oras/usr/bin/oras");
export const orasAvailable = existsSync(ORAS_BIN);

/** `oras discover --format json` of an image on a plain-HTTP registry: the referrers it lists. */
export async function orasDiscover(ref: string, ...extra: string[]): Promise<{ manifests?: Array<{ digest: string; artifactType?: string; annotations?: Record<string, string> }>; referrers?: Array<{ digest: string; artifactType?: string; annotations?: Record<string, string> }> }> {
  const args = ["discover", "--plain-http", "--format", "json", ...extra, ref];
  const { stdout } = await promisify(execFile)(ORAS_BIN, args, { env: { ...process.env, HOME: process.env.HOME ?? "/tmp" }, timeout: 60_000 });
  return JSON.parse(stdout);
}
