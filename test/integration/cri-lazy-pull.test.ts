// What the kubelet does on a node: a CRI PullImage of an image converted by `apparate
// convert`, through the stargz snapshotter as containerd's CRI snapshotter with snapshot
// annotations on, on every containerd release under test. The pull returns having fetched
// under 25 % of the image's layer bytes (counted at a proxy in front of the registry) and
// the layers are FUSE mounts. Negative control: CRI pulling the unconverted original the
// same way fetches all of it. (Measured at once: stargz's background fetch completes the
// layers after a few quiet seconds, as it should.)
import { existsSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Writable } from "node:stream";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { main } from "../../src/cli/main.js";
import { containerds, type TestContainerd } from "../support/containerd.js";
import { startCountingProxy, type CountingProxy } from "../support/counting-proxy.js";
import { criPull } from "../support/cri-client.js";
import { buildAndPushImage, layerBytes } from "../support/images.js";
import { getManifest } from "../support/oci-images.js";
import { startLazyNode, type LazyNode } from "../support/lazy-node.js";
import { registryAvailable, startRegistry, type RunningRegistry } from "../support/registry.js";

const canRun = registryAvailable && process.getuid?.() === 0 && existsSync("/dev/fuse") && existsSync("/usr/bin/containerd");

describe.skipIf(!canRun && process.env.CI !== "true")("a CRI pull (as the kubelet pulls) of an apparate-converted image is lazy", () => {
  let reg: RunningRegistry;
  let proxy: CountingProxy;
  let base: string;

  beforeAll(async () => {
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
      let node: LazyNode;

      beforeAll(async () => {
        dir = mkdtempSync(join(base, "node-"));
        node = await startLazyNode(dir, { release, plainHttp: [proxy.host, reg.host], cri: true });
        ctd = node.ctd;
      }, 120_000);

      afterAll(async () => { await node?.stop(); });

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
