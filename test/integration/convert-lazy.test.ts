// Oracle 4, the purpose: an image converted by `apparate convert` is pulled lazily by
// containerd through the stargz snapshotter (the test snapshotter built from Debian's
// stargz-snapshotter library), runs, and a command that reads little fetches under
// 25 % of the image's bytes, counted at a proxy in front of the registry.
import { existsSync, mkdtempSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Writable } from "node:stream";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { main } from "../../src/cli/main.js";
import { FOOTER_SIZE, parseFooter, type TocEntry } from "../../src/convert/estargz.js";
import { gunzipSync } from "node:zlib";
import type { TestContainerd } from "../support/containerd.js";
import { startCountingProxy, type CountingProxy } from "../support/counting-proxy.js";
import { buildAndPushImage, layerBytes } from "../support/images.js";
import { getBlob, getManifest } from "../support/oci-images.js";
import { startLazyNode, type LazyNode } from "../support/lazy-node.js";
import { registryAvailable, startRegistry, type RunningRegistry } from "../support/registry.js";

const canRun = registryAvailable && process.getuid?.() === 0 && existsSync("/dev/fuse") && existsSync("/usr/bin/containerd") && existsSync("/usr/bin/ctr-remote");

describe.skipIf(!canRun && process.env.CI !== "true")("an image made by apparate convert, pulled lazily through the stargz snapshotter (oracle 4)", () => {
  let dir: string;
  let reg: RunningRegistry;
  let proxy: CountingProxy;
  let ctd: TestContainerd;
  let node: LazyNode;

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), "apparate-convert-lazy-"));
    reg = await startRegistry();
    proxy = await startCountingProxy(reg.host);
    node = await startLazyNode(dir, { plainHttp: [proxy.host, reg.host], cri: false });
    ctd = node.ctd;
    // busybox, a small file, and 24 MiB that the command never reads.
    await buildAndPushImage(join(dir, "img"), `${reg.host}/lazy/app:1.0`, 24 << 20);
  }, 300_000);

  afterAll(async () => {
    await node?.stop();
    await proxy?.stop();
    await reg?.stop();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it("runs after a lazy pull and fetches under 25 % of the image; the unconverted image (negative control) fetches all of it", async () => {
    let err = "";
    const code = await main(["convert", `${reg.host}/lazy/app:1.0`, "--plain-http"], new Writable({ write(_c, _e, cb) { cb(); } }), new Writable({ write(c, _e, cb) { err += c; cb(); } }));
    expect(code, err).toBe(0);
    const size = await layerBytes(reg.url, "lazy/app", "1.0-apparate");

    proxy.reset();
    const image = `${proxy.host}/lazy/app:1.0-apparate`;
    await ctd.ctr(["images", "rpull", "--snapshotter", "stargz", "--plain-http", image], 300_000);
    const out = await ctd.ctr(["run", "--rm", "--snapshotter", "stargz", image, "lazy-run", "/bin/busybox", "cat", "/www/index.html"], 300_000);
    expect(out).toContain("hello from apparate");
    expect(proxy.blobBytes / size).toBeLessThan(0.25);

    proxy.reset();
    await ctd.ctr(["images", "pull", "--plain-http", `${proxy.host}/lazy/app:1.0`], 300_000);
    expect(proxy.blobBytes).toBeGreaterThanOrEqual(await layerBytes(reg.url, "lazy/app", "1.0"));
  }, 600_000);
  /**
   * Blob bytes fetched through the proxy within `ms` of a mount (or as soon as `enough`
   * arrived). The snapshotter's background fetch of whole layers waits for 5 s without
   * on-demand reads (fs/fs.go, NewBackgroundTaskManager(…, 5*time.Second)): these
   * windows stay inside that, so they see prefetch and on-demand reads only.
   */
  async function bytesWithin(ms: number, enough = Number.POSITIVE_INFINITY): Promise<number> {
    const until = Date.now() + ms;
    while (Date.now() < until && proxy.blobBytes < enough) await new Promise((r) => setTimeout(r, 50));
    return proxy.blobBytes;
  }

  it("--prefetch: the snapshotter fetches the listed files when it mounts the layer, before anything runs; the workload then fetches nothing more; without a list (negative control) the mount fetches only the TOC", async () => {
    const list = join(dir, "prefetch.txt");
    writeFileSync(list, "# what `cat /www/index.html` reads\n/bin/busybox\n/www/index.html\n");
    const quiet = new Writable({ write(_c, _e, cb) { cb(); } });
    let err = "";
    const errs = new Writable({ write(c, _e, cb) { err += c; cb(); } });
    expect(await main(["convert", `${reg.host}/lazy/app:1.0`, `${reg.host}/lazy/app:1.0-prefetch`, "--plain-http", "--prefetch", list], quiet, errs), err).toBe(0);
    expect(await main(["convert", `${reg.host}/lazy/app:1.0`, `${reg.host}/lazy/app:1.0-plain`, "--plain-http"], quiet, errs), err).toBe(0);

    // Where the landmark sits: the snapshotter prefetches [0, its offset).
    const m = (await getManifest(reg.url, "lazy/app", "1.0-prefetch")).json;
    const blob = await getBlob(reg.url, "lazy/app", m.layers[0].digest);
    const off = parseFooter(blob.subarray(-FOOTER_SIZE))!;
    const tocTar = gunzipSync(blob.subarray(off, blob.length - FOOTER_SIZE));
    const toc = (JSON.parse(tocTar.subarray(512, 512 + Number.parseInt(tocTar.subarray(124, 136).toString("latin1").replace(/\0.*$/, "").trim(), 8)).toString()) as { entries: TocEntry[] }).entries;
    const landmark = toc.find((e) => e.name === ".prefetch.landmark")!;
    expect(toc.slice(0, toc.indexOf(landmark)).map((e) => e.name).filter((n) => !n.endsWith("/"))).toEqual(expect.arrayContaining(["bin/busybox", "www/index.html"]));
    const busyboxBytes = statSync("/bin/busybox").size;

    proxy.reset();
    await ctd.ctr(["images", "rpull", "--snapshotter", "stargz", "--plain-http", `${proxy.host}/lazy/app:1.0-prefetch`], 300_000);
    const atMount = await bytesWithin(3000, landmark.offset!);
    expect(atMount).toBeGreaterThanOrEqual(landmark.offset!);
    const out = await ctd.ctr(["run", "--rm", "--snapshotter", "stargz", `${proxy.host}/lazy/app:1.0-prefetch`, "prefetch-run", "/bin/busybox", "cat", "/www/index.html"], 300_000);
    expect(out).toContain("hello from apparate");
    expect(proxy.blobBytes - atMount).toBeLessThan(64 << 10);

    proxy.reset();
    await ctd.ctr(["images", "rpull", "--snapshotter", "stargz", "--plain-http", `${proxy.host}/lazy/app:1.0-plain`], 300_000);
    const plainAtMount = await bytesWithin(1500);
    expect(plainAtMount).toBeLessThan(busyboxBytes / 4);
  }, 600_000);
});
