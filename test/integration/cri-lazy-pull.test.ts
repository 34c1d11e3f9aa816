// What the kubelet does on a node: a CRI PullImage of an image converted by `apparate
// convert`, through the stargz snapshotter as containerd's CRI snapshotter with snapshot
// annotations on, on every containerd release under test. The pull returns having fetched
// under 25 % of the image's layer bytes (counted at a proxy in front of the registry) and
// the layers are FUSE mounts. Negative control: CRI pulling the unconverted original the
// same way fetches all of it. (Measured at once: stargz's background fetch completes the
// layers after a few quiet seconds, as it should.)
import { execFileSync, spawn, type ChildProcess } from "node:child_process";
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Writable } from "node:stream";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { main } from "../../src/cli/main.js";
import { containerds, TestContainerd, type ContainerdBinary } from "../support/containerd.js";
import { startCountingProxy, type CountingProxy } from "../support/counting-proxy.js";
import { criPull } from "../support/cri-client.js";
import { buildAndPushImage, layerBytes } from "../support/images.js";
import { getManifest } from "../support/oci-images.js";
import { waitFor } from "../support/ports.js";
import { registryAvailable, startRegistry, type RunningRegistry } from "../support/registry.js";

const SNAPSHOTTER = ".tmp/bin/apparate-test-snapshotter";
const canRun = registryAvailable && process.getuid?.() === 0 && existsSync("/dev/fuse") && existsSync("/usr/bin/containerd");

/** The CRI image settings where each major reads them: 1.x in a version-2 file, 2.x in a version-3 file. */
function criConfig(release: ContainerdBinary, dir: string, sock: string, certs: string): string {
  const head = `root = "${dir}/ctd/root"\nstate = "${dir}/ctd/state"\n[grpc]\naddress = "${dir}/ctd/containerd.sock"\n[proxy_plugins.stargz]\ntype = "snapshot"\naddress = "${sock}"\n`;
  if (release.version.startsWith("2")) {
    return `version = 3\n${head}[plugins."io.containerd.cri.v1.images"]\nsnapshotter = "stargz"\ndisable_snapshot_annotations = false\n[plugins."io.containerd.cri.v1.images".registry]\nconfig_path = "${certs}"\n`;
  }
  return `version = 2\n${head}[plugins."io.containerd.grpc.v1.cri".containerd]\nsnapshotter = "stargz"\ndisable_snapshot_annotations = false\n[plugins."io.containerd.grpc.v1.cri".registry]\nconfig_path = "${certs}"\n`;
}

describe.skipIf(!canRun && process.env.CI !== "true")("a CRI pull (as the kubelet pulls) of an apparate-converted image is lazy", () => {
  let reg: RunningRegistry;
  let proxy: CountingProxy;
  let base: string;

  beforeAll(async () => {
    execFileSync("bash", ["test/support/build-snapshotter.sh"], { stdio: "inherit" });
    base = mkdtempSync(join(tmpdir(), "apparate-cri-lazy-"));
    reg = await startRegistry();
    proxy = await startCountingProxy(reg.host);
    await buildAndPushImage(join(base, "img"), `${reg.host}/lazy/cri:1.0`, 24 << 20);
    let err = "";
    const code = await main(["convert", `${reg.host}/lazy/cri:1.0`, "--plain-http"], new Writable({ write(_c, _e, cb) { cb(); } }), new Writable({ write(c, _e, cb) { err += c; cb(); } }));
    expect(code, err).toBe(0);
  }, 300_000);

  afterAll(async () => {
    await proxy?.stop();
    await reg?.stop();
    if (base) rmSync(base, { recursive: true, force: true });
  });

  for (const release of containerds()) {
    describe(`containerd ${release.version}`, () => {
      let dir: string;
      let ctd: TestContainerd;
      let sn: ChildProcess;

      beforeAll(async () => {
        dir = mkdtempSync(join(base, "node-"));
        const sock = join(dir, "sn", "stargz.sock");
        sn = spawn(SNAPSHOTTER, ["--address", sock, "--root", join(dir, "sn", "root"), "--plain-http", `${proxy.host},${reg.host}`], { stdio: "ignore" });
        await waitFor(async () => existsSync(sock), 30_000, "the snapshotter socket");
        const certs = join(dir, "certs.d");
        mkdirSync(join(certs, proxy.host), { recursive: true });
        writeFileSync(join(certs, proxy.host, "hosts.toml"), `server = "http://${proxy.host}"\n[host."http://${proxy.host}"]\ncapabilities = ["pull", "resolve"]\n`);
        const configPath = join(dir, "containerd.toml");
        writeFileSync(configPath, criConfig(release, dir, sock, certs));
        ctd = new TestContainerd(join(dir, "ctd"), configPath, release);
        await ctd.start();
      }, 120_000);

      afterAll(async () => {
        await ctd?.stop();
        sn?.kill("SIGTERM");
        await new Promise((r) => setTimeout(r, 500));
        try { execFileSync("bash", ["-c", `grep -o '${dir}[^ ]*' /proc/mounts | sort -r | xargs -r -n1 umount -l`]); } catch { /* none */ }
      });

      it("PullImage of the -apparate image returns having fetched under 25 % of its layers, which are FUSE mounts", async () => {
        const y = (await getManifest(reg.url, "lazy/cri", "1.0-apparate")).digest;
        const size = await layerBytes(reg.url, "lazy/cri", y);
        proxy.reset();
        const ref = await criPull(ctd.socket, `${proxy.host}/lazy/cri:1.0-apparate`, 300_000);
        const fetched = proxy.blobBytes;
        expect(ref).toBe((await getManifest(reg.url, "lazy/cri", y)).json.config.digest);
        expect(fetched / size).toBeLessThan(0.25);
        expect(readFileSync("/proc/mounts", "utf8")).toMatch(new RegExp(`${dir}/sn/root/snapshotter/snapshots/\\d+/fs fuse`));
      }, 300_000);

      it("negative control: PullImage of the unconverted original fetches all of its layers", async () => {
        const x = (await getManifest(reg.url, "lazy/cri", "1.0")).digest;
        proxy.reset();
        await criPull(ctd.socket, `${proxy.host}/lazy/cri:1.0`, 300_000);
        expect(proxy.blobBytes).toBeGreaterThanOrEqual(await layerBytes(reg.url, "lazy/cri", x));
      }, 300_000);
    });
  }
});
