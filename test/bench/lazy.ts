// Lazy-loading benchmark: pull-to-first-exec time and bytes fetched, original image
// vs its eStargz -apparate variant, over a rate-limited link: the registry runs in a
// network namespace of this run's own, behind a veth pair shaped with tc (netem, or tbf plus a proxy delay).
import { execFileSync, spawn, type ChildProcess } from "node:child_process";
import { mkdtempSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { TestContainerd } from "../support/containerd.js";
import { startCountingProxy } from "../support/counting-proxy.js";
import { buildAndPushImage, convertAndPush, layerBytes } from "../support/images.js";
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
