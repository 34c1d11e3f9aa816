// Conversion benchmark, side by side in one run on loopback: the same multi-layer image
// (real files from this machine: Go's toolchain, Go sources, docs, Python's library)
// converted by `apparate convert` (registry to registry, streaming) and by
// `ctr-remote images convert --estargz --oci` (pull into containerd, convert, push);
// wall time, output size and peak RSS of the converting process; then peak RSS of
// `apparate convert` on a 1 GiB layer. Run alone: node --import tsx test/bench/convert.ts
import { execFileSync, spawn } from "node:child_process";
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { CONVERT_NODE_OPTIONS } from "../../src/converter/job-spec.js";
import { TestContainerd } from "../support/containerd.js";
import { getManifest, pushTestImage } from "../support/oci-images.js";
import { writeManyFilesLayer } from "../support/many-files.js";
import { startRegistry } from "../support/registry.js";

const MiB = 2 ** 20;
const SOURCE_DIRS = ["usr/lib/go-1.19", "usr/share/gocode", "usr/share/doc", "usr/lib/python3.11"];

/** Runs a command, polling its peak RSS (VmHWM) until it exits. */
async function measured(cmd: string, args: string[], env?: Record<string, string>): Promise<{ seconds: number; peakRssMiB: number; stdout: string }> {
  const t0 = performance.now();
  const child = spawn(cmd, args, { stdio: ["ignore", "pipe", "pipe"], ...(env ? { env: { ...process.env, ...env } } : {}) });
  let stdout = "", stderr = "";
  child.stdout.on("data", (d) => { stdout += d; });
  child.stderr.on("data", (d) => { stderr = (stderr + d).slice(-4000); });
  let peak = 0;
  const poll = setInterval(() => {
    try {
      const m = /VmHWM:\s+(\d+) kB/.exec(readFileSync(`/proc/${child.pid}/status`, "utf8"));
      if (m) peak = Math.max(peak, Number(m[1]) / 1024);
    } catch { /* exited */ }
  }, 100);
  const code: number = await new Promise((r) => child.on("exit", (c) => r(c ?? 1)));
  clearInterval(poll);
  if (code !== 0) throw new Error(`${cmd} ${args.join(" ")} exited ${code}: ${stderr}`);
  return { seconds: (performance.now() - t0) / 1000, peakRssMiB: peak, stdout };
}

const sizeOf = async (url: string, name: string, tag: string) => ((await getManifest(url, name, tag)).json.layers as Array<{ size: number }>).reduce((a, l) => a + l.size, 0);

export interface ConvertBenchResult {
  image: { layers: number; compressedMiB: number; from: string[] };
  apparate: { seconds: number; peakRssMiB: number; outputMiB: number };
  ctrRemote: { seconds: number; convertSeconds: number; pullSeconds: number; pushSeconds: number; peakRssMiB: number; outputMiB: number };
  sizeDifferencePercent: number;
  oneGiBLayer: { uncompressedMiB: number; seconds: number; peakRssMiB: number };
}

/** `onlyBigLayer`: just the 1 GiB layer's figures (the comparison is left out). */
export async function convertBench(onlyBigLayer = false): Promise<ConvertBenchResult> {
  if (process.getuid?.() !== 0) throw new Error("needs root (containerd)");
  const dir = mkdtempSync(join(tmpdir(), "apparate-convert-bench-"));
  const reg = await startRegistry();
  const configPath = join(dir, "containerd.toml");
  writeFileSync(configPath, `version = 2\nroot = "${dir}/ctd/root"\nstate = "${dir}/ctd/state"\ndisabled_plugins = ["io.containerd.grpc.v1.cri"]\n[grpc]\naddress = "${dir}/ctd/containerd.sock"\n`);
  const ctd = new TestContainerd(join(dir, "ctd"), configPath);
  await ctd.start();
  // The CLI as users run it: the built one when there is one, else through tsx.
  const cli = existsSync("dist/cli.js") ? ["dist/cli.js"] : ["--import", "tsx", "src/cli.ts"];
  try {
    const dirs = onlyBigLayer ? [] : SOURCE_DIRS.filter((d) => existsSync(`/${d}`));
    const blobs = dirs.map((d) => execFileSync("bash", ["-c", `tar -C / --sort=name -cf - ${d} | gzip -6`], { maxBuffer: 2 ** 31 - 1 }));
    const compressed = blobs.reduce((a, b) => a + b.length, 0);
    const src = `${reg.host}/bench/app:1`;
    const none = { seconds: 0, peakRssMiB: 0, stdout: "" };
    let [ours, pull, conv, push, outOurs, outTheirs] = [none, none, none, none, 0, 1];
    if (!onlyBigLayer) {
    await pushTestImage(reg.url, "bench/app", "1", [{ layers: blobs.map((blob) => ({ blob })) }]);
    ours = await measured(process.execPath, [...cli, "convert", src, "--plain-http", "--json"]);
    pull = await measured("ctr-remote", ["--address", ctd.socket, "--namespace", "apparate-test", "images", "pull", "--plain-http", src]);
    conv = await measured("ctr-remote", ["--address", ctd.socket, "--namespace", "apparate-test", "images", "convert", "--estargz", "--oci", src, `${src}-ctr`]);
    push = await measured("ctr-remote", ["--address", ctd.socket, "--namespace", "apparate-test", "images", "push", "--plain-http", `${src}-ctr`]);
    outOurs = await sizeOf(reg.url, "bench/app", "1-apparate");
    outTheirs = await sizeOf(reg.url, "bench/app", "1-ctr");
    }

    // 1 GiB layer: text-like files (compressible, as most layers are) and random ones.
    const big = join(dir, "big");
    mkdirSync(big);
    execFileSync("bash", ["-c", `cd ${big} && for i in $(seq 1 12); do head -c $((48*1024*1024)) /dev/urandom > r$i; done && for i in $(seq 1 8); do yes "line $i of a log file that compresses well, with some numbers 0123456789" | head -c $((56*1024*1024)) > t$i; done`]);
    const bigBlob = execFileSync("bash", ["-c", `tar -C ${big} -cf - . | gzip -1`], { maxBuffer: 2 ** 31 - 1 });
    rmSync(big, { recursive: true, force: true });
    await pushTestImage(reg.url, "bench/big", "1", [{ layers: [{ blob: bigBlob }] }]);
    const oneGiB = await measured(process.execPath, [...cli, "convert", `${reg.host}/bench/big:1`, "--plain-http", "--json"]);

    return {
      image: { layers: blobs.length, compressedMiB: compressed / MiB, from: dirs.map((d) => `/${d}`) },
      apparate: { seconds: ours.seconds, peakRssMiB: ours.peakRssMiB, outputMiB: outOurs / MiB },
      ctrRemote: { seconds: pull.seconds + conv.seconds + push.seconds, convertSeconds: conv.seconds, pullSeconds: pull.seconds, pushSeconds: push.seconds, peakRssMiB: conv.peakRssMiB, outputMiB: outTheirs / MiB },
      sizeDifferencePercent: ((outOurs - outTheirs) / outTheirs) * 100,
      oneGiBLayer: { uncompressedMiB: 12 * 48 + 8 * 56, seconds: oneGiB.seconds, peakRssMiB: oneGiB.peakRssMiB },
    };
  } finally {
    await ctd.stop();
    await reg.stop();
    rmSync(dir, { recursive: true, force: true });
  }
}

export interface ManyFilesRow {
  files: number;
  layerMiB: number;
  apparate: { seconds: number; peakRssMiB: number; outputMiB: number; nodeOptions: string };
  ctrRemote: { convertSeconds: number; pullSeconds: number; peakRssMiB: number; outputMiB: number };
}

/**
 * One layer of N small files (test/support/many-files.ts), per N: `apparate convert`
 * registry to registry, and ctr-remote (pull, then `images convert --estargz --oci`) on
 * the same image in the same run; wall time and peak RSS of each converting process.
 */
export async function manyFilesBench(counts: number[]): Promise<ManyFilesRow[]> {
  if (process.getuid?.() !== 0) throw new Error("needs root (containerd)");
  const dir = mkdtempSync(join(tmpdir(), "apparate-files-bench-"));
  const reg = await startRegistry();
  const configPath = join(dir, "containerd.toml");
  writeFileSync(configPath, `version = 2\nroot = "${dir}/ctd/root"\nstate = "${dir}/ctd/state"\ndisabled_plugins = ["io.containerd.grpc.v1.cri"]\n[grpc]\naddress = "${dir}/ctd/containerd.sock"\n`);
  const ctd = new TestContainerd(join(dir, "ctd"), configPath);
  await ctd.start();
  const cli = existsSync("dist/cli.js") ? ["dist/cli.js"] : ["--import", "tsx", "src/cli.ts"];
  const ctr = (...args: string[]) => measured("ctr-remote", ["--address", ctd.socket, "--namespace", "apparate-test", ...args]);
  const rows: ManyFilesRow[] = [];
  try {
    for (const files of counts) {
      const path = join(dir, `files-${files}.tar.gz`);
      const layerBytes = await writeManyFilesLayer(path, files);
      const name = `bench/files${files}`;
      await pushTestImage(reg.url, name, "1", [{ layers: [{ blob: readFileSync(path) }] }]);
      rmSync(path);
      const src = `${reg.host}/${name}:1`;
      // As a conversion Job runs it (job-spec.ts): the V8 options that bound its RSS.
      const ours = await measured(process.execPath, [...cli, "convert", src, "--plain-http", "--json"], { NODE_OPTIONS: CONVERT_NODE_OPTIONS });
      // Printed at once: ctr-remote's half can take long on many files.
      console.log(JSON.stringify({ files, apparate: { seconds: ours.seconds, peakRssMiB: ours.peakRssMiB } }));
      const pull = await ctr("images", "pull", "--plain-http", src);
      const conv = await ctr("images", "convert", "--estargz", "--oci", src, `${src}-ctr`);
      await ctr("images", "push", "--plain-http", `${src}-ctr`);
      const theirs: ManyFilesRow["ctrRemote"] = { convertSeconds: conv.seconds, pullSeconds: pull.seconds, peakRssMiB: conv.peakRssMiB, outputMiB: (await sizeOf(reg.url, name, "1-ctr")) / MiB };
      await ctr("images", "rm", src, `${src}-ctr`);
      await ctr("content", "prune", "references").catch(() => undefined);
      rows.push({ files, layerMiB: layerBytes / MiB, apparate: { seconds: ours.seconds, peakRssMiB: ours.peakRssMiB, outputMiB: (await sizeOf(reg.url, name, "1-apparate")) / MiB, nodeOptions: CONVERT_NODE_OPTIONS }, ctrRemote: theirs });
      console.log(JSON.stringify(rows.at(-1)));
    }
    return rows;
  } finally {
    await ctd.stop();
    await reg.stop();
    rmSync(dir, { recursive: true, force: true });
  }
}

if (import.meta.url === `file://${process.argv[1]}`) {
  if (process.argv[2] === "files") {
    const counts = process.argv.slice(3).map(Number).filter((n) => n > 0);
    const rows = await manyFilesBench(counts.length ? counts : [100_000, 1_000_000]);
    mkdirSync("bench", { recursive: true });
    writeFileSync(`bench/convert-files-${counts.join("-") || "default"}.json`, JSON.stringify({ date: new Date().toISOString(), results: rows }, null, 2) + "\n");
    process.exit(0);
  }
  const onlyBig = process.argv.includes("big");
  const r = await convertBench(onlyBig);
  console.log(JSON.stringify(r, null, 2));
  mkdirSync("bench", { recursive: true });
  writeFileSync(onlyBig ? "bench/convert-1gib.json" : "bench/convert-results.json", JSON.stringify({ date: new Date().toISOString(), results: r }, null, 2) + "\n");
  process.exit(0);
}
