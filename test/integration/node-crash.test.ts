// Fault injection: the node agent dies right after each journal step of install and of
// uninstall (the afterStep hook throws, as APPARATE_CRASH_AFTER exits in main); a new
// agent then converges. Real containerd (1.6, 1.7, 2.x) with CRI, the test lazy-loading snapshotter,
// the Kubernetes API stand-in. The node is never labelled while CRI does not use the snapshotter.
import { afterEach, describe, expect, it } from "vitest";
import { execFileSync } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Writable } from "node:stream";
import { NodeAgent } from "../../src/nodeagent/agent.js";
import { INSTALL_STEPS, Installer, UNINSTALL_STEPS } from "../../src/nodeagent/installer.js";
import { NodeLabeler } from "../../src/nodeagent/label.js";
import { ProcessSnapshotter } from "../../src/nodeagent/service.js";
import { createLogger } from "../../src/observability/logger.js";
import { type ContainerdBinary, containerds, TestContainerd } from "../support/containerd.js";
import { KubeApiStandIn } from "../support/kube-api-standin.js";

const SNAPSHOTTER = ".tmp/bin/apparate-test-snapshotter";
const canRun = process.getuid?.() === 0 && existsSync("/usr/bin/containerd");
const logger = createLogger({ destination: new Writable({ write(_c, _e, cb) { cb(); } }) });
class Crash extends Error {}
const LABEL = "cloud.tencent.com/apparate";

interface Node { dir: string; ctd: TestContainerd; api: KubeApiStandIn; service: ProcessSnapshotter; original: string; config: string }
let nodes: Node[] = [];

async function node(release: ContainerdBinary): Promise<Node> {
  execFileSync("bash", ["test/support/build-snapshotter.sh"], { stdio: "inherit" });
  const dir = mkdtempSync(join(tmpdir(), "apparate-crash-"));
  const config = join(dir, "containerd", "config.toml");
  const original = `version = 2
root = "${dir}/containerd/root"
state = "${dir}/containerd/state"
[grpc]
address = "${dir}/containerd/containerd.sock"
[plugins."io.containerd.grpc.v1.cri".registry.mirrors."registry.legacy.example"]
endpoint = ["https://legacy-mirror.example"]
`;
  const ctd = new TestContainerd(join(dir, "containerd"), config, release);
  writeFileSync(config, original, { mode: 0o600 });
  await ctd.start();
  const api = new KubeApiStandIn();
  await api.start();
  api.put("nodes", { metadata: { name: "node-1", labels: {} } });
  const sock = join(dir, "sn", "stargz.sock");
  const service = new ProcessSnapshotter({ binary: SNAPSHOTTER, args: ["--address", sock, "--root", join(dir, "sn", "root")], socket: sock, root: join(dir, "sn", "root") }, logger);
  const n = { dir, ctd, api, service, original, config };
  nodes.push(n);
  return n;
}

function agent(n: Node, crashAfter?: string): NodeAgent {
  const sock = join(n.dir, "sn", "stargz.sock");
  return new NodeAgent({
    installer: new Installer({
      hostRoot: "", containerdConfig: n.config, certsDir: join(n.dir, "certs.d"), snapshotterSocket: sock, snapshotterConfigDir: join(n.dir, "sn", "etc"),
      mirrors: { "quay.io": ["quay.mirror.example"] }, plainHttp: [], stateDir: join(n.dir, "agent-state"),
      ...(crashAfter ? { afterStep: (s: string) => { if (s === crashAfter) throw new Crash(`crash after ${s}`); } } : {}),
    }, n.ctd, logger),
    runtime: n.ctd, service: n.service,
    labeler: new NodeLabeler(n.api.kubeConfig(), "node-1", LABEL, "true", logger),
    socket: sock, checkIntervalMs: 60_000, unhealthyThreshold: 3, logger,
  });
}

const labelled = (n: Node) => n.api.get("nodes", "node-1")!.metadata.labels?.[LABEL] === "true";

/** The invariant: a label only while CRI runs the snapshotter. */
async function assertLabelHonest(n: Node): Promise<void> {
  const st = await n.ctd.criStatus();
  if (!(st.loaded && st.snapshotter === "stargz")) expect(labelled(n)).toBe(false);
}

afterEach(async () => {
  for (const n of nodes) {
    await n.service.remove().catch(() => undefined);
    await n.ctd.stop();
    await n.api.stop();
    rmSync(n.dir, { recursive: true, force: true });
  }
  nodes = [];
});

describe.skipIf(!canRun).each(containerds().map((c) => [c.version, c] as const))("crash after every step, then a restarted agent converges (real containerd %s with CRI)", (_v, release) => {
  // containerd 2.x does not report config_path over CRI (its dump is checked before the write).
  const reportedPath = (dir: string) => (release.version.startsWith("1.") ? join(dir, "certs.d") : undefined);
  it.each(INSTALL_STEPS.map((s) => [s]))("install crashes after %s: the next agent finishes, CRI uses the snapshotter, mirrors are there, then it labels", async (step) => {
    const n = await node(release);
    await expect(agent(n, step).install()).rejects.toThrow(Crash);
    await assertLabelHonest(n);
    const next = agent(n);
    // Supervision may tick before install finishes: it must not label a node whose CRI lacks the snapshotter.
    await next.checkOnce();
    await assertLabelHonest(n);
    expect(await next.install()).toMatchObject({ status: "installed" });
    expect(await n.ctd.criStatus()).toMatchObject({ loaded: true, snapshotter: "stargz", configPath: reportedPath(n.dir) });
    expect(readFileSync(`${n.config}.apparate-backup`, "utf8")).toBe(n.original);
    expect(readFileSync(join(n.dir, "certs.d", "registry.legacy.example", "hosts.toml"), "utf8")).toContain("https://legacy-mirror.example");
    expect(existsSync(join(n.dir, "certs.d", "quay.io", "hosts.toml"))).toBe(true);
    expect((await next.checkOnce()).healthy).toBe(true);
    expect(labelled(n)).toBe(true);
  }, 60_000);

  it.each(UNINSTALL_STEPS.map((s) => [s]))("uninstall crashes after %s: the next uninstall restores the original bytes and mode, keeps no leftovers, and the label is gone", async (step) => {
    const n = await node(release);
    const a = agent(n);
    await a.install();
    await a.checkOnce();
    expect(labelled(n)).toBe(true);
    await expect(agent(n, step).uninstall()).rejects.toThrow(Crash);
    await assertLabelHonest(n);
    const r = await agent(n).uninstall();
    expect(r.restored).toBe(true);
    expect(readFileSync(n.config, "utf8")).toBe(n.original);
    expect(readFileSync(n.config).length).toBeGreaterThan(0);
    expect((await import("node:fs")).statSync(n.config).mode & 0o777).toBe(0o600);
    expect(existsSync(`${n.config}.apparate-backup`)).toBe(false);
    expect(existsSync(join(n.dir, "certs.d", "quay.io"))).toBe(false);
    expect(existsSync(join(n.dir, "agent-state", "state.json"))).toBe(false);
    expect(await n.ctd.criStatus()).toMatchObject({ loaded: true, snapshotter: "overlayfs" });
    expect(labelled(n)).toBe(false);
    // The legacy mirror is back in the config (the original bytes), so nothing was lost.
    expect(readFileSync(n.config, "utf8")).toContain("legacy-mirror.example");
  }, 60_000);

  it("the issue's failing case: a candidate CRI refuses is caught before the live file changes (no restart, file and label untouched)", async () => {
    const n = await node(release);
    // CRI refuses this config (a default runtime that is not configured), with or without apparate.
    const broken = `${n.original}[plugins."io.containerd.grpc.v1.cri".containerd]\ndefault_runtime_name = "crun"\n`;
    writeFileSync(n.config, broken, { mode: 0o600 });
    const before = n.ctd.restarts;
    await expect(agent(n).install()).rejects.toThrow(/does not load its CRI plugin.*no corresponding runtime configured/);
    expect(readFileSync(n.config, "utf8")).toBe(broken);
    expect(n.ctd.restarts).toBe(before);
    expect(labelled(n)).toBe(false);
    // Negative control: legacy configs.tls next to config_path, which CRI 1.6 refuses, is what apparate now moves out: it installs.
    writeFileSync(n.config, `${n.original}[plugins."io.containerd.grpc.v1.cri".registry.configs."legacy-mirror.example".tls]\ninsecure_skip_verify = true\n`, { mode: 0o600 });
    rmSync(join(n.dir, "agent-state"), { recursive: true, force: true });
    rmSync(`${n.config}.apparate-backup`, { force: true });
    expect(await agent(n).install()).toMatchObject({ status: "installed", restarted: true });
    expect(await n.ctd.criStatus()).toMatchObject({ loaded: true, snapshotter: "stargz" });
    expect(readFileSync(join(n.dir, "certs.d", "legacy-mirror.example", "hosts.toml"), "utf8")).toContain("skip_verify = true");
  }, 60_000);
});
