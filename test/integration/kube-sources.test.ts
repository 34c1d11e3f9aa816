// Informers with the real @kubernetes/client-node against the Kubernetes API stand-in.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Writable } from "node:stream";
import { compileConfig } from "../../src/config/config.js";
import { startKubeSources, type KubeSources } from "../../src/kube/sources.js";
import { createLogger } from "../../src/observability/logger.js";
import { Metrics } from "../../src/observability/metrics.js";
import { KubeApiStandIn } from "../support/kube-api-standin.js";
import { waitFor } from "../support/ports.js";

const G = "eks.cloud.tencent.com";
const imc = (name: string, images: string[], extra: Record<string, unknown> = {}, status: Record<string, unknown> = { imcId: `imc-${name}`, imcPhase: "Ready" }) =>
  ({ metadata: { name }, spec: { images, imageCacheSize: 20, ...extra }, status });
const opts = { readyPhase: "Ready", matchMode: "all" as const, latestTag: "match" as const, now: Date.now() };

describe("Kubernetes sources (namespaces, pull secrets, image caches) against the API stand-in", () => {
  const api = new KubeApiStandIn();
  let sources: KubeSources;
  const logs: string[] = [];
  const PASSWORD = "pull-secret-password-4471";

  beforeAll(async () => {
    await api.start();
    api.put("namespaces", { metadata: { name: "team-a", labels: { "apparate.io/inject": "enabled" } } });
    api.put("secrets", { metadata: { name: "regcred", namespace: "team-a" }, type: "kubernetes.io/dockerconfigjson",
      data: { ".dockerconfigjson": Buffer.from(JSON.stringify({ auths: { "registry.example.com": { username: "u", password: PASSWORD } } })).toString("base64") } });
    api.put("secrets", { metadata: { name: "opaque", namespace: "team-a" }, type: "Opaque", data: { x: "eA==" } });
    api.put("imagecaches", imc("web", ["nginx:1.25", "busybox:1.36"]), G);
    api.put("imagecaches", imc("pending", ["redis:7"], {}, { imcPhase: "Creating" }), G);
    const config = compileConfig({ imageCache: { enabled: true } });
    const logger = createLogger({ destination: new Writable({ write(c, _e, cb) { logs.push(c.toString()); cb(); } }) });
    sources = await startKubeSources(config, logger, new Metrics(), api.kubeConfig());
    await waitFor(async () => sources.notReady().length === 0, 10_000, "informers to sync");
  });

  afterAll(async () => { sources?.stop(); await api.stop(); });

  it("initial list: namespaces, docker config secrets only, image caches", () => {
    expect(sources.namespaces.labels("team-a")).toEqual({ "apparate.io/inject": "enabled" });
    expect(sources.namespaces.labels("missing")).toEqual({});
    const k = sources.pullSecrets.keyrings("team-a", ["regcred", "opaque", "absent"]);
    expect(k).toHaveLength(1);
    expect(k[0]!.lookup("registry.example.com", "x/y")[0]!.username).toBe("u");
    expect(sources.imageCaches!.size).toBe(2);
    expect(sources.imageCaches!.match(["nginx:1.25"], opts)).toMatchObject({ kind: "matched" });
    expect(sources.imageCaches!.match(["redis:7"], opts)).toMatchObject({ kind: "none" });
  });

  it("add, modify, delete flow into the index", async () => {
    api.put("imagecaches", imc("redis", ["redis:7"]), G);
    await waitFor(async () => sources.imageCaches!.match(["redis:7"], opts).kind === "matched", 5000, "add");
    api.put("imagecaches", imc("redis", ["redis:7.2"]), G);
    await waitFor(async () => sources.imageCaches!.match(["redis:7"], opts).kind === "none", 5000, "modify");
    api.remove("imagecaches", "redis", undefined, G);
    await waitFor(async () => sources.imageCaches!.get("redis") === undefined, 5000, "delete");
  });

  it("a dropped watch resumes from its resourceVersion; a 410 Gone relists", async () => {
    api.dropWatches();
    api.put("imagecaches", imc("after-drop", ["alpine:3.20"]), G);
    await waitFor(async () => sources.imageCaches!.get("after-drop") !== undefined, 5000, "event after a dropped watch");
    // Compaction, then a change while the watch is down: the resume gets 410 and the informer relists.
    api.compact();
    api.dropWatches();
    api.remove("imagecaches", "after-drop", undefined, G);
    api.put("imagecaches", imc("after-410", ["alpine:3.21"]), G);
    await waitFor(async () => sources.imageCaches!.get("after-410") !== undefined && sources.imageCaches!.get("after-drop") === undefined, 8000, "relist after 410");
    expect(api.goneCount).toBeGreaterThan(0);
  });

  it("the API going away: cached data keeps serving, and the informers reconnect", async () => {
    expect(sources.degraded()).toEqual([]);
    await api.stop();
    expect(sources.imageCaches!.match(["nginx:1.25"], opts)).toMatchObject({ kind: "matched" });
    expect(sources.namespaces.labels("team-a")).toEqual({ "apparate.io/inject": "enabled" });
    // Readiness says so: still ready (synced), and degraded while the watches are down.
    await waitFor(async () => sources.degraded().length > 0, 10_000, "degraded while the API is away");
    expect(sources.notReady()).toEqual([]);
    await api.start();
    api.put("imagecaches", imc("after-outage", ["alpine:3.22"]), G);
    await waitFor(async () => sources.imageCaches!.get("after-outage") !== undefined, 15_000, "reconnect after outage");
    await waitFor(async () => sources.degraded().length === 0, 15_000, "no longer degraded");
  }, 30_000);

  it("emits ImageCacheUsed / ImageCacheMissed once per pod, after creation", async () => {
    api.put("pods", { metadata: { name: "web-abc12", namespace: "team-a", labels: { "apparate.io/image-cache": "used" },
      annotations: { "eks.tke.cloud.tencent.com/use-image-cache": "imc-web", "apparate.io/image-cache-match": JSON.stringify({ cache: "web", images: 2, sizeGiB: 20 }) } }, spec: { containers: [] } });
    api.put("pods", { metadata: { name: "db-xyz89", namespace: "team-a", labels: { "apparate.io/image-cache": "missed" } }, spec: { containers: [] } });
    api.put("pods", { metadata: { name: "plain", namespace: "team-a" }, spec: { containers: [] } });
    await waitFor(async () => api.list("events").length >= 2, 5000, "events");
    const evs = api.list("events");
    expect(evs.map((e) => [e.involvedObject.name, e.reason, e.type]).sort()).toEqual([
      ["db-xyz89", "ImageCacheMissed", "Warning"], ["web-abc12", "ImageCacheUsed", "Normal"],
    ]);
    expect(evs.find((e) => e.reason === "ImageCacheUsed")!.message).toContain("imc-web");
    // An update to the pod does not emit again.
    api.put("pods", { ...api.get("pods", "web-abc12", "team-a")!, status: { phase: "Running" } });
    await new Promise((r) => setTimeout(r, 300));
    expect(api.list("events")).toHaveLength(2);
    expect(logs.join("")).not.toContain(PASSWORD);
  });
});
