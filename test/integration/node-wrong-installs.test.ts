// Issue 23 item 3 on the real containerd 1.6 (Debian 1.6.20): the installs that went
// wrong, each checked against what the daemon itself runs (its CRI Status config) or
// requests (URLs a loopback mirror receives on CRI pulls).
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Writable } from "node:stream";
import { Installer } from "../../src/nodeagent/installer.js";
import { createLogger } from "../../src/observability/logger.js";
import { SandboxedContainerd } from "../support/containerd.js";
import { criConfig } from "../support/cri-client.js";

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
    mkdirSync(join(root, "etc/containerd"), { recursive: true });
    const live = join(root, "etc/containerd/config.toml");
    writeFileSync(live, original);
    let installer: Installer | undefined;
    const ctd = new SandboxedContainerd(join(root, "ctd"), () => installer!.effectiveLive(), join(root, "etc/containerd"));
    installer = new Installer({
      hostRoot: root, containerdConfig: "/etc/containerd/config.toml", certsDir: "/etc/containerd/certs.d",
      snapshotterSocket: "/run/apparate-stargz/stargz.sock", snapshotterConfigDir: "/etc/apparate-stargz",
      mirrors: {}, plainHttp: [], stateDir: "/var/lib/apparate-node",
    }, ctd, logger);
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
