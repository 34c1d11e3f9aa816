// kube-apiserver's own mutating webhook admission plugin (k8s.io/apiserver 0.36, built from
// Debian's packaged sources into .tmp/bin/admission-driver by
// test/support/build-apiserver-driver.sh) admits a corpus of 300+ pods shaped like popular
// charts' workloads through the MutatingWebhookConfiguration our chart renders, calling the
// real apparate webhook over TLS, with a real registry behind it. Then the API server's
// validation rules and the scheduler's node-affinity code judge what came out, and
// `apparate explain` must agree with the webhook on every pod.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { spawnSync } from "node:child_process";
import { existsSync, mkdtempSync, writeFileSync } from "node:fs";
import { createServer, type Server, type Socket } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Writable } from "node:stream";
import { parseAllDocuments, parse as parseYaml } from "yaml";
import { pushImage, registryAvailable, startRegistry, type RunningRegistry } from "../support/registry.js";
import { freePort } from "../support/ports.js";
import { explain } from "../../src/cli/explain.js";
import type { PodLike } from "../../src/mutate/pod.js";
import { buildCorpus, loadShapes, NAMESPACES, LISTED, NODES, RELEASE_NS, randomCases, variantsToPush, type CorpusCase } from "../apiserver/corpus.js";
import { driverAvailable, startDriver, type AdmissionDriver, type DriverAnswer } from "../apiserver/driver.js";
import { startServiceWebhook, type ServiceWebhook } from "../apiserver/webhook.js";

const HELM = ".tmp/bin/helm";
const helmAvailable = existsSync(HELM);

type Obj = { apiVersion: string; kind: string; metadata: { name: string; namespace?: string }; [k: string]: any };

function renderChart(reg: string, extra: string[] = []): Obj[] {
  const r = spawnSync(HELM, ["template", "rel", "charts/apparate", "-n", RELEASE_NS, "--kube-version", "1.31.0",
    "--set-json", `namespaces=${JSON.stringify(LISTED)}`,
    "--set-json", `acceleration.registries=${JSON.stringify([reg])}`,
    "--set-json", `registry.plainHttp=${JSON.stringify([reg])}`,
    "--set", "acceleration.ephemeralContainers=true", ...extra], { encoding: "utf8" });
  if (r.status !== 0) throw new Error(`helm template: ${r.stderr}`);
  return parseAllDocuments(r.stdout).map((d) => d.toJS()).filter(Boolean) as Obj[];
}

/** The chart's webhook configuration(s), with the CA the serving certificate chains to (what the
 *  webhook's self-managed TLS, or cert-manager's cainjector, writes into caBundle in a cluster). */
function webhookConfigurations(objs: Obj[], caPem: string): Obj[] {
  const out = objs.filter((o) => o.kind === "MutatingWebhookConfiguration").map((o) => structuredClone(o));
  for (const c of out) for (const w of c.webhooks) w.clientConfig.caBundle = Buffer.from(caPem).toString("base64");
  return out;
}

function serviceOf(objs: Obj[]): { key: string; serverName: string } {
  const svc = objs.find((o) => o.kind === "MutatingWebhookConfiguration")!.webhooks[0].clientConfig.service;
  return { key: `${svc.namespace}/${svc.name}:${svc.port ?? 443}`, serverName: `${svc.name}.${svc.namespace}.svc` };
}

function chartConfig(objs: Obj[]): Record<string, unknown> {
  const cm = objs.find((o) => o.kind === "ConfigMap" && o.data?.["config.yaml"])!;
  return parseYaml(cm.data["config.yaml"]) as Record<string, unknown>;
}

const nsLabels = (name: string) => NAMESPACES.find((n) => n.name === name)?.labels;
const images = (p: PodLike | undefined) => [...(p?.spec?.initContainers ?? []), ...(p?.spec?.containers ?? []), ...((p?.spec as any)?.ephemeralContainers ?? [])].map((c: any) => c.image as string);

/** Where two JSON values first differ, for a readable failure. */
function firstDifference(a: unknown, b: unknown, path = ""): string {
  if (JSON.stringify(a) === JSON.stringify(b)) return "";
  if (a && b && typeof a === "object" && typeof b === "object") {
    for (const k of new Set([...Object.keys(a), ...Object.keys(b)])) {
      const d = firstDifference((a as any)[k], (b as any)[k], `${path}/${k}`);
      if (d) return d;
    }
  }
  return `${path}: ${JSON.stringify(a)?.slice(0, 200)} -> ${JSON.stringify(b)?.slice(0, 200)}`;
}

describe.skipIf(!registryAvailable || !driverAvailable || !helmAvailable)("kube-apiserver's mutating admission plugin on the chart's webhook configuration, over a 400-pod corpus", () => {
  let reg: RunningRegistry;
  let hook: ServiceWebhook;
  let service: { key: string; serverName: string };
  const tmp = mkdtempSync(join(tmpdir(), "apparate-apiserver-"));

  beforeAll(async () => {
    reg = await startRegistry();
    for (const v of variantsToPush(loadShapes())) await pushImage(reg.url, v.repo, `${v.tag}-apparate`, "oci-manifest");
    const objs = renderChart(reg.host);
    service = serviceOf(objs);
    hook = await startServiceWebhook(chartConfig(objs), service.serverName, { labels: nsLabels });
  }, 120_000);

  afterAll(async () => {
    await hook?.stop();
    await reg?.stop();
  });

  // The chart's default placement (a required nodeSelector) and the preferred one (a
  // weighted preferred node-affinity term): each with its own webhook, configured from the
  // same rendering as the webhook configuration.
  // A third run: required placement while no labelled node is Ready (every node agent
  // refused, say): the webhook's node watch counts 0, so it swaps nothing and pins nothing,
  // and the scheduler's nodes are those without the label.
  describe.each([
    { name: "required", placement: "required", labelledReady: true },
    { name: "preferred", placement: "preferred", labelledReady: true },
    { name: "required, no Ready labelled node", placement: "required", labelledReady: false },
  ] as const)("placement $name", ({ placement, labelledReady }) => {
    let modeHook: ServiceWebhook;
    let driver: AdmissionDriver;
    let objs: Obj[];
    let corpus: CorpusCase[];
    let nodes: typeof NODES;
    const results = new Map<string, DriverAnswer>();

    beforeAll(async () => {
      objs = renderChart(reg.host, ["--set", `acceleration.placement.mode=${placement}`]);
      // The webhook's watch of labelled nodes (required placement) sees the Ready ones of NODES.
    const labelled = NODES.filter((n) => n.metadata.labels["cloud.tencent.com/apparate"] === "true");
    nodes = labelledReady ? NODES : NODES.filter((n) => !labelled.includes(n));
    modeHook = await startServiceWebhook(chartConfig(objs), service.serverName, { labels: nsLabels }, { ready: () => (labelledReady ? labelled.length : 0) });
      driver = startDriver({
        webhookConfigurations: webhookConfigurations(objs, modeHook.caBundle),
        namespaces: NAMESPACES, nodes, services: { [service.key]: modeHook.url }, sidecarInjector: true,
      });
      const shapes = loadShapes();
      corpus = [...buildCorpus(shapes, reg.host), ...randomCases(shapes, reg.host, 100)];
      for (const c of corpus) {
        results.set(c.id, await driver.admit({ id: c.id, operation: c.operation, subresource: c.subresource, namespace: c.namespace, pod: c.pod, ...(c.oldPod ? { oldPod: c.oldPod } : {}) }));
      }
    }, 240_000);

    afterAll(async () => {
      await driver?.stop();
      await modeHook?.stop();
    });
    it("the corpus: at least 400 pods, 12 chart shapes in 306 variants and 100 random ones, every answer from the plugin (no driver error)", () => {
      expect(corpus.length).toBeGreaterThanOrEqual(400);
      expect(new Set(corpus.filter((c) => c.shape !== "random").map((c) => c.shape)).size).toBe(12);
      const bad = corpus.filter((c) => results.get(c.id)?.id !== c.id).map((c) => c.id);
      expect(bad).toEqual([]);
    });

    it("the dispatcher calls the webhook exactly where the chart's rules and selectors say; opted-out namespaces, opted-out pods and pod UPDATEs are never sent (negative controls)", () => {
      const wrong = corpus.flatMap((c) => {
        const calls = results.get(c.id)!.webhookCalls.filter((x) => x.configuration === "rel-apparate");
        return (calls.length > 0) === c.expectCalled ? [] : [`${c.id}: expected ${c.expectCalled ? "a call" : "no call"}, got ${calls.length}`];
      });
      expect(wrong).toEqual([]);
      const called = corpus.filter((c) => c.expectCalled).length;
      const notCalled = corpus.length - called;
      expect(called).toBeGreaterThan(150);
      expect(notCalled).toBeGreaterThan(60);
      // Every call the plugin recorded reached the webhook (none failed open), and nothing else did.
      const recorded = [...results.values()].flatMap((a) => a.webhookCalls.filter((x) => x.configuration === "rel-apparate"));
      expect(recorded.filter((x) => x.failedOpen).map((x) => x.key)).toEqual([]);
      expect(modeHook.requests).toBe(recorded.length);
    });

    it("every pod is admitted, and what the webhook made of it passes the API server's validation rules (annotations <= 256 KiB, label and nodeSelector syntax, affinity operators, ephemeral containers unchanged)", () => {
      const rejected = corpus.flatMap((c) => {
        const a = results.get(c.id)!;
        if (!a.allowed) return [`${c.id}: not admitted: ${a.error}`];
        return a.validationErrors.map((e) => `${c.id}: ${e}`);
      });
      expect(rejected).toEqual([]);
      // The patches were applied by the plugin: accelerated images on the pods that have variants.
      const swapped = corpus.filter((c) => c.expectCalled && images(results.get(c.id)!.patchedPod).some((i) => i.endsWith("-apparate")));
      if (labelledReady) expect(swapped.length).toBeGreaterThan(100);
      // A debug container joins a pod already on its node, where an eStargz image runs
      // with or without the snapshotter: only new pods wait for a labelled node.
      else expect(swapped.filter((c) => c.operation === "CREATE").map((c) => c.id)).toEqual([]);
    });

    it("no pod becomes unschedulable: each fits, by the scheduler's node-affinity code, some node it fitted before the webhook (every corpus pod fits one)", () => {
      const unschedulable = corpus.flatMap((c) => {
        const a = results.get(c.id)!;
        // A random pod no node fits is Pending with or without apparate; a chart shape must fit.
        if (a.nodesBefore.length === 0) return c.shape === "random" || !labelledReady ? [] : [`${c.id}: corpus pod fits no node`];
        return a.nodesAfter.length === 0 ? [`${c.id}: fitted ${a.nodesBefore.join(",")}, fits no node after admission (nodeSelector ${JSON.stringify(a.patchedPod?.spec?.nodeSelector)})`] : [];
      });
      expect(unschedulable).toEqual([]);
    });

    // explain has no view of the cluster's nodes: with no Ready labelled node it still shows
    // the swap that required placement would make once one is Ready.
    if (labelledReady) it("`apparate explain` answers the patch the webhook answered, on every CREATE in the corpus (no patch where the webhook was not called)", async () => {
      // explain has no namespace labels to read: its configuration lists the labelled namespace.
      const cfg = chartConfig(objs);
      cfg.namespaces = [...LISTED, ...NAMESPACES.filter((n) => n.labels["apparate.io/inject"] === "enabled" && n.name !== RELEASE_NS).map((n) => n.name)];
      const cfgFile = join(tmp, "explain-config.yaml");
      writeFileSync(cfgFile, JSON.stringify(cfg));
      const creates = corpus.filter((c) => c.operation === "CREATE");
      const podsFile = join(tmp, "pods.json");
      writeFileSync(podsFile, creates.map((c) => JSON.stringify(c.pod)).join("\n---\n"));
      let text = "";
      const out = new Writable({ write(chunk, _e, cb) { text += chunk.toString(); cb(); } });
      await explain(["-f", podsFile, "--config", cfgFile, "--json"], out);
      const explained = JSON.parse(text).pods as Array<{ namespace: string; patch?: unknown[]; error?: string }>;
      expect(explained.length).toBe(creates.length);
      const differ = creates.flatMap((c, i) => {
        // apparate's own pods are kept away by the chart's objectSelector alone; the planner
        // (and so explain) does not look at app.kubernetes.io/part-of.
        const labels = c.pod.metadata?.labels ?? {};
      if (labels["app.kubernetes.io/part-of"] === "apparate") return [];
        const first = results.get(c.id)!.webhookCalls.find((x) => x.configuration === "rel-apparate");
        const fromWebhook = first?.patch ?? [];
        const fromExplain = explained[i]!.patch ?? [];
        return JSON.stringify(fromExplain) === JSON.stringify(fromWebhook) ? [] : [`${c.id}: explain ${JSON.stringify(fromExplain).slice(0, 300)} vs webhook ${JSON.stringify(fromWebhook).slice(0, 300)}`];
      });
      expect(differ).toEqual([]);
    });

    it("reinvocation: after the sidecar injector changes a pod the plugin calls apparate again (IfNeeded), and readmitting any admitted pod changes nothing", async () => {
      const injected = corpus.filter((c) => c.namespace === "istio-app" && c.expectCalled && !images(c.pod).some((i) => i.includes("istio/proxyv2")));
      expect(injected.length).toBeGreaterThan(5);
      for (const c of injected) {
        const a = results.get(c.id)!;
        expect(a.webhookCalls.map((x) => x.key.replace(/_index_\d+/, "")), c.id).toEqual(["round_0", "round_0", "round_1"]);
        expect(a.patchedPod!.spec!.containers!.some((x) => x.name === "istio-proxy"), c.id).toBe(true);
      }
      const changed: string[] = [];
      for (const c of corpus.filter((x) => x.expectCalled && x.operation === "CREATE")) {
        const first = results.get(c.id)!;
        const again = await driver.admit({ id: `${c.id}/again`, namespace: c.namespace, pod: first.patchedPod! });
        const ours = again.webhookCalls.filter((x) => x.configuration === "rel-apparate");
        if (!again.allowed || ours.length === 0 || ours.some((x) => x.mutated) || JSON.stringify(again.patchedPod) !== JSON.stringify(first.patchedPod)) {
          changed.push(`${c.id}: ${again.error ?? ""} calls ${JSON.stringify(ours)} ${firstDifference(first.patchedPod, again.patchedPod)}`);
        }
      }
      expect(changed).toEqual([]);
    });

  });

  describe("failure policy and timeouts, against the real plugin", () => {
    const pod = (): PodLike => buildCorpus(loadShapes(), reg.host).find((c) => c.id === "cert-manager-controller/default/variant")!.pod;
    let silent: Server;
    let silentPort = 0;
    const sockets: Socket[] = [];
    beforeAll(async () => {
      silent = createServer((s) => { sockets.push(s); });
      await new Promise<void>((r) => silent.listen(0, "127.0.0.1", () => r()));
      silentPort = (silent.address() as { port: number }).port;
    });
    afterAll(async () => { for (const s of sockets) s.destroy(); await new Promise((r) => silent?.close(r)); });

    async function admitWith(extra: string[], url: string): Promise<DriverAnswer> {
      const rendered = renderChart(reg.host, extra);
      const d = startDriver({ webhookConfigurations: webhookConfigurations(rendered, hook.caBundle), namespaces: NAMESPACES, nodes: NODES, services: { [service.key]: url } });
      try { return await d.admit({ id: "one", namespace: "default", pod: pod() }); } finally { await d.stop(); }
    }

    it("a live webhook swaps the image (control for the rows below)", async () => {
      const a = await admitWith([], hook.url);
      expect(a.allowed).toBe(true);
      expect(images(a.patchedPod)[0]).toMatch(/-apparate$/);
    });

    it.each([
      ["Ignore", true],
      ["Fail", false],
    ])("a refused connection with failurePolicy %s: admitted unchanged = %s", async (policy, admitted) => {
      const dead = await freePort();
      const a = await admitWith(["--set", `webhook.failurePolicy=${policy}`], `https://127.0.0.1:${dead}`);
      expect(a.allowed).toBe(admitted);
      if (admitted) {
        expect(images(a.patchedPod)).toEqual(images(pod()));
        expect(a.webhookCalls.every((x) => x.failedOpen)).toBe(true);
      } else {
        expect(a.error).toMatch(/failed calling webhook/);
      }
    });

    it.each([
      ["Ignore", true],
      ["Fail", false],
    ])("a webhook that never answers costs timeoutSeconds (1 s), then failurePolicy %s: admitted = %s", async (policy, admitted) => {
      const a = await admitWith(["--set", `webhook.failurePolicy=${policy}`, "--set", "webhook.timeoutSeconds=1", "--set", "admission.deadlineMs=500"], `https://127.0.0.1:${silentPort}`);
      expect(a.allowed).toBe(admitted);
      expect(a.elapsedMs).toBeGreaterThanOrEqual(900);
      expect(a.elapsedMs).toBeLessThan(4000);
      if (!admitted) expect(a.error).toMatch(/timeout|deadline/i);
    });

    it("the chart's matchConditions (CEL) are evaluated by the plugin: a Job's pod is not sent, a Deployment's is", async () => {
      const rendered = renderChart(reg.host, ["--set-json", `webhook.matchConditions=${JSON.stringify([{ name: "not-a-job", expression: "!has(object.metadata.labels) || !('batch.kubernetes.io/job-name' in object.metadata.labels)" }])}`]);
      const d = startDriver({ webhookConfigurations: webhookConfigurations(rendered, hook.caBundle), namespaces: NAMESPACES, nodes: NODES, services: { [service.key]: hook.url } });
      try {
        const cases = buildCorpus(loadShapes(), reg.host);
        const job = cases.find((c) => c.id === "ingress-nginx-admission-create/default/variant")!;
        const deploy = cases.find((c) => c.id === "cert-manager-controller/default/variant")!;
        const j = await d.admit({ id: "job", namespace: "default", pod: job.pod });
        const p = await d.admit({ id: "deploy", namespace: "default", pod: deploy.pod });
        expect(j.webhookCalls).toEqual([]);
        expect(images(j.patchedPod)).toEqual(images(job.pod));
        expect(p.webhookCalls.length).toBe(1);
        expect(p.webhookCalls[0]!.mutated).toBe(true);
      } finally { await d.stop(); }
    });
  });
});
