// Issue 27 end to end on a node: a pod pinned to X (a real image built with umoci, busybox
// and 24 MiB it never reads) is converted by `apparate convert` (which records X -> Y),
// admitted by the real webhook with acceleration.digestPinned, and the pinned Y it now
// names is pulled lazily through the stargz snapshotter (bytes at a counting proxy in front
// of the registry, FUSE mounts) and runs, and containerd's CRI pulls that reference.
// Negative control: X, pulled without the snapshotter, is fetched in full.
import { existsSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Writable } from "node:stream";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { main } from "../../src/cli/main.js";
import type { TestContainerd } from "../support/containerd.js";
import { startCountingProxy, type CountingProxy } from "../support/counting-proxy.js";
import { criPull } from "../support/cri-client.js";
import { buildAndPushImage, layerBytes } from "../support/images.js";
import { getManifest } from "../support/oci-images.js";
import { startLazyNode, type LazyNode } from "../support/lazy-node.js";
import { registryAvailable, startRegistry, type RunningRegistry } from "../support/registry.js";
import { decodePatch, review, startWebhook, type TestWebhook } from "../support/webhook.js";

const canRun = registryAvailable && process.getuid?.() === 0 && existsSync("/dev/fuse") && existsSync("/usr/bin/containerd") && existsSync("/usr/bin/ctr-remote");

describe.skipIf(!canRun && process.env.CI !== "true")("a digest-pinned pod, accelerated, pulled lazily through the stargz snapshotter and by CRI", () => {
  let dir: string;
  let reg: RunningRegistry;
  let proxy: CountingProxy;
  let ctd: TestContainerd;
  let node: LazyNode;
  let hook: TestWebhook;

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), "apparate-pinned-lazy-"));
    reg = await startRegistry();
    proxy = await startCountingProxy(reg.host);
    // CRI on, its snapshotter the stargz proxy plugin, the registry plain HTTP through hosts.toml.
    node = await startLazyNode(dir, { plainHttp: [proxy.host, reg.host], cri: true });
    ctd = node.ctd;
    await buildAndPushImage(join(dir, "img"), `${reg.host}/lazy/pinned:1.0`, 24 << 20);
    hook = await startWebhook({ namespaces: ["default"], acceleration: { registries: [proxy.host], digestPinned: true, placement: { mode: "none" } }, registry: { plainHttp: [proxy.host] } });
  }, 300_000);

  afterAll(async () => {
    await hook?.stop();
    await node?.stop();
    await proxy?.stop();
    await reg?.stop();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it("X -> Y recorded, the pinned pod rewritten to Y, Y pulled lazily (under 25 % of its bytes) and run, CRI pulls it; X fetches all of it", async () => {
    const x = (await getManifest(reg.url, "lazy/pinned", "1.0")).digest;
    let err = "";
    const code = await main(["convert", `${reg.host}/lazy/pinned:1.0`, "--plain-http"], new Writable({ write(_c, _e, cb) { cb(); } }), new Writable({ write(c, _e, cb) { err += c; cb(); } }));
    expect(code, err).toBe(0);
    const y = (await getManifest(reg.url, "lazy/pinned", "1.0-apparate")).digest;

    const pinned = `${proxy.host}/lazy/pinned:1.0@${x}`;
    const r = await hook.post(review({ apiVersion: "v1", kind: "Pod", metadata: { name: "web", namespace: "default" }, spec: { containers: [{ name: "web", image: pinned }] } }));
    const image = decodePatch(r.json).find((op: { path: string }) => op.path === "/spec/containers/0/image")?.value;
    expect(image).toBe(`${proxy.host}/lazy/pinned:1.0-apparate@${y}`);

    const size = await layerBytes(reg.url, "lazy/pinned", y);
    // Lazily, through the snapshotter, the exact reference the webhook wrote (as convert-lazy
    // proves it for tags): under 25 % of Y's bytes, FUSE mounts, and it runs.
    proxy.reset();
    await ctd.ctr(["images", "rpull", "--snapshotter", "stargz", "--plain-http", image], 300_000);
    expect(proxy.blobBytes / size).toBeLessThan(0.25);
    expect(readFileSync("/proc/mounts", "utf8")).toMatch(new RegExp(`${dir}/sn/root/snapshotter/snapshots/\\d+/fs fuse`));
    const out = await ctd.ctr(["run", "--rm", "--snapshotter", "stargz", image, "pinned-run", "/bin/busybox", "cat", "/www/index.html"], 300_000);
    expect(out).toContain("hello from apparate");
    expect(proxy.blobBytes / size).toBeLessThan(0.25);

    // containerd's CRI (as the kubelet pulls) takes the pinned tag+digest reference: the image ID is Y's config.
    const ref = await criPull(ctd.socket, image, 300_000);
    expect(ref).toBe((await getManifest(reg.url, "lazy/pinned", y)).json.config.digest);

    // Negative control: the original, pinned, pulled without the snapshotter, fetches all of it.
    proxy.reset();
    await ctd.ctr(["images", "pull", "--plain-http", pinned], 300_000);
    expect(proxy.blobBytes).toBeGreaterThanOrEqual(await layerBytes(reg.url, "lazy/pinned", x));
  }, 600_000);
});
