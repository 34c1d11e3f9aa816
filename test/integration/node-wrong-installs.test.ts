// Issue 23 item 3 on the real containerd 1.6 (Debian 1.6.20): the installs that went
// wrong, each checked against what the daemon itself runs (its CRI Status config) or
// requests (URLs a loopback mirror receives on CRI pulls).
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { execFileSync } from "node:child_process";
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { createServer, request, type Server } from "node:http";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Writable } from "node:stream";
import { parse, type TomlTable as Table } from "smol-toml";
import { parseConfig } from "../../src/nodeagent/containerd-config.js";
import { NodeAgent } from "../../src/nodeagent/agent.js";
import { Installer } from "../../src/nodeagent/installer.js";
import { NODE_CONDITION, NodeLabeler } from "../../src/nodeagent/label.js";
import { ProcessSnapshotter } from "../../src/nodeagent/service.js";
import { createLogger } from "../../src/observability/logger.js";
import { run, SandboxedContainerd, TestContainerd } from "../support/containerd.js";
import { criConfig, criPull } from "../support/cri-client.js";
import { pushTestImage } from "../support/oci-images.js";
import { KubeApiStandIn } from "../support/kube-api-standin.js";
import { freePort } from "../support/ports.js";
import { registryAvailable, type RunningRegistry, startRegistry } from "../support/registry.js";
import { gzipTar } from "../support/tarball.js";
import { tree } from "../support/node-tree.js";

const FIXTURES = "test/fixtures/containerd-configs";
const canRun = process.getuid?.() === 0 && existsSync("/usr/bin/containerd");
const logs: string[] = [];
const logger = createLogger({ destination: new Writable({ write(c, _e, cb) { logs.push(c.toString()); cb(); } }) });

/** The CRI config without the keys apparate sets (and the legacy mirrors it moves to hosts.toml). */
function withoutApparateKeys(cfg: any): any {
  const c = structuredClone(cfg);
  delete c.containerd.snapshotter;
  delete c.containerd.disableSnapshotAnnotations;
  delete c.registry.configPath;
  delete c.registry.mirrors;
  return c;
}

/**
 * A sandboxed node under `root`: the config at /etc/containerd/config.toml, the installer with
 * the chart's paths, and a real containerd 1.6 that runs what the installer leaves live
 * (or what `live` says, for a test that freezes the file).
 */
function sandboxNode(root: string, original: string, o: { snapshotterSocket?: string; verifyTimeoutMs?: number; live?: () => Table | undefined; mirrors?: Record<string, string[]> } = {}) {
  mkdirSync(join(root, "etc/containerd"), { recursive: true });
  const live = join(root, "etc/containerd/config.toml");
  writeFileSync(live, original);
  let installer: Installer | undefined;
  const ctd = new SandboxedContainerd(join(root, "ctd"), () => o.live?.() ?? installer!.effectiveLive(), join(root, "etc/containerd"));
  installer = new Installer({
    hostRoot: root, containerdConfig: "/etc/containerd/config.toml", certsDir: "/etc/containerd/certs.d",
    snapshotterSocket: o.snapshotterSocket ?? "/run/apparate-stargz/stargz.sock", snapshotterConfigDir: "/etc/apparate-stargz",
    mirrors: o.mirrors ?? {}, plainHttp: [], stateDir: "/var/lib/apparate-node", ...(o.verifyTimeoutMs ? { verifyTimeoutMs: o.verifyTimeoutMs } : {}),
  }, ctd, logger);
  return { live, ctd, installer };
}

describe.skipIf(!canRun)("(a) a version-1 file naming CRI twice, on the real containerd 1.6", () => {
  let base: string;
  beforeAll(() => { base = mkdtempSync(join(tmpdir(), "apparate-wrong-a-")); });
  afterAll(() => { if (base) rmSync(base, { recursive: true, force: true }); });

  // minikube's real v1 file (corpus) with the URI-named CRI section the issue reports next to `plugins.cri`.
  const original = `${readFileSync(join(FIXTURES, "minikube-iso-old-v1.toml"), "utf8")}
  [plugins."io.containerd.grpc.v1.cri"]
    sandbox_image = "registry.k8s.io/pause:9.9"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = true
`;

  it("the CRI config containerd runs after install equals the original's except for apparate's keys; uninstall gives the bytes back", async () => {
    const root = join(base, "node");
    const { live, ctd, installer } = sandboxNode(root, original);
    await ctd.start();
    try {
      const before = await criConfig(ctd.socket);
      // What containerd 1.6 reads of the file: plugins.cri only, the URI section is dead.
      expect(before).toMatchObject({ sandboxImage: "k8s.gcr.io/pause:3.1", cni: { confDir: "/etc/cni/net.d" }, containerd: { snapshotter: "overlayfs", noPivot: true } });
      expect(before.containerd.defaultRuntime.runtimeType).toBe("io.containerd.runtime.v1.linux");
      expect(before.registry.mirrors["docker.io"].endpoint).toEqual(["https://registry-1.docker.io"]);
      expect(before.containerd.runtimes.runc.options?.SystemdCgroup ?? false).toBe(false);

      const r = await installer.apply();
      expect(r, ctd.log.slice(-2000)).toMatchObject({ status: "installed", restarted: true, changed: true });
      const after = await criConfig(ctd.socket);
      expect(after.containerd).toMatchObject({ snapshotter: "stargz", disableSnapshotAnnotations: false });
      expect(after.registry.configPath).toBe("/etc/containerd/certs.d");
      expect(withoutApparateKeys(after)).toEqual(withoutApparateKeys(before));
      expect(logs.join("")).toContain("never reads in a version-1 file");

      const u = await installer.uninstall();
      expect(u).toMatchObject({ restored: true });
      expect(readFileSync(live, "utf8")).toBe(original);
      expect(await criConfig(ctd.socket)).toEqual(before);
    } finally {
      await ctd.stop();
    }
  }, 90_000);
});

/**
 * A mirror serving the registry under a path prefix (a Harbor proxy-cache project, a
 * mirror site with a path): requests under `prefix` go to the registry's /v2/, anything
 * else is 404. Every request line is recorded.
 */
interface PathMirror { port: number; seen: string[]; stop(): Promise<void> }
async function startPathMirror(registry: string, prefix: string): Promise<PathMirror> {
  const port = await freePort();
  const seen: string[] = [];
  const [rh, rp] = registry.split(":") as [string, string];
  const server: Server = createServer((req, res) => {
    const url = req.url ?? "";
    seen.push(`${req.method} ${url}`);
    if (!url.startsWith(prefix)) { res.writeHead(404, { "content-type": "application/json" }).end('{"errors":[{"code":"NOT_FOUND"}]}'); return; }
    const up = request({ host: rh, port: Number(rp), method: req.method, path: `/v2/${url.slice(prefix.length)}`, headers: { ...req.headers, host: registry } }, (ur) => {
      res.writeHead(ur.statusCode ?? 502, ur.headers);
      ur.pipe(res);
    });
    up.on("error", () => res.writeHead(502).end());
    req.pipe(up);
  });
  await new Promise<void>((r) => server.listen(port, "127.0.0.1", () => r()));
  return { port, seen, stop: () => new Promise((r) => { server.closeAllConnections(); server.close(() => r()); }) };
}

const SNAPSHOTTER_BIN = ".tmp/bin/apparate-test-snapshotter";
const arch = process.arch === "x64" ? "amd64" : process.arch;

describe.skipIf(!canRun || !registryAvailable)("(b) legacy mirrors with a path, and a bare localhost endpoint, on real CRI pulls before and after install", () => {
  let dir: string;
  let reg: RunningRegistry;
  const mirrors: Record<string, PathMirror> = {};
  let ctd: TestContainerd;
  let snapshotter: ProcessSnapshotter;
  let configPath: string;
  // Mirror key (a registry nobody listens on: every pull must be served by the mirror) -> legacy endpoint.
  const rows: { name: string; key: string; endpoint: (port: number) => string; prefix: string }[] = [];

  beforeAll(async () => {
    execFileSync("bash", ["test/support/build-snapshotter.sh"], { stdio: "inherit" });
    dir = mkdtempSync(join(tmpdir(), "apparate-wrong-b-"));
    reg = await startRegistry();
    const dead = async () => `127.0.0.1:${await freePort()}`;
    rows.push(
      { name: "Harbor proxy-cache project", key: await dead(), endpoint: (p) => `http://127.0.0.1:${p}/v2/proxy-project`, prefix: "/v2/proxy-project/" },
      { name: "mirror site with a path", key: await dead(), endpoint: (p) => `http://127.0.0.1:${p}/mirror/dockerhub`, prefix: "/mirror/dockerhub/" },
      { name: "bare localhost endpoint", key: await dead(), endpoint: (p) => `localhost:${p}`, prefix: "/v2/" },
    );
    for (const r of rows) mirrors[r.name] = await startPathMirror(reg.host, r.prefix);
    // Two images with different bytes: the second pull fetches every blob again.
    for (const [i, repo] of ["before", "after"].entries()) {
      await pushTestImage(reg.url, `apparate-test/${repo}`, "1.0", [{ architecture: arch, layers: [{ blob: gzipTar([{ name: "hello.txt", data: `hello ${repo} ${i}\n` }]) }] }]);
    }
    configPath = join(dir, "containerd", "config.toml");
    mkdirSync(join(dir, "containerd"), { recursive: true });
    const legacy = rows.map((r) => `[plugins."io.containerd.grpc.v1.cri".registry.mirrors."${r.key}"]\nendpoint = ["${r.endpoint(mirrors[r.name]!.port)}"]\n`).join("");
    writeFileSync(configPath, `version = 2
root = "${dir}/containerd/root"
state = "${dir}/containerd/state"

[grpc]
address = "${dir}/containerd/containerd.sock"

[plugins."io.containerd.grpc.v1.cri"]
stream_server_port = "0"

${legacy}`);
    ctd = new TestContainerd(join(dir, "containerd"), configPath);
    await ctd.start();
    snapshotter = new ProcessSnapshotter({ binary: SNAPSHOTTER_BIN, args: ["--address", join(dir, "sn", "stargz.sock"), "--root", join(dir, "sn", "root")], socket: join(dir, "sn", "stargz.sock"), root: join(dir, "sn", "root") }, logger);
  }, 300_000);

  afterAll(async () => {
    await snapshotter?.remove().catch(() => undefined);
    await ctd?.stop();
    try { execFileSync("bash", ["-c", `grep -o '${dir}[^ ]*' /proc/mounts | sort -r | xargs -r -n1 umount -l`]); } catch { /* nothing mounted */ }
    await Promise.all([reg?.stop(), ...Object.values(mirrors).map((m) => m.stop())]);
    if (dir) rmSync(dir, { recursive: true, force: true });
  }, 60_000);

  /** CRI-pulls `repo` through every row's mirror; the request lines each mirror received, repo and digests abstracted. */
  async function pullAll(repo: string): Promise<Record<string, string[]>> {
    const out: Record<string, string[]> = {};
    for (const r of rows) {
      const m = mirrors[r.name]!;
      m.seen.length = 0;
      const ref = await criPull(ctd.socket, `${r.key}/apparate-test/${repo}:1.0`).catch((e: Error) => `failed: ${e.message}`);
      expect(ref, `${r.name}: ${m.seen.join(", ")}`).toMatch(/^sha256:/);
      // containerd names the registry a mirror stands for (`?ns=`): the same key before and after.
      out[r.name] = [...new Set(m.seen.map((l) => l.replaceAll(repo, "<repo>").replaceAll(encodeURIComponent(r.key), "<registry>").replace(/sha256:[0-9a-f]{64}/g, "<digest>")))].sort();
    }
    return out;
  }

  it("containerd requests the same URLs of each mirror after apparate moved the mirrors to hosts.toml as before", async () => {
    const before = await pullAll("before");
    // The legacy meaning, as containerd 1.6 shows it: the endpoint's path is the API root
    // (the first pull fetches the blobs; the others find them in the content store).
    expect(before).toEqual({
      "Harbor proxy-cache project": [
        "GET /v2/proxy-project/apparate-test/<repo>/blobs/<digest>?ns=<registry>",
        "GET /v2/proxy-project/apparate-test/<repo>/manifests/<digest>?ns=<registry>",
        "HEAD /v2/proxy-project/apparate-test/<repo>/manifests/1.0?ns=<registry>",
      ],
      "mirror site with a path": ["HEAD /mirror/dockerhub/apparate-test/<repo>/manifests/1.0?ns=<registry>"],
      "bare localhost endpoint": ["HEAD /v2/apparate-test/<repo>/manifests/1.0?ns=<registry>"],
    });
    for (const r of rows) for (const l of before[r.name]!) expect(l.split(" ")[1]!.startsWith(r.prefix), `${r.name}: ${l}`).toBe(true);

    await snapshotter.ensureRunning();
    const installer = new Installer({
      hostRoot: "", containerdConfig: configPath, certsDir: join(dir, "certs.d"), snapshotterSocket: join(dir, "sn", "stargz.sock"),
      snapshotterConfigDir: join(dir, "sn", "etc"), mirrors: {}, plainHttp: [], stateDir: join(dir, "agent-state"),
    }, ctd, logger);
    expect(await installer.apply()).toMatchObject({ status: "installed", restarted: true });
    expect(await ctd.criStatus()).toMatchObject({ loaded: true, snapshotter: "stargz", configPath: join(dir, "certs.d") });
    const harbor = parse(readFileSync(join(dir, "certs.d", rows[0]!.key, "hosts.toml"), "utf8")) as any;
    expect(harbor.host[rows[0]!.endpoint(mirrors[rows[0]!.name]!.port)]).toMatchObject({ override_path: true });
    expect(Object.keys((parse(readFileSync(join(dir, "certs.d", rows[2]!.key, "hosts.toml"), "utf8")) as any).host)).toEqual([`http://localhost:${mirrors[rows[2]!.name]!.port}`]);

    const after = await pullAll("after");
    expect(after).toEqual(before);
  }, 180_000);
});

// (c) and the rollback: kubespray's real config (corpus), regenerated while apparate is
// installed the way config management does it (a newer sandbox image, a RuntimeClass
// handler added), containerd restarted on it, the agent re-applies.
describe.skipIf(!canRun)("(c) a config regenerated after install: uninstall and rollback never put back the older backup", () => {
  let base: string;
  beforeAll(() => { base = mkdtempSync(join(tmpdir(), "apparate-wrong-c-")); });
  afterAll(() => { if (base) rmSync(base, { recursive: true, force: true }); });

  const original = readFileSync(join(FIXTURES, "kubespray-rendered-v2.toml"), "utf8");
  const regenerated = original
    .replace('sandbox_image = "registry.k8s.io/pause:3.9"', 'sandbox_image = "registry.k8s.io/pause:3.10"')
    .replace('    [plugins."io.containerd.grpc.v1.cri".registry]\n', '        [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.kata]\n          runtime_type = "io.containerd.kata.v2"\n    [plugins."io.containerd.grpc.v1.cri".registry]\n');

  /** A node with kubespray's config installed by apparate, then regenerated and containerd restarted on it. */
  async function regeneratedNode(name: string, liveOverride?: () => string) {
    expect(regenerated).toContain("pause:3.10");
    expect(regenerated).toContain("runtimes.kata]");
    const root = join(base, name);
    const frozen = { text: undefined as string | undefined };
    const { live, ctd, installer } = sandboxNode(root, original, { verifyTimeoutMs: 3000, live: () => (frozen.text !== undefined ? parseConfig(frozen.text) : undefined) });
    writeFileSync(join(root, "etc/containerd/cri-base.json"), (await run("ctr", ["oci", "spec"])).stdout);
    await ctd.start();
    expect(await installer.apply(), ctd.log.slice(-2000)).toMatchObject({ status: "installed", restarted: true, changed: true });
    // Config management writes its new version over apparate's and restarts containerd.
    writeFileSync(live, regenerated);
    await ctd.restart();
    const own = await criConfig(ctd.socket);
    expect(own).toMatchObject({ sandboxImage: "registry.k8s.io/pause:3.10", containerd: { snapshotter: "overlayfs" } });
    expect(own.containerd.runtimes.kata.runtimeType).toBe("io.containerd.kata.v2");
    if (liveOverride) frozen.text = liveOverride();
    return { root, live, ctd, installer, own };
  }

  it("uninstall removes apparate's keys from the regenerated file and says so (outcome keys-removed); the older backup is not restored", async () => {
    const { root, live, ctd, installer, own } = await regeneratedNode("uninstall");
    try {
      // The agent re-applies to the regenerated file.
      expect(await installer.apply()).toMatchObject({ status: "installed", restarted: true, changed: true });
      expect(await ctd.criStatus()).toMatchObject({ loaded: true, snapshotter: "stargz" });
      const u = await installer.uninstall();
      expect(u).toMatchObject({ outcome: "keys-removed", restored: false, restarted: true });
      expect(u.notes.join(" ")).toMatch(/rewritten after apparate installed.*removed its own keys/);
      // The node's current config, not the install-time one: same TOML as regenerated, and what containerd runs.
      expect(parse(readFileSync(live, "utf8"))).toEqual(parse(regenerated));
      expect(await criConfig(ctd.socket)).toEqual(own);
      expect(existsSync(`${live}.apparate-backup`)).toBe(false);
      expect(existsSync(join(root, "var/lib/apparate-node/state.json"))).toBe(false);
      // Uninstall again: nothing of apparate's left, nothing changes.
      const text = readFileSync(live, "utf8");
      expect(await installer.uninstall()).toMatchObject({ restored: true });
      expect(readFileSync(live, "utf8")).toBe(text);
    } finally {
      await ctd.stop();
    }
  }, 120_000);

  it("negative control: without a regeneration, uninstall restores the backup bytes (outcome restored)", async () => {
    const root = join(base, "plain");
    const { live, ctd, installer } = sandboxNode(root, original);
    writeFileSync(join(root, "etc/containerd/cri-base.json"), (await run("ctr", ["oci", "spec"])).stdout);
    await ctd.start();
    try {
      expect(await installer.apply()).toMatchObject({ status: "installed" });
      expect(await installer.apply()).toMatchObject({ status: "installed", changed: false });
      expect(await installer.uninstall()).toMatchObject({ outcome: "restored", restored: true });
      expect(readFileSync(live, "utf8")).toBe(original);
    } finally {
      await ctd.stop();
    }
  }, 120_000);

  it("rollback after a failed restart puts back the regenerated file this write replaced, not the older backup, and restarts containerd", async () => {
    // After the re-apply's restart containerd still runs the regenerated config (it reads
    // another file than the one apparate edits): the verify fails and the agent rolls back.
    const { live, ctd, installer, own } = await regeneratedNode("rollback", () => regenerated);
    try {
      const restarts = ctd.restarts;
      await expect(installer.apply()).rejects.toThrow(/did not run CRI with the snapshotter after the restart.*previous config was restored/);
      expect(readFileSync(live, "utf8")).toBe(regenerated);
      expect(ctd.restarts).toBe(restarts + 2);
      expect(await criConfig(ctd.socket)).toEqual(own);
      // The failed candidate is not tried again.
      await expect(installer.apply()).rejects.toThrow(/tried and rolled back before/);
      expect(readFileSync(live, "utf8")).toBe(regenerated);
    } finally {
      await ctd.stop();
    }
  }, 120_000);
});

// A refused node says why where the operator looks: the Node condition and a Warning
// event, never the label. nydus-snapshotter's real example config (corpus) has CRI on
// the nydus snapshotter, which apparate does not take over by default.
describe.skipIf(!canRun)("a refused install is reported on the Node (condition, event), and the node is not labelled", () => {
  let root: string;
  let api: KubeApiStandIn;
  beforeAll(async () => {
    execFileSync("bash", ["test/support/build-snapshotter.sh"], { stdio: "inherit" });
    root = mkdtempSync(join(tmpdir(), "apparate-wrong-refused-"));
    api = new KubeApiStandIn();
    await api.start();
    api.put("nodes", { metadata: { name: "node-1", labels: {} } });
  }, 300_000);
  afterAll(async () => {
    await api?.stop();
    if (root) rmSync(root, { recursive: true, force: true });
  });

  it("SnapshotterInUse: condition ApparateLazyLoading=False with the reason, one ApparateSnapshotterInUse Warning event, no label, the file untouched", async () => {
    const original = readFileSync(join(FIXTURES, "nydus-snapshotter-example-v2.toml"), "utf8");
    const { live, ctd, installer } = sandboxNode(root, original, { snapshotterSocket: join(root, "sn", "stargz.sock") });
    const service = new ProcessSnapshotter({ binary: SNAPSHOTTER_BIN, args: ["--address", join(root, "sn", "stargz.sock"), "--root", join(root, "sn", "root")], socket: join(root, "sn", "stargz.sock"), root: join(root, "sn", "root") }, logger);
    const agent = new NodeAgent({
      installer, runtime: ctd, service, labeler: new NodeLabeler(api.kubeConfig(), "node-1", "cloud.tencent.com/apparate", "true", logger),
      socket: join(root, "sn", "stargz.sock"), checkIntervalMs: 60_000, unhealthyThreshold: 1, logger,
    });
    await ctd.start();
    try {
      const r = await agent.install();
      expect(r).toMatchObject({ status: "refused", reason: "SnapshotterInUse" });
      const node = api.get("nodes", "node-1")!;
      expect(node.status.conditions).toContainEqual(expect.objectContaining({ type: NODE_CONDITION, status: "False", reason: "SnapshotterInUse", message: expect.stringContaining('"nydus"') }));
      const events = api.list("events").filter((e) => e.involvedObject?.name === "node-1");
      expect(events.map((e) => [e.reason, e.type])).toEqual([["ApparateSnapshotterInUse", "Warning"]]);
      expect(events[0]!.message).toMatch(/replaceSnapshotter/);
      expect(node.metadata.labels["cloud.tencent.com/apparate"]).toBeUndefined();
      expect(readFileSync(live, "utf8")).toBe(original);
      // The health loop keeps it unlabelled; a second install reports nothing new.
      expect(await agent.checkOnce()).toMatchObject({ healthy: false });
      await agent.install();
      expect(api.list("events").filter((e) => e.involvedObject?.name === "node-1")).toHaveLength(1);
      expect(api.get("nodes", "node-1")!.metadata.labels["cloud.tencent.com/apparate"]).toBeUndefined();
    } finally {
      agent.stop();
      await service.remove().catch(() => undefined);
      await ctd.stop();
    }
  }, 120_000);
});

/** Every file under root but the sandboxed daemon's own directory. */
const nodeFiles = (root: string) => tree(root, (p) => p === join(root, "ctd"));

describe.skipIf(!canRun)("a config whose candidate fails the probe, on the real containerd 1.6: the node is left exactly as it was", () => {
  let base: string;
  beforeAll(() => { base = mkdtempSync(join(tmpdir(), "apparate-probe-fail-")); });
  afterAll(() => { if (base) rmSync(base, { recursive: true, force: true }); });

  // k3s's 2025 version-2 template: upstream containerd 1.6 does not load CRI from it (no_pivot
  // with runc v2), so the probe of apparate's candidate fails as the node's own file would.
  it("k3s 2025 version-2 config: InstallError, no backup, no hosts.toml, no snapshotter config, no state left; daemon not restarted", async () => {
    const file = "k3s-2025-rendered-v2.toml";
    const root = join(base, file);
    const { ctd, installer } = sandboxNode(root, readFileSync(join(FIXTURES, file), "utf8"), { mirrors: { "quay.io": ["quay.mirror.example"] } });
    const before = nodeFiles(root);
    const restarts = ctd.restarts;
    await expect(installer.apply()).rejects.toThrow(/CRI|cri/);
    expect(nodeFiles(root)).toEqual(before);
    expect(ctd.restarts).toBe(restarts);
    // Again (the agent retries on its next tick): still nothing left behind.
    await expect(installer.apply()).rejects.toThrow(/CRI|cri/);
    expect(nodeFiles(root)).toEqual(before);
  }, 120_000);

  it("negative control: the same mirrors on a config that installs leave hosts.toml, the backup and the state", async () => {
    const root = join(base, "installs");
    const { ctd, installer } = sandboxNode(root, readFileSync(join(FIXTURES, "containerd-1.6.20-default-v2.toml"), "utf8"), { mirrors: { "quay.io": ["quay.mirror.example"] } });
    await ctd.start();
    try {
      expect(await installer.apply()).toMatchObject({ status: "installed" });
      const files = Object.keys(nodeFiles(root));
      expect(files).toEqual(expect.arrayContaining(["etc/containerd/config.toml.apparate-backup", "etc/containerd/certs.d/quay.io/hosts.toml", "etc/apparate-stargz/config.toml", "var/lib/apparate-node/state.json"]));
      expect((await installer.uninstall()).restored).toBe(true);
    } finally {
      await ctd.stop();
    }
  }, 120_000);
});
