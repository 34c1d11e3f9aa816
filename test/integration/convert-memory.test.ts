// Memory of `apparate convert` does not grow with the number of files in a layer: a
// layer of 100,000 small files (a large node_modules) converts, registry to registry,
// inside a real memory cgroup limited to 512 MiB (the chart's converter limit), and the
// result verifies through the stargz-snapshotter's estargz library. Negative control:
// a process that does need more than the limit is killed in the same cgroup.
import { spawn } from "node:child_process";
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmdirSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { TOC_DIGEST_ANNOTATION } from "../../src/convert/estargz.js";
import { buildOracle, oracleBuildable, verifyWithOracle } from "../support/estargz-oracle.js";
import { writeManyFilesLayer } from "../support/many-files.js";
import { getBlob, getManifest, pushTestImage } from "../support/oci-images.js";
import { registryAvailable, startRegistry, type RunningRegistry } from "../support/registry.js";

const MiB = 1 << 20;
const LIMIT = 512 * MiB;
const FILES = 100_000;

/** A child memory cgroup (v2, or v1's memory hierarchy) limited to `bytes`, swap off. */
function memoryCgroup(name: string, bytes: number): { procs: string; peak(): number; remove(): void } | undefined {
  const v2 = existsSync("/sys/fs/cgroup/cgroup.controllers") && readFileSync("/sys/fs/cgroup/cgroup.controllers", "utf8").includes("memory");
  const dir = v2 ? join("/sys/fs/cgroup", name) : join("/sys/fs/cgroup/memory", name);
  try {
    mkdirSync(dir);
    if (v2) {
      writeFileSync(join(dir, "memory.max"), String(bytes));
      try { writeFileSync(join(dir, "memory.swap.max"), "0"); } catch { /* no swap accounting */ }
    } else {
      writeFileSync(join(dir, "memory.limit_in_bytes"), String(bytes));
      try { writeFileSync(join(dir, "memory.memsw.limit_in_bytes"), String(bytes)); } catch { /* no swap accounting */ }
    }
  } catch { return undefined; }
  return {
    procs: join(dir, "cgroup.procs"),
    peak: () => Number(readFileSync(join(dir, v2 ? "memory.peak" : "memory.max_usage_in_bytes"), "utf8").trim()),
    remove: () => { try { rmdirSync(dir); } catch { /* still busy */ } },
  };
}

/**
 * Runs argv inside the cgroup; resolves with the exit code or signal, stderr's tail and
 * the process's peak RSS (VmHWM, polled: the cgroup's own peak also counts page cache).
 */
function runIn(procs: string, argv: string[]): Promise<{ code: number | null; signal: NodeJS.Signals | null; stderr: string; stdout: string; peakRssMiB: number }> {
  return new Promise((resolve) => {
    const child = spawn("bash", ["-c", `echo $$ > '${procs}' && exec "$@"`, "bash", ...argv], { stdio: ["ignore", "pipe", "pipe"] });
    let stderr = "", stdout = "", peak = 0;
    const poll = setInterval(() => {
      try {
        const m = /VmHWM:\s+(\d+) kB/.exec(readFileSync(`/proc/${child.pid}/status`, "utf8"));
        if (m) peak = Math.max(peak, Number(m[1]) / 1024);
      } catch { /* exited */ }
    }, 50);
    child.stdout.on("data", (d) => { stdout += d; });
    child.stderr.on("data", (d) => { stderr = (stderr + d).slice(-4000); });
    child.on("exit", (code, signal) => { clearInterval(poll); resolve({ code, signal, stderr, stdout, peakRssMiB: peak }); });
  });
}

const canRun = registryAvailable && process.getuid?.() === 0;

describe.skipIf((!canRun || !oracleBuildable) && process.env.CI !== "true")("conversion memory is bounded whatever the number of files", () => {
  let reg: RunningRegistry;
  let dir: string;

  beforeAll(async () => {
    buildOracle();
    dir = mkdtempSync(join(tmpdir(), "apparate-convert-memory-"));
    reg = await startRegistry();
    const layer = join(dir, "many.tar.gz");
    await writeManyFilesLayer(layer, FILES);
    await pushTestImage(reg.url, "many/files", "1", [{ layers: [{ blob: readFileSync(layer) }] }]);
  }, 300_000);
  afterAll(async () => {
    await reg?.stop();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it(`a layer of ${FILES.toLocaleString("en")} files converts inside a ${LIMIT / MiB} MiB memory cgroup, and the library verifies all of them`, async () => {
    const cg = memoryCgroup(`apparate-convert-${process.pid}`, LIMIT);
    if (!cg) throw new Error("no writable memory cgroup here (cgroup v2 or v1 memory hierarchy, as root)");
    try {
      const cli = existsSync("dist/cli.js") ? ["dist/cli.js"] : ["--import", "tsx", "src/cli.ts"];
      const r = await runIn(cg.procs, [process.execPath, ...cli, "convert", `${reg.host}/many/files:1`, "--plain-http", "--json"]);
      expect({ code: r.code, signal: r.signal }, r.stderr).toEqual({ code: 0, signal: null });
      const peakMiB = cg.peak() / MiB;
      console.log(`convert of ${FILES} files: peak RSS ${r.peakRssMiB.toFixed(0)} MiB, cgroup peak (page cache included) ${peakMiB.toFixed(0)} MiB`);
      expect(peakMiB).toBeLessThanOrEqual(LIMIT / MiB);
      // The design target for any layer (1,000,000 files included: test/bench/convert.ts).
      expect(r.peakRssMiB).toBeLessThan(256);
    } finally { cg.remove(); }
    const m = (await getManifest(reg.url, "many/files", "1-apparate")).json;
    const blob = join(dir, "converted.blob");
    writeFileSync(blob, await getBlob(reg.url, "many/files", m.layers[0].digest));
    const seen = await verifyWithOracle(blob, m.layers[0].annotations[TOC_DIGEST_ANNOTATION]);
    expect(seen.filter((e) => e.type === "reg" && e.name.startsWith("node_modules/"))).toHaveLength(FILES);
  }, 400_000);

  it("negative control: a process that needs more than the limit is killed in such a cgroup", async () => {
    const cg = memoryCgroup(`apparate-hog-${process.pid}`, LIMIT);
    if (!cg) throw new Error("no writable memory cgroup here");
    try {
      const hog = "const a = []; for (let i = 0; i < 40; i++) { a.push(Buffer.alloc(32 << 20, 1)); } console.log(a.length);";
      const r = await runIn(cg.procs, [process.execPath, "-e", hog]);
      expect(r.signal).toBe("SIGKILL");
    } finally { cg.remove(); }
  }, 60_000);
});
