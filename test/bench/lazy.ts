// Lazy-loading benchmark: pull-to-first-exec time and bytes fetched, original image
// vs its eStargz -apparate variant, over a rate-limited link: the registry runs in a
// network namespace of this run's own, behind a veth pair shaped with tc (netem, or tbf plus a proxy delay).
import { execFileSync, spawn, type ChildProcess } from "node:child_process";
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { TestContainerd } from "../support/containerd.js";
import { startCountingProxy } from "../support/counting-proxy.js";
import { buildAndPushImage, convertAndPush, layerBytes } from "../support/images.js";
import { pushTestImage } from "../support/oci-images.js";
import { waitFor } from "../support/ports.js";

const NS = "apparate-bench";
const HOST_IP = "10.213.7.1";
const REG_IP = "10.213.7.2";
const RATE = "40mbit";
const DELAY = "10ms";
const sh = (cmd: string, args: string[]) => execFileSync(cmd, args, { stdio: "pipe" }).toString();

export interface LazyResult {
  link: { rate: string; delay: string; shaping: string };
  imageBytes: { original: number; apparate: number };
  bytesRead: number;
  original: { seconds: number; bytesFetched: number };
  apparate: { seconds: number; bytesFetched: number };
  speedup: number;
}

export async function lazyLoadingBench(): Promise<LazyResult> {
  if (process.getuid?.() !== 0) throw new Error("needs root (network namespace, containerd, FUSE)");
  execFileSync("bash", ["test/support/build-snapshotter.sh"], { stdio: "inherit" });
  const dir = mkdtempSync(join(tmpdir(), "apparate-lazy-"));
  const procs: ChildProcess[] = [];
  let ctd: TestContainerd | undefined;
  try { sh("ip", ["netns", "del", NS]); } catch { /* not there */ }
  try {
    sh("ip", ["netns", "add", NS]);
    sh("ip", ["link", "add", "apb-veth0", "type", "veth", "peer", "name", "apb-veth1"]);
    sh("ip", ["link", "set", "apb-veth1", "netns", NS]);
    sh("ip", ["addr", "add", `${HOST_IP}/30`, "dev", "apb-veth0"]);
    sh("ip", ["link", "set", "apb-veth0", "up"]);
    sh("ip", ["netns", "exec", NS, "ip", "addr", "add", `${REG_IP}/30`, "dev", "apb-veth1"]);
    sh("ip", ["netns", "exec", NS, "ip", "link", "set", "apb-veth1", "up"]);
    sh("ip", ["netns", "exec", NS, "ip", "link", "set", "lo", "up"]);
    const regHost = `${REG_IP}:5000`;
    writeFileSync(join(dir, "registry.yml"), `version: 0.1\nlog: {level: error, accesslog: {disabled: true}}\nstorage: {filesystem: {rootdirectory: ${dir}/registry}}\nhttp: {addr: "${regHost}", secret: bench}\n`);
    procs.push(spawn("ip", ["netns", "exec", NS, "docker-registry", "serve", join(dir, "registry.yml")], { stdio: "ignore" }));
    await waitFor(async () => (await fetch(`http://${regHost}/v2/`)).status === 200, 15_000, "registry in the namespace");

    const configPath = join(dir, "containerd.toml");
    const sock = join(dir, "sn", "stargz.sock");
    const proxy = await startCountingProxy(regHost);
    writeFileSync(configPath, `version = 2\nroot = "${dir}/ctd/root"\nstate = "${dir}/ctd/state"\ndisabled_plugins = ["io.containerd.grpc.v1.cri"]\n[grpc]\naddress = "${dir}/ctd/containerd.sock"\n[proxy_plugins.stargz]\ntype = "snapshot"\naddress = "${sock}"\n`);
    procs.push(spawn(".tmp/bin/apparate-test-snapshotter", ["--address", sock, "--root", join(dir, "sn", "root"), "--plain-http", `${proxy.host},${regHost}`], { stdio: "ignore" }));
    ctd = new TestContainerd(join(dir, "ctd"), configPath);
    await ctd.start();

    // 32 MiB of data the measured command never reads, plus busybox and a small file.
    await buildAndPushImage(join(dir, "img"), `${regHost}/bench/app:1.0`, 32 << 20);
    await convertAndPush(ctd, `${regHost}/bench/app:1.0`, `${regHost}/bench/app:1.0-apparate`);
    const imageBytes = { original: await layerBytes(`http://${regHost}`, "bench/app", "1.0"), apparate: await layerBytes(`http://${regHost}`, "bench/app", "1.0-apparate") };

    // Shape the link only now: registry -> node traffic at RATE, DELAY each way. Kernels
    // without sch_netem (some sandboxes) get tbf for the rate and the round trip added
    // per request at the proxy instead; results.json says which was used.
    let shaping = "netem";
    try {
      sh("ip", ["netns", "exec", NS, "tc", "qdisc", "add", "dev", "apb-veth1", "root", "netem", "delay", DELAY, "rate", RATE]);
      sh("tc", ["qdisc", "add", "dev", "apb-veth0", "root", "netem", "delay", DELAY]);
    } catch {
      shaping = "tbf + per-request delay at the proxy";
      sh("ip", ["netns", "exec", NS, "tc", "qdisc", "add", "dev", "apb-veth1", "root", "tbf", "rate", RATE, "burst", "64kb", "latency", "400ms"]);
      proxy.delayMs = 2 * parseInt(DELAY, 10);
    }

    const measure = async (image: string, lazy: boolean, name: string) => {
      proxy.reset();
      const t0 = performance.now();
      await ctd!.ctr([...(lazy ? ["images", "rpull", "--snapshotter", "stargz"] : ["images", "pull"]), "--plain-http", image], 300_000);
      const out = await ctd!.ctr(["run", "--rm", ...(lazy ? ["--snapshotter", "stargz"] : []), image, name, "/bin/busybox", "cat", "/www/index.html"], 300_000);
      const seconds = (performance.now() - t0) / 1000;
      if (!out.includes("hello from apparate")) throw new Error(`unexpected output: ${out}`);
      return { seconds, bytesFetched: proxy.blobBytes };
    };
    const original = await measure(`${proxy.host}/bench/app:1.0`, false, "bench-original");
    const apparate = await measure(`${proxy.host}/bench/app:1.0-apparate`, true, "bench-apparate");
    const bytesRead = statSync("/bin/busybox").size + "hello from apparate\n".length;
    await proxy.stop();
    return { link: { rate: RATE, delay: DELAY, shaping }, imageBytes, bytesRead, original, apparate, speedup: original.seconds / apparate.seconds };
  } finally {
    await ctd?.stop();
    for (const p of procs) p.kill("SIGTERM");
    await new Promise((r) => setTimeout(r, 500));
    try { execFileSync("bash", ["-c", `grep -o '${dir}[^ ]*' /proc/mounts | sort -r | xargs -r -n1 umount -l`]); } catch { /* none */ }
    try { sh("ip", ["netns", "del", NS]); } catch { /* gone */ }
    try { sh("ip", ["link", "del", "apb-veth0"]); } catch { /* gone with the namespace */ }
    rmSync(dir, { recursive: true, force: true });
  }
}

/**
 * The python3 interpreter of Debian's own packages (bookworm, `apt-cache depends
 * --recurse` of python3 without recommends and without dpkg's own pre-dependencies, plus python3-minimal: 45 packages), in three layers: C libraries,
 * perl/dpkg/mime, python. Unpacked by test/support/fetch-debs.sh (private apt state).
 */
const PYTHON_LAYERS: string[][] = [
  ["libc6", "gcc-12-base", "libgcc-s1", "zlib1g", "libbz2-1.0", "liblzma5", "libcrypt1", "libssl3", "libffi8", "libexpat1", "libuuid1", "libtinfo6", "libncursesw6",
    "libreadline8", "readline-common", "libsqlite3-0", "libdb5.3", "libgdbm6", "libgdbm-compat4", "libnsl2", "libtirpc3", "libtirpc-common", "libcom-err2",
    "libgssapi-krb5-2", "libk5crypto3", "libkeyutils1", "libkrb5-3", "libkrb5support0"],
  ["perl-base", "perl", "perl-modules-5.36", "libperl5.36", "dpkg", "tar", "install-info", "mailcap", "media-types", "mime-support"],
  ["libpython3.11-minimal", "python3.11-minimal", "python3-minimal", "libpython3.11-stdlib", "libpython3-stdlib", "python3.11", "python3"],
];
const PYTHON_WORKLOAD = ["/usr/bin/python3", "-c", "import json, http.client; print('python ready')"];

/** Starts the registry in a namespace behind a veth, the snapshotter and containerd; `shape()` limits the link. */
async function shapedStack(dir: string, procs: ChildProcess[]) {
  try { sh("ip", ["netns", "del", NS]); } catch { /* not there */ }
  sh("ip", ["netns", "add", NS]);
  sh("ip", ["link", "add", "apb-veth0", "type", "veth", "peer", "name", "apb-veth1"]);
  sh("ip", ["link", "set", "apb-veth1", "netns", NS]);
  sh("ip", ["addr", "add", `${HOST_IP}/30`, "dev", "apb-veth0"]);
  sh("ip", ["link", "set", "apb-veth0", "up"]);
  sh("ip", ["netns", "exec", NS, "ip", "addr", "add", `${REG_IP}/30`, "dev", "apb-veth1"]);
  sh("ip", ["netns", "exec", NS, "ip", "link", "set", "apb-veth1", "up"]);
  sh("ip", ["netns", "exec", NS, "ip", "link", "set", "lo", "up"]);
  const regHost = `${REG_IP}:5000`;
  writeFileSync(join(dir, "registry.yml"), `version: 0.1\nlog: {level: error, accesslog: {disabled: true}}\nstorage: {filesystem: {rootdirectory: ${dir}/registry}}\nhttp: {addr: "${regHost}", secret: bench}\n`);
  procs.push(spawn("ip", ["netns", "exec", NS, "docker-registry", "serve", join(dir, "registry.yml")], { stdio: "ignore" }));
  await waitFor(async () => (await fetch(`http://${regHost}/v2/`)).status === 200, 15_000, "registry in the namespace");
  const configPath = join(dir, "containerd.toml");
  const sock = join(dir, "sn", "stargz.sock");
  const proxy = await startCountingProxy(regHost);
  writeFileSync(configPath, `version = 2\nroot = "${dir}/ctd/root"\nstate = "${dir}/ctd/state"\ndisabled_plugins = ["io.containerd.grpc.v1.cri"]\n[grpc]\naddress = "${dir}/ctd/containerd.sock"\n[proxy_plugins.stargz]\ntype = "snapshot"\naddress = "${sock}"\n`);
  procs.push(spawn(".tmp/bin/apparate-test-snapshotter", ["--address", sock, "--root", join(dir, "sn", "root"), "--plain-http", `${proxy.host},${regHost}`], { stdio: "ignore" }));
  const ctd = new TestContainerd(join(dir, "ctd"), configPath);
  await ctd.start();
  const shape = (): string => {
    try {
      sh("ip", ["netns", "exec", NS, "tc", "qdisc", "add", "dev", "apb-veth1", "root", "netem", "delay", DELAY, "rate", RATE]);
      sh("tc", ["qdisc", "add", "dev", "apb-veth0", "root", "netem", "delay", DELAY]);
      return "netem";
    } catch {
      sh("ip", ["netns", "exec", NS, "tc", "qdisc", "add", "dev", "apb-veth1", "root", "tbf", "rate", RATE, "burst", "64kb", "latency", "400ms"]);
      proxy.delayMs = 2 * parseInt(DELAY, 10);
      return "tbf + per-request delay at the proxy";
    }
  };
  return { regHost, proxy, ctd, shape };
}

export interface RealisticLazyResult {
  image: { packages: number; layers: number; compressedMiB: number; workload: string };
  link: { rate: string; delay: string; shaping: string };
  /** apparate: registry to registry; ctr-remote: the convert step alone, its pull and push apart. */
  conversionSeconds: { apparate: number; apparatePrefetch: number; ctrRemote: number; ctrRemotePull: number; ctrRemotePush: number; ctrRemoteOptimize: number };
  prefetchList: { paths: number; source: string };
  /** Pull to the workload's output, seconds, and blob bytes fetched; one cold run each. */
  rounds: Array<Record<"fullPull" | "apparate" | "apparatePrefetch" | "ctrRemote" | "ctrRemoteOptimized", { seconds: number; bytesFetched: number }>>;
  median: Record<"fullPull" | "apparate" | "apparatePrefetch" | "ctrRemote" | "ctrRemoteOptimized", number>;
  prefetchVsCtrRemoteOptimized: number;
  fullPullOverApparatePrefetch: number;
}

/**
 * The realistic image, side by side in one run over the shaped link: the original
 * pulled in full, apparate's plain and prefetch variants and ctr-remote's plain and
 * optimised ones pulled lazily, each from cold, to the workload's output. The prefetch
 * list is the one `ctr-remote images optimize` records for the same workload
 * (--record-out, read as is by `apparate convert --prefetch`), so both prioritise the
 * same files.
 */
export async function realisticLazyBench(): Promise<RealisticLazyResult> {
  if (process.getuid?.() !== 0) throw new Error("needs root (network namespace, containerd, FUSE)");
  execFileSync("bash", ["test/support/build-snapshotter.sh"], { stdio: "inherit" });
  const dir = mkdtempSync(join(tmpdir(), "apparate-lazy-python-"));
  const procs: ChildProcess[] = [];
  let ctd: TestContainerd | undefined;
  try {
    const layers: Buffer[] = [];
    for (const [i, pkgs] of PYTHON_LAYERS.entries()) {
      const root = `.tmp/python3-image/layer${i}`;
      execFileSync("bash", ["test/support/fetch-debs.sh", "bookworm", root, ...pkgs], { stdio: "inherit" });
      layers.push(execFileSync("bash", ["-c", `tar -C ${root} --exclude=./.debs --sort=name --numeric-owner --owner=0 --group=0 -cf - . | gzip -6`], { maxBuffer: 1 << 30 }));
    }
    const stack = await shapedStack(dir, procs);
    ctd = stack.ctd;
    const { regHost, proxy } = stack;
    const src = `${regHost}/bench/python3:3.11`;
    await pushTestImage(`http://${regHost}`, "bench/python3", "3.11", [{ layers: layers.map((blob) => ({ blob })) }]);
    const cli = existsSync("dist/cli.js") ? ["dist/cli.js"] : ["--import", "tsx", "src/cli.ts"];
    const timed = (cmd: string, args: string[]) => { const t0 = performance.now(); execFileSync(cmd, args, { stdio: "pipe", maxBuffer: 64 << 20 }); return (performance.now() - t0) / 1000; };
    const ctr = ["--address", ctd.socket, "--namespace", "apparate-test"];

    // Conversions, on the unshaped link.
    const apparate = timed(process.execPath, [...cli, "convert", src, `${src}-apparate`, "--plain-http"]);
    const ctrRemotePull = timed("ctr-remote", [...ctr, "images", "pull", "--plain-http", src]);
    const ctrRemote = timed("ctr-remote", [...ctr, "images", "convert", "--estargz", "--oci", src, `${src}-ctr`]);
    const ctrRemotePush = timed("ctr-remote", [...ctr, "images", "push", "--plain-http", `${src}-ctr`]);
    const record = join(dir, "record.json");
    const ctrRemoteOptimize = timed("ctr-remote", [...ctr, "images", "optimize", "--oci", "--period", "5", "--record-out", record,
      "--entrypoint", JSON.stringify([PYTHON_WORKLOAD[0]]), "--args", JSON.stringify(PYTHON_WORKLOAD.slice(1)), src, `${src}-ctropt`]);
    timed("ctr-remote", [...ctr, "images", "push", "--plain-http", `${src}-ctropt`]);
    if (!existsSync(record)) throw new Error(`ctr-remote optimize wrote no record at ${record}`);
    const recordText = readFileSync(record, "utf8");
    writeFileSync(join(dir, "prefetch.list"), recordText);
    const apparatePrefetch = timed(process.execPath, [...cli, "convert", src, `${src}-prefetch`, "--plain-http", "--prefetch", join(dir, "prefetch.list")]);
    for (const ref of [src, `${src}-ctr`, `${src}-ctropt`]) execFileSync("ctr-remote", [...ctr, "images", "rm", ref], { stdio: "ignore" });
    execFileSync("ctr-remote", [...ctr, "content", "prune", "references"], { stdio: "ignore" });

    const shaping = stack.shape();
    const measure = async (ref: string, lazy: boolean, name: string) => {
      proxy.reset();
      const t0 = performance.now();
      await ctd!.ctr([...(lazy ? ["images", "rpull", "--snapshotter", "stargz"] : ["images", "pull"]), "--plain-http", ref], 300_000);
      const out = await ctd!.ctr(["run", "--rm", ...(lazy ? ["--snapshotter", "stargz"] : []), ref, name, ...PYTHON_WORKLOAD], 300_000);
      const seconds = (performance.now() - t0) / 1000;
      if (!out.includes("python ready")) throw new Error(`unexpected output of ${ref}: ${out}`);
      const bytesFetched = proxy.blobBytes;
      await ctd!.ctr(["images", "rm", ref]).catch(() => "");
      return { seconds, bytesFetched };
    };
    const p = `${proxy.host}/bench/python3:3.11`;
    const results: RealisticLazyResult["rounds"] = [];
    // One cold run each: a second round would hit the snapshotter's cache of the same blobs.
    for (let r = 0; r < 1; r++) {
      results.push({
        fullPull: await measure(`${p}`, false, `full-${r}`),
        apparate: await measure(`${p}-apparate`, true, `apparate-${r}`),
        apparatePrefetch: await measure(`${p}-prefetch`, true, `prefetch-${r}`),
        ctrRemote: await measure(`${p}-ctr`, true, `ctr-${r}`),
        ctrRemoteOptimized: await measure(`${p}-ctropt`, true, `ctropt-${r}`),
      });
      await ctd.ctr(["content", "prune", "references"]).catch(() => "");
    }
    const med = (k: keyof RealisticLazyResult["median"]) => { const v = results.map((x) => x[k].seconds).sort((a, b) => a - b); return v[Math.floor((v.length - 1) / 2)]!; };
    const median = { fullPull: med("fullPull"), apparate: med("apparate"), apparatePrefetch: med("apparatePrefetch"), ctrRemote: med("ctrRemote"), ctrRemoteOptimized: med("ctrRemoteOptimized") };
    await proxy.stop();
    return {
      image: { packages: PYTHON_LAYERS.flat().length, layers: layers.length, compressedMiB: layers.reduce((a, b) => a + b.length, 0) / 2 ** 20, workload: PYTHON_WORKLOAD.join(" ") },
      link: { rate: RATE, delay: DELAY, shaping },
      conversionSeconds: { apparate, apparatePrefetch, ctrRemote, ctrRemotePull, ctrRemotePush, ctrRemoteOptimize },
      prefetchList: { paths: recordText.split("\n").filter(Boolean).length, source: "ctr-remote images optimize --record-out (same workload)" },
      rounds: results, median,
      prefetchVsCtrRemoteOptimized: median.apparatePrefetch / median.ctrRemoteOptimized,
      fullPullOverApparatePrefetch: median.fullPull / median.apparatePrefetch,
    };
  } finally {
    await ctd?.stop();
    for (const p of procs) p.kill("SIGTERM");
    await new Promise((r) => setTimeout(r, 500));
    try { execFileSync("bash", ["-c", `grep -o '${dir}[^ ]*' /proc/mounts | sort -r | xargs -r -n1 umount -l`]); } catch { /* none */ }
    try { sh("ip", ["netns", "del", NS]); } catch { /* gone */ }
    try { sh("ip", ["link", "del", "apb-veth0"]); } catch { /* gone with the namespace */ }
    rmSync(dir, { recursive: true, force: true });
  }
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const r = await realisticLazyBench();
  console.log(JSON.stringify(r, null, 2));
  mkdirSync("bench", { recursive: true });
  writeFileSync("bench/lazy-python3.json", JSON.stringify({ date: new Date().toISOString(), results: r }, null, 2) + "\n");
  process.exit(0);
}
