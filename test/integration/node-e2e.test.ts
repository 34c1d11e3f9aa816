// The node side end to end, on loopback: Debian's docker-registry, a real containerd
// (1.6, 1.7 and 2.1: each its own run, own root, state and socket), the test
// lazy-loading snapshotter built from Debian's stargz-snapshotter library, and the node
// agent writing the config. The node's file is version 2 on every release (on 2.1 that
// is the upgraded node that kept its config).
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { chmodSync, copyFileSync, existsSync, mkdirSync, mkdtempSync, readFileSync, renameSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { execFileSync } from "node:child_process";
import { Writable } from "node:stream";
import { parse } from "smol-toml";
import { registryAvailable, startRegistry, type RunningRegistry } from "../support/registry.js";
import { startCountingProxy, type CountingProxy } from "../support/counting-proxy.js";
import { type ContainerdBinary, configDumpOf, containerds, TestContainerd, run } from "../support/containerd.js";
import { buildAndPushImage, convertAndPush, layerBytes } from "../support/images.js";
import { KubeApiStandIn } from "../support/kube-api-standin.js";
import { Installer } from "../../src/nodeagent/installer.js";
import { NodeAgent } from "../../src/nodeagent/agent.js";
import { NodeLabeler } from "../../src/nodeagent/label.js";
import { ProcessSnapshotter } from "../../src/nodeagent/service.js";
import { sha256 } from "../../src/nodeagent/files.js";
import { createLogger } from "../../src/observability/logger.js";

const SNAPSHOTTER = ".tmp/bin/apparate-test-snapshotter";
const canRun = registryAvailable && process.getuid?.() === 0 && existsSync("/dev/fuse") && existsSync("/usr/bin/containerd") && existsSync("/usr/bin/ctr-remote");
const logs: string[] = [];
const logger = createLogger({ destination: new Writable({ write(c, _e, cb) { logs.push(c.toString()); cb(); } }) });

// Where each release reads apparate's image keys from a version-2 file (see editPaths).
const imagesSection = (c: ContainerdBinary) => (c.version.startsWith("1.") ? ["io.containerd.grpc.v1.cri", "containerd"] : ["io.containerd.cri.v1.images"]);
const at = (doc: any, path: string[]) => path.reduce((t, k) => t?.[k], doc.plugins);

// After a snapshotter restart, containerd's gRPC connection to it may still be in back-off
// ("unavailable"), and under a loaded machine one attempt can stall on the remount: the kubelet
// bounds each CRI call (runtime-request-timeout) and retries, and so does this. Any other error
// fails at once; the last error, with the snapshotter's log, is what the test reports.
async function retryLikeKubelet(ctd: TestContainerd, args: string[], budgetMs = 90_000): Promise<string> {
  const end = Date.now() + budgetMs;
  for (;;) {
    try { return await ctd.ctr(args, 30_000); } catch (err) {
      const transient = /unavailable|ETIMEDOUT|SIGTERM|timed out/i.test(String(err)) || (err as { killed?: boolean }).killed === true;
      if (!transient || Date.now() > end) throw new Error(`${String(err)}\nsnapshotter log:\n${logs.filter((l) => /exited|warn|error/.test(l)).slice(-5).join("")}`);
      await new Promise((r) => setTimeout(r, 500));
      // A stalled `run` may have left its container behind: remove it as the kubelet would.
      if (args[0] === "run") {
        const name = args[5]!;
        await ctd.ctr(["tasks", "kill", "-s", "SIGKILL", name], 10_000).catch(() => undefined);
        await ctd.ctr(["containers", "rm", name], 10_000).catch(() => undefined);
      }
    }
  }
}

describe.skipIf(!canRun).each(containerds().map((c) => [c.version, c] as const))("node agent + containerd %s + lazy-loading snapshotter, end to end", (_v, release) => {
  let dir: string;
  let reg: RunningRegistry;
  let proxy: CountingProxy;
  let ctd: TestContainerd;
  let api: KubeApiStandIn;
  let service: ProcessSnapshotter;
  let agent: NodeAgent;
  let makeAgent: () => NodeAgent;
  const bin = () => join(dir, "bin", "apparate-stargz-grpc");
  let configPath: string;
  let original: string;
  const certsDir = () => join(dir, "certs.d");
  const sock = () => join(dir, "sn", "stargz.sock");

  beforeAll(async () => {
    execFileSync("bash", ["test/support/build-snapshotter.sh"], { stdio: "inherit" });
    dir = mkdtempSync(join(tmpdir(), "apparate-node-"));
    reg = await startRegistry();
    proxy = await startCountingProxy(reg.host);
    configPath = join(dir, "containerd", "config.toml");
    // The node's original config: version 2, a legacy mirror, CRI on (the agent proves
    // what CRI runs; without CNI the network is not ready, which CRI tolerates).
    original = `version = 2
root = "${dir}/containerd/root"
state = "${dir}/containerd/state"

[grpc]
address = "${dir}/containerd/containerd.sock"

[plugins."io.containerd.grpc.v1.cri".registry.mirrors."registry.legacy.example"]
endpoint = ["https://legacy-mirror.example"]
`;
    ctd = new TestContainerd(join(dir, "containerd"), configPath, release);
    writeFileSync(configPath, original);
    await ctd.start();
    await buildAndPushImage(join(dir, "img"), `${reg.host}/apparate-test/hello:1.0`, 6 << 20);
    await convertAndPush(ctd, `${reg.host}/apparate-test/hello:1.0`, `${reg.host}/apparate-test/hello:1.0-apparate`);

    api = new KubeApiStandIn();
    await api.start();
    api.put("nodes", { metadata: { name: "node-1", labels: { "kubernetes.io/hostname": "node-1" } } });
    // The snapshotter binary as installed on the node: replaced in place by the upgrade test.
    mkdirSync(join(dir, "bin"), { recursive: true });
    copyFileSync(SNAPSHOTTER, bin());
    chmodSync(bin(), 0o755);
    service = new ProcessSnapshotter({ binary: bin(), args: ["--address", sock(), "--root", join(dir, "sn", "root"), "--plain-http", `${proxy.host},${reg.host}`], socket: sock(), root: join(dir, "sn", "root") }, logger);
    makeAgent = () => new NodeAgent({
      installer: new Installer({
        hostRoot: "", containerdConfig: configPath, certsDir: certsDir(), snapshotterSocket: sock(),
        snapshotterConfigDir: join(dir, "sn", "etc"), mirrors: { "quay.io": [proxy.host] }, plainHttp: [proxy.host],
        stateDir: join(dir, "agent-state"),
      }, ctd, logger),
      runtime: ctd, service,
      labeler: new NodeLabeler(api.kubeConfig(), "node-1", "cloud.tencent.com/apparate", "true", logger),
      socket: sock(), checkIntervalMs: 60_000, unhealthyThreshold: 1, logger,
    });
    agent = makeAgent();
  }, 300_000);

  afterAll(async () => {
    if (process.env.DEBUG_E2E) console.log(logs.filter((l) => /exited|warn|error/.test(l)).join(""));
    agent?.stop();
    await ctd?.ctr(["containers", "rm", "c-lazy", "c-plain"]).catch(() => undefined);
    await service?.remove().catch(() => undefined);
    await ctd?.stop();
    try { execFileSync("bash", ["-c", `grep -o '${dir}[^ ]*' /proc/mounts | sort -r | xargs -r -n1 umount -l`]); } catch { /* nothing mounted */ }
    await Promise.all([reg?.stop(), proxy?.stop(), api?.stop()]);
    if (dir) rmSync(dir, { recursive: true, force: true });
  }, 60_000);

  it("install: backs up once, edits TOML, validates, restarts containerd once, and labels the node when healthy", async () => {
    const r = await agent.install();
    expect(r).toMatchObject({ status: "installed", restarted: true });
    expect(ctd.restarts).toBe(1);
    expect(readFileSync(`${configPath}.apparate-backup`, "utf8")).toBe(original);
    const doc = parse(readFileSync(configPath, "utf8")) as any;
    expect(doc.proxy_plugins.stargz).toEqual({ type: "snapshot", address: sock() });
    expect(doc.plugins["io.containerd.grpc.v1.cri"].registry).toEqual({ config_path: certsDir() });
    expect(at(doc, imagesSection(release))).toMatchObject({ snapshotter: "stargz", disable_snapshot_annotations: false });
    expect(doc.version).toBe(2);
    // What containerd runs, not only the file: CRI uses the snapshotter.
    // (containerd 2.x reports the snapshotter through ImageFsInfo and no config_path: its own dump says which.)
    expect(await ctd.criStatus()).toMatchObject({ loaded: true, snapshotter: "stargz", configPath: release.version.startsWith("1.") ? certsDir() : undefined });
    const dumped = await configDumpOf(release, configPath) as any;
    const images = dumped.version === 3 ? dumped.plugins["io.containerd.cri.v1.images"] : dumped.plugins["io.containerd.grpc.v1.cri"].containerd;
    expect(images).toMatchObject({ snapshotter: "stargz", disable_snapshot_annotations: false });
    expect((dumped.version === 3 ? images : dumped.plugins["io.containerd.grpc.v1.cri"]).registry.config_path).toBe(certsDir());
    // The legacy mirror moved into hosts.toml; the configured mirror is there too.
    expect(parse(readFileSync(join(certsDir(), "registry.legacy.example", "hosts.toml"), "utf8"))).toMatchObject({ host: { "https://legacy-mirror.example": {} } });
    expect(parse(readFileSync(join(certsDir(), "quay.io", "hosts.toml"), "utf8"))).toMatchObject({ server: "https://quay.io", host: { [`http://${proxy.host}`]: { capabilities: ["pull", "resolve"] } } });
    // Nothing changed: no second restart, and the backup is still the original.
    expect(await agent.install()).toMatchObject({ status: "installed", restarted: false });
    expect(ctd.restarts).toBe(1);
    expect(readFileSync(`${configPath}.apparate-backup`, "utf8")).toBe(original);

    const h = await agent.checkOnce();
    expect(h).toMatchObject({ healthy: true });
    expect(api.get("nodes", "node-1")!.metadata.labels["cloud.tencent.com/apparate"]).toBe("true");
    expect(api.list("events").map((e) => e.reason)).toContain("ApparateReady");
  }, 120_000);

  it("an unhealthy snapshotter loses the node label; it is restarted and the label comes back (before any lazy snapshot exists: see the README on restarts)", async () => {
    service.kill();
    await new Promise((r) => setTimeout(r, 200));
    expect((await agent.checkOnce()).healthy).toBe(false);
    expect(api.get("nodes", "node-1")!.metadata.labels["cloud.tencent.com/apparate"]).toBeUndefined();
    // The restarted snapshotter first restores its snapshots (remounting the lazy layers).
    let again = await agent.checkOnce();
    for (let i = 0; i < 40 && !again.healthy; i++) { await new Promise((r) => setTimeout(r, 500)); again = await agent.checkOnce(); }
    expect(again.healthy, logs.filter((l) => l.includes("exited")).join("")).toBe(true);
    expect(api.get("nodes", "node-1")!.metadata.labels["cloud.tencent.com/apparate"]).toBe("true");
    expect(api.list("events").map((e) => e.reason), logs.filter((l) => l.includes("event")).join("")).toEqual(["ApparateReady", "ApparateNotReady", "ApparateReady"]);
  }, 60_000);

  it("(a) a quay.io image is pulled through hosts.toml from the local registry", async () => {
    // quay.io/apparate-test/hello:1.0 exists only in the local registry, behind the mirror.
    proxy.reset();
    await ctd.ctr(["images", "pull", "--hosts-dir", certsDir(), "quay.io/apparate-test/hello:1.0"]);
    expect(proxy.requests).toBeGreaterThan(0);
    expect(proxy.blobBytes).toBeGreaterThan(6 << 20);
  }, 120_000);

  it("(b) the -apparate image is pulled lazily and runs; a command that reads little fetches under 25% of the image", async () => {
    const image = `${proxy.host}/apparate-test/hello:1.0-apparate`;
    const total = await layerBytes(reg.url, "apparate-test/hello", "1.0-apparate");
    proxy.reset();
    await retryLikeKubelet(ctd, ["images", "rpull", "--plain-http", "--snapshotter", "stargz", image]);
    const out = await ctd.ctr(["run", "--rm", "--snapshotter", "stargz", image, "c-lazy", "/bin/busybox", "cat", "/www/index.html"]);
    expect(out).toContain("hello from apparate");
    const fetched = proxy.blobBytes;
    expect(fetched / total).toBeLessThan(0.25);
    const snaps = await ctd.ctr(["snapshots", "--snapshotter", "stargz", "ls"]);
    expect(snaps).toMatch(/Committed/);
    expect(readFileSync("/proc/mounts", "utf8")).toMatch(new RegExp(`${dir}/sn/root/snapshotter/snapshots/\\d+/fs fuse`));
  }, 120_000);

  it("(c) an ordinary image still runs on the same node", async () => {
    const image = `${reg.host}/apparate-test/hello:1.0`;
    await ctd.ctr(["images", "pull", "--plain-http", image]);
    const out = await ctd.ctr(["run", "--rm", image, "c-plain", "/bin/busybox", "cat", "/www/index.html"]);
    expect(out).toContain("hello from apparate");
  }, 120_000);

  it("after an agent restart: nothing changes, containerd is not restarted, the moved legacy mirror and the configured one are still there, the node stays labelled", async () => {
    const before = ctd.restarts;
    agent.stop();
    agent = makeAgent(); // a new process: only the state file and the node remain
    expect(await agent.install()).toMatchObject({ status: "installed", restarted: false, changed: false });
    expect(ctd.restarts).toBe(before);
    expect(parse(readFileSync(join(certsDir(), "registry.legacy.example", "hosts.toml"), "utf8"))).toMatchObject({ host: { "https://legacy-mirror.example": {} } });
    expect(existsSync(join(certsDir(), "quay.io", "hosts.toml"))).toBe(true);
    expect((await agent.checkOnce()).healthy).toBe(true);
    expect(api.get("nodes", "node-1")!.metadata.labels["cloud.tencent.com/apparate"]).toBe("true");
    // The mirror still serves pulls through hosts.toml.
    proxy.reset();
    await ctd.ctr(["images", "pull", "--hosts-dir", certsDir(), "quay.io/apparate-test/hello:1.0"]);
    expect(proxy.requests).toBeGreaterThan(0);
  }, 120_000);

  it("after an upgrade: a new snapshotter binary is put in place and the running one restarted (hash changed); the lazy image runs on the new binary", async () => {
    const oldPid = service.pid;
    expect(oldPid).toBeDefined();
    // The new release: the same program with different bytes (trailing data does not change an ELF's behaviour).
    writeFileSync(`${bin()}.new`, Buffer.concat([readFileSync(bin()), Buffer.from("apparate upgrade marker")]), { mode: 0o755 });
    renameSync(`${bin()}.new`, bin());
    expect(await agent.install()).toMatchObject({ status: "installed" });
    expect(service.pid).not.toBe(oldPid);
    expect(sha256(readFileSync(`/proc/${service.pid}/exe`))).toBe(sha256(readFileSync(bin())));
    let h = await agent.checkOnce();
    for (let i = 0; i < 40 && !h.healthy; i++) { await new Promise((r) => setTimeout(r, 500)); h = await agent.checkOnce(); }
    expect(h.healthy).toBe(true);
    const image = `${proxy.host}/apparate-test/hello:1.0-apparate`;
    const out = await retryLikeKubelet(ctd, ["run", "--rm", "--snapshotter", "stargz", image, "c-lazy-upgraded", "/bin/busybox", "cat", "/www/index.html"]);
    expect(out).toContain("hello from apparate");
    // Negative control: an unchanged binary is not restarted.
    const pid = service.pid;
    await agent.install();
    expect(service.pid).toBe(pid);
  }, 150_000);

  it("a snapshotter that dies with lazy mounts in use is restarted, and the lazy image runs again", async () => {
    const image = `${proxy.host}/apparate-test/hello:1.0-apparate`;
    service.kill();
    await new Promise((r) => setTimeout(r, 200));
    let h = await agent.checkOnce();
    for (let i = 0; i < 40 && !h.healthy; i++) { await new Promise((r) => setTimeout(r, 500)); h = await agent.checkOnce(); }
    expect(h.healthy).toBe(true);
    const out = await retryLikeKubelet(ctd, ["run", "--rm", "--snapshotter", "stargz", image, "c-lazy2", "/bin/busybox", "cat", "/www/index.html"]);
    expect(out).toContain("hello from apparate");
  }, 150_000);

  it("uninstall: label removed, original config restored, mirrors removed, containerd restarted, snapshotter stopped", async () => {
    await ctd.ctr(["images", "rm", `${proxy.host}/apparate-test/hello:1.0-apparate`]).catch(() => undefined);
    const before = ctd.restarts;
    await agent.uninstall();
    expect(api.get("nodes", "node-1")!.metadata.labels["cloud.tencent.com/apparate"]).toBeUndefined();
    expect(readFileSync(configPath, "utf8")).toBe(original);
    expect(existsSync(join(certsDir(), "quay.io"))).toBe(false);
    expect(existsSync(`${configPath}.apparate-backup`)).toBe(false);
    expect(ctd.restarts).toBe(before + 1);
    expect(existsSync(sock())).toBe(false);
    await run("ctr-remote", ["--address", ctd.socket, "version"]);
  }, 60_000);

  it("uninstall after someone else edited the file removes only apparate's keys", async () => {
    await agent.install();
    const edited = readFileSync(configPath, "utf8") + '\n[plugins."io.containerd.internal.v1.opt"]\npath = "/opt/containerd-test"\n';
    writeFileSync(configPath, edited);
    await agent.uninstall();
    const doc = parse(readFileSync(configPath, "utf8")) as any;
    expect(doc.plugins["io.containerd.internal.v1.opt"].path).toBe("/opt/containerd-test");
    expect(doc.proxy_plugins).toBeUndefined();
    expect(at(doc, imagesSection(release))?.snapshotter).toBeUndefined();
    expect(logs.join("")).toContain("removed apparate's keys only");
  }, 60_000);
});
