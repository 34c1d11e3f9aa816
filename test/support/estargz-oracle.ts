// Oracle 1 of the converter tests: test/convert/oracle/main.go, built from Debian's
// stargz-snapshotter estargz library, opens a blob, checks the TOC digest and every
// chunk with the library's own verifier and lists the tree the snapshotter would see.
import { execFile, execFileSync } from "node:child_process";
import { existsSync } from "node:fs";
import { promisify } from "node:util";

export const ORACLE = ".tmp/bin/estargz-oracle";
const run = promisify(execFile);

/** Whether the oracle can be built here (Debian: apt installs Go and the library). */
export const oracleBuildable = existsSync("/usr/bin/go") || existsSync("/usr/bin/apt-get");

export function buildOracle(): void {
  execFileSync("bash", ["test/support/build-convert-oracle.sh"], { stdio: "inherit" });
}

export interface OracleEntry {
  name: string;
  type: string;
  size: number;
  mode: number;
  linkName?: string;
  uid: number;
  gid: number;
  devMajor?: number;
  devMinor?: number;
  xattrs?: Record<string, string>;
  digest?: string;
  chunks?: number;
  numLink?: number;
}

/** Runs the oracle: the entries when the blob verifies, else throws with its message. */
export async function verifyWithOracle(blobPath: string, tocDigest: string): Promise<OracleEntry[]> {
  try {
    const { stdout } = await run(ORACLE, [blobPath, tocDigest], { maxBuffer: 64 << 20 });
    return stdout.trim().split("\n").filter(Boolean).map((l) => JSON.parse(l) as OracleEntry);
  } catch (err) {
    const e = err as { stderr?: string; message: string };
    throw new Error(`oracle rejected ${blobPath}: ${(e.stderr ?? e.message).trim()}`);
  }
}
