// Issue 26 item 3, learning the list on a node: an image converted without a list is pulled
// lazily through the stargz snapshotter; `apparate record-prefetch`'s recording (the
// apparate-prefetch-recorder on the layer mounts found in mountinfo) runs while a workload
// starts (ctr run); the list holds exactly the files the workload opened. Published as the
// repository's ConfigMap (through the Kubernetes API stand-in) and read by the push-triggered
// converter's engine on the next conversion, it puts those files behind .prefetch.landmark:
// the next start finds them fetched at mount and fetches nothing more.
import { readFileSync, existsSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Writable } from "node:stream";
import { gunzipSync } from "node:zlib";
import { execFileSync } from "node:child_process";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { main } from "../../src/cli/main.js";
import { FOOTER_SIZE, parseFooter, type TocEntry } from "../../src/convert/estargz.js";
import { compileConfig } from "../../src/config/config.js";
import { PREFETCH_ANNOTATION } from "../../src/convert/image.js";
import { engineFor } from "../../src/converter/engine.js";
import { learnedPrefetch } from "../../src/converter/learned-prefetch.js";
import { PrefetchLists, prefetchConfigMapName } from "../../src/kube/prefetch-list.js";
import { recordPrefetch } from "../../src/nodeagent/record-prefetch.js";
import { createLogger } from "../../src/observability/logger.js";
import { Metrics } from "../../src/observability/metrics.js";
import { createRegistryStack } from "../../src/registry/stack.js";
import { KubeApiStandIn } from "../support/kube-api-standin.js";
import { lazyLayerMounts } from "../../src/nodeagent/prefetch-recorder.js";
import type { TestContainerd } from "../support/containerd.js";
import { startCountingProxy, type CountingProxy } from "../support/counting-proxy.js";
import { buildAndPushImage } from "../support/images.js";
import { getBlob, getManifest } from "../support/oci-images.js";
import { startLazyNode, type LazyNode } from "../support/lazy-node.js";
import { registryAvailable, startRegistry, type RunningRegistry } from "../support/registry.js";

const RECORDER = ".tmp/bin/apparate-prefetch-recorder";
const canRun = registryAvailable && process.getuid?.() === 0 && existsSync("/dev/fuse") && existsSync("/usr/bin/containerd");
const quiet = () => new Writable({ write(_c, _e, cb) { cb(); } });

describe.skipIf(!canRun && process.env.CI !== "true")("a prefetch list learned on a lazy node and fed back to the converter", () => {
  let dir: string;
  let reg: RunningRegistry;
  let proxy: CountingProxy;
  let ctd: TestContainerd;
  let node: LazyNode;
  let api: KubeApiStandIn;

  beforeAll(async () => {
    execFileSync("bash", ["test/support/build-recorder.sh"], { stdio: "inherit" });
    dir = mkdtempSync(join(tmpdir(), "apparate-prefetch-learn-"));
    reg = await startRegistry();
    api = new KubeApiStandIn();
    await api.start();
    proxy = await startCountingProxy(reg.host);
    node = await startLazyNode(dir, { plainHttp: [proxy.host, reg.host], cri: false });
    ctd = node.ctd;
    // busybox, /www/index.html, and 8 MiB (/www/big.bin) that the workload never reads.
    await buildAndPushImage(join(dir, "img"), `${reg.host}/learn/app:1.0`, 8 << 20);
  }, 300_000);

  afterAll(async () => {
    await node?.stop();
    await proxy?.stop();
    await reg?.stop();
    await api?.stop();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  /** record-prefetch's window on this node (the test's own /proc stands for the host's). */
  const record = (seconds: number) => recordPrefetch({ seconds, max: 0, snapshotterRoot: join(dir, "sn", "root"), hostProc: "/proc/self", recorder: RECORDER });

  async function landmarkOffset(tag: string): Promise<{ offset: number; before: string[] }> {
    const m = (await getManifest(reg.url, "learn/app", tag)).json;
    const blob = await getBlob(reg.url, "learn/app", m.layers[0].digest);
    const off = parseFooter(blob.subarray(-FOOTER_SIZE))!;
    const tocTar = gunzipSync(blob.subarray(off, blob.length - FOOTER_SIZE));
    const toc = (JSON.parse(tocTar.subarray(512, 512 + Number.parseInt(tocTar.subarray(124, 136).toString("latin1").replace(/\0.*$/, "").trim(), 8)).toString()) as { entries: TocEntry[] }).entries;
    const i = toc.findIndex((e) => e.name === ".prefetch.landmark");
    if (i < 0) return { offset: 0, before: [] };
    return { offset: toc[i]!.offset!, before: toc.slice(0, i).filter((e) => e.type === "reg").map((e) => e.name) };
  }

  it("records exactly the files the workload opened (big.bin, never read, is absent); published and read back by the converter's engine, the next conversion puts them first and the next start fetches them at mount and nothing more", async () => {
    let err = "";
    const errs = new Writable({ write(c, _e, cb) { err += c; cb(); } });
    expect(await main(["convert", `${reg.host}/learn/app:1.0`, "--plain-http"], quiet(), errs), err).toBe(0);
    expect((await landmarkOffset("1.0-apparate")).before).toEqual([]);
    const image = `${proxy.host}/learn/app:1.0-apparate`;
    await ctd.ctr(["images", "rpull", "--snapshotter", "stargz", "--plain-http", image], 300_000);
    expect(lazyLayerMounts(readFileSync("/proc/self/mountinfo", "utf8"), join(dir, "sn", "root"))).toHaveLength(1);

    // Negative control: a window with no workload records nothing.
    const idle = await record(120);
    await new Promise((r) => setTimeout(r, 500));
    expect(await idle.stop()).toEqual([]);

    const recording = await record(120);
    proxy.reset();
    const out = await ctd.ctr(["run", "--rm", "--snapshotter", "stargz", image, "learn-run", "/bin/busybox", "cat", "/www/index.html"], 300_000);
    expect(out).toContain("hello from apparate");
    const plainRunBytes = proxy.blobBytes;
    const learned = await recording.stop();
    expect(learned).toEqual(["/bin/busybox", "/www/index.html"]);
    // Without a list the start fetches busybox on demand (the figure the learned list removes).
    expect(plainRunBytes).toBeGreaterThan(256 << 10);

    // Published as the node command does; a second recording never overwrites it.
    const repository = `${reg.host}/learn/app`;
    const lists = new PrefetchLists(api.kubeConfig(), "apparate-system");
    expect(await lists.publish(repository, learned, "node-1")).toBe("created");
    expect(await lists.publish(repository, ["/www/big.bin"], "node-2")).toBe("exists");
    expect(api.requests).toContain(`POST /api/v1/namespaces/apparate-system/configmaps`);

    // The next conversion by the push-triggered converter's engine reads it.
    const config = compileConfig({ acceleration: { registries: [reg.host] }, registry: { plainHttp: [reg.host] } });
    const stack = createRegistryStack(config, new Metrics());
    const digest = (await getManifest(reg.url, "learn/app", "1.0")).digest;
    try {
      const engine = engineFor(stack, config, learnedPrefetch(lists, createLogger({ level: "silent" })));
      const r = await engine({ registry: reg.host, repository: "learn/app", tag: "1.0", digest, targetTag: "1.0-apparate" }, AbortSignal.timeout(120_000));
      expect(r.result).toBe("converted");
    } finally { await stack.destroy(); }
    expect(api.requests).toContain(`GET /api/v1/namespaces/apparate-system/configmaps/${prefetchConfigMapName(repository)}`);
    expect((await getManifest(reg.url, "learn/app", "1.0-apparate")).json.annotations[PREFETCH_ANNOTATION]).toMatch(/^sha256:/);
    const { offset, before } = await landmarkOffset("1.0-apparate");
    expect(before).toEqual(["bin/busybox", "www/index.html"]);

    proxy.reset();
    await ctd.ctr(["images", "rpull", "--snapshotter", "stargz", "--plain-http", image], 300_000);
    const until = Date.now() + 3000;
    while (Date.now() < until && proxy.blobBytes < offset) await new Promise((r) => setTimeout(r, 50));
    const atMount = proxy.blobBytes;
    expect(atMount).toBeGreaterThanOrEqual(offset);
    const again = await ctd.ctr(["run", "--rm", "--snapshotter", "stargz", image, "learned-run", "/bin/busybox", "cat", "/www/index.html"], 300_000);
    expect(again).toContain("hello from apparate");
    const learnedRunBytes = proxy.blobBytes - atMount;
    expect(learnedRunBytes).toBeLessThan(64 << 10);
    console.log(`prefetch-learn: start without a list fetched ${plainRunBytes} B on demand; with the learned list ${atMount} B at mount (landmark at ${offset}) and ${learnedRunBytes} B on demand`);
  }, 600_000);
});
