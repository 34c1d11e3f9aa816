// The chart's dashboard and alerts, tested with the real thing: helm renders them,
// promtool checks and unit-tests the rules, and Debian's Prometheus scrapes a webhook
// (real HTTPS admission server, real registry, hung and failing registries, the
// observer on the Kubernetes API stand-in) fed a replayed workload. Every dashboard
// query must return data, and every alert expression must hold when its trouble is
// present (and the webhook-down one only once the webhook is gone).
import { type ChildProcess, spawn, spawnSync } from "node:child_process";
import { copyFileSync, existsSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Writable } from "node:stream";
import type { FastifyInstance } from "fastify";
import { parseAllDocuments, stringify } from "yaml";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { HandlerDeps } from "../../src/admission/handler.js";
import { buildOpsServer } from "../../src/admission/server.js";
import { compileConfig } from "../../src/config/config.js";
import { imageCacheSpecOf } from "../../src/imagecache/object.js";
import { ImageCacheIndex } from "../../src/imagecache/policy.js";
import { createLogger } from "../../src/observability/logger.js";
import { startObserverService, type ObserverService } from "../../src/observer/service.js";
import { answer, hang, startFaultServer, type FaultServer } from "../support/faults.js";
import { KubeApiStandIn } from "../support/kube-api-standin.js";
import { freePort, waitFor } from "../support/ports.js";
import { pushImage, registryAvailable, startRegistry, type RunningRegistry } from "../support/registry.js";
import { startedPod } from "../support/started-pods.js";
import { review, startWebhook, type TestWebhook } from "../support/webhook.js";

const HELM = ".tmp/bin/helm";
const PROMETHEUS = "/usr/bin/prometheus";
const PROMTOOL = "/usr/bin/promtool";
const available = existsSync(HELM) && existsSync(PROMETHEUS) && existsSync(PROMTOOL) && registryAvailable;
const JOB = "rel-apparate";
const LABEL = "cloud.tencent.com/apparate";

type Obj = { kind?: string; metadata?: { name?: string; labels?: Record<string, string> }; spec?: unknown; data?: Record<string, string> };
interface Panel { title: string; type: string; targets?: { expr: string }[] }
interface Rule { alert: string; expr: string }

function render(...extra: string[]): Obj[] {
  const r = spawnSync(HELM, ["template", "rel", "charts/apparate", "-n", "apparate-system", "--set", "grafana.dashboard.enabled=true", "--set", "prometheusRule.enabled=true", ...extra], { encoding: "utf8" });
  if (r.status !== 0) throw new Error(`helm template: ${r.stderr}`);
  return parseAllDocuments(r.stdout).map((d) => d.toJSON() as Obj).filter(Boolean);
}

describe.skipIf(!available)("dashboard and alerts against a real Prometheus", () => {
  const dir = mkdtempSync(join(tmpdir(), "apparate-prom-"));
  let rules: Rule[] = [];
  let liveRules: Rule[] = [];
  let panels: Panel[] = [];
  let prom: ChildProcess | undefined;
  let promUrl = "";
  let reg: RunningRegistry;
  let hung: FaultServer;
  let broken: FaultServer;
  let hook: TestWebhook;
  let ops: FastifyInstance;
  let svc: ObserverService;
  const api = new KubeApiStandIn();
  const promLog: string[] = [];

  beforeAll(async () => {
    const docs = render();
    const rule = docs.find((d) => d.kind === "PrometheusRule")!;
    writeFileSync(join(dir, "rules.yml"), stringify(rule.spec));
    rules = (rule.spec as { groups: { rules: Rule[] }[] }).groups.flatMap((g) => g.rules);
    // The live run lasts seconds, so the per-second threshold (0.1/s over 10 minutes by
    // default, tested by promtool above) is set to 0 there: the expression still has to hold.
    const live = render("--set", "prometheusRule.deadlineExceededPerSecond=0").find((d) => d.kind === "PrometheusRule")!;
    writeFileSync(join(dir, "live-rules.yml"), stringify(live.spec));
    liveRules = (live.spec as { groups: { rules: Rule[] }[] }).groups.flatMap((g) => g.rules);
    const cm = docs.find((d) => d.kind === "ConfigMap" && d.metadata?.name === "rel-apparate-dashboard")!;
    expect(cm.metadata!.labels!.grafana_dashboard).toBe("1");
    panels = (JSON.parse(cm.data!["apparate.json"]!) as { panels: Panel[] }).panels.filter((p) => p.type !== "row");

    // The webhook: a real registry with one accelerated image, a hung one (deadline), a failing one (breaker).
    reg = await startRegistry();
    await pushImage(reg.url, "team/app", "1-apparate");
    hung = await startFaultServer(hang);
    broken = await startFaultServer(answer(500));
    const caches = new ImageCacheIndex();
    caches.upsert(imageCacheSpecOf({ metadata: { name: "web", creationTimestamp: new Date().toISOString() }, spec: { images: [`${reg.host}/team/web:1`], imageCacheSize: 20 }, status: { imcId: "imc-web", imcPhase: "Ready" } } as never)!);
    hook = await startWebhook({
      acceleration: { registries: [reg.host, hung.host, broken.host] },
      registry: { plainHttp: [reg.host, hung.host, broken.host], requestTimeoutMs: 2000, breakerFailures: 2, breakerCooldownSeconds: 600, unknownBackoffSeconds: 0, negativeTtlSeconds: 0 },
      admission: { deadlineMs: 300 },
      imageCache: { enabled: true },
    }, { imageCaches: caches });

    // The observer, on the API stand-in, feeding the same metrics registry.
    await api.start();
    api.put("namespaces", { metadata: { name: "default" } });
    for (const n of ["n1", "n2", "n3"]) api.put("nodes", { metadata: { name: n, labels: { [LABEL]: "true" } } });
    const logger = createLogger({ destination: new Writable({ write(_c, _e, cb) { cb(); } }) });
    svc = startObserverService(api.kubeConfig(), compileConfig({ observer: { graceSeconds: 1, leaseDurationSeconds: 5 } }), logger, hook.metrics, () => ({}));
    ops = await buildOpsServer({ metrics: hook.metrics } as unknown as HandlerDeps, { ready: () => ({ ready: true, reasons: [] }) }, svc.routes);
    await ops.listen({ port: 0, host: "127.0.0.1" });
    const target = `127.0.0.1:${(ops.server.address() as AddressInfo).port}`;

    const promPort = await freePort();
    promUrl = `http://127.0.0.1:${promPort}`;
    writeFileSync(join(dir, "prometheus.yml"), stringify({
      global: { scrape_interval: "1s", evaluation_interval: "1s" },
      rule_files: [join(dir, "live-rules.yml")],
      scrape_configs: [{ job_name: JOB, static_configs: [{ targets: [target] }] }],
    }));
    prom = spawn(PROMETHEUS, [`--config.file=${join(dir, "prometheus.yml")}`, `--storage.tsdb.path=${join(dir, "data")}`, `--web.listen-address=127.0.0.1:${promPort}`, "--web.enable-lifecycle"], { stdio: ["ignore", "pipe", "pipe"] });
    prom.stderr!.on("data", (c: Buffer) => promLog.push(c.toString()));
    await waitFor(async () => (await fetch(`${promUrl}/-/ready`)).ok, 30_000, "Prometheus to be ready");
  }, 120_000);

  afterAll(async () => {
    prom?.kill("SIGTERM");
    await svc?.stop();
    await ops?.close().catch(() => {});
    await Promise.all([hook?.stop(), reg?.stop(), hung?.stop(), broken?.stop(), api.stop()]);
    rmSync(dir, { recursive: true, force: true });
  });

  async function query(expr: string): Promise<{ metric: Record<string, string>; value: [number, string] }[]> {
    const u = new URL("/api/v1/query", promUrl);
    u.searchParams.set("query", expr);
    const body = (await (await fetch(u)).json()) as { status: string; error?: string; data: { result: { metric: Record<string, string>; value: [number, string] }[] } };
    if (body.status !== "success") throw new Error(`${expr}: ${body.error}`);
    return body.data.result;
  }

  /** One wave of the workload: admissions of every kind, and pod starts of every mode. */
  async function wave(n: number) {
    const pod = (name: string, images: string[]) => ({ apiVersion: "v1", kind: "Pod", metadata: { name, namespace: "default" }, spec: { containers: images.map((image, i) => ({ name: `c${i}`, image })) } });
    const posts = [
      hook.post(review(pod(`swap-${n}`, [`${reg.host}/team/app:1`]))),               // accelerated
      hook.post(review(pod(`absent-${n}`, [`${reg.host}/team/other:1`]))),           // no -apparate variant
      hook.post(review(pod(`cached-${n}`, [`${reg.host}/team/web:1`]))),             // image cache match (variant absent)
      hook.post(review(pod(`hung-${n}`, [`${hung.host}/team/app:1`]))),               // deadline exceeded
      hook.post(review(pod(`broken-${n}`, [`${broken.host}/team/app:1`]))),           // failures open the breaker
      hook.post(review(pod(`broken2-${n}`, [`${broken.host}/team/app:2`]))),
      hook.post(review(pod(`skipped-${n}`, ["nginx:1.27"]), { namespace: "kube-system" })),
    ];
    const results = await Promise.all(posts);
    for (const r of results) expect(r.status).toBe(200);
    // Pod starts Ready one second from now (after the Lease's watermark), with kubelet events.
    const t0 = Date.now() - 19_000;
    const replay = (name: string, node: string, annotations: Record<string, string>, labels: Record<string, string>, messages: string[]) => {
      const p = startedPod({ name: `${name}-${n}`, uid: `uid-${name}-${n}`, nodeName: node, t0: new Date(t0).toISOString(), annotations, labels });
      api.put("pods", p as never);
      for (const [i, message] of messages.entries()) {
        api.put("events", {
          metadata: { name: `${name}-${n}.${i}`, namespace: "default" },
          involvedObject: { kind: "Pod", namespace: "default", name: `${name}-${n}`, uid: `uid-${name}-${n}`, fieldPath: `spec.containers{c${i}}` },
          reason: "Pulled", message, type: "Normal", source: { component: "kubelet", host: node },
        });
      }
    };
    replay("lazy", "n1", { "apparate.io/actions": "accelerated=1" }, {}, [`Successfully pulled image "${reg.host}/team/app:1-apparate" in 612ms (700ms including waiting). Image size: 52000000 bytes.`]);
    replay("plain", "n2", {}, {}, [`Successfully pulled image "${reg.host}/team/other:1" in 14.2s (15s including waiting). Image size: 812000000 bytes.`]);
    replay("cached", "n3", {}, { "apparate.io/image-cache": "used" }, [`Container image "${reg.host}/team/web:1" already present on machine`]);
    replay("mirror", "n1", { "apparate.io/actions": "rewritten=1" }, {}, [`Successfully pulled image "mirror.example.com/team/tool:2" in 3.1s`]);
    const before = (await (await fetch(`http://127.0.0.1:${(ops.server.address() as AddressInfo).port}/observer/starts`)).json()) as { starts: unknown[] };
    await waitFor(async () => {
      await svc.observer.tick();
      const now = (await (await fetch(`http://127.0.0.1:${(ops.server.address() as AddressInfo).port}/observer/starts`)).json()) as { starts: unknown[] };
      return now.starts.length >= before.starts.length + 4;
    }, 15_000, `wave ${n} pod starts to be recorded`);
  }

  it("promtool: the rendered rules are valid and the alert unit tests pass (firing on trouble, quiet otherwise)", () => {
    expect(rules.map((r) => r.alert)).toEqual(["ApparateWebhookUnavailable", "ApparateRegistryBreakerOpen", "ApparateRegistryLookupsFailing", "ApparateLookupDeadlineExceeded", "ApparateNodesLostLabel"]);
    const check = spawnSync(PROMTOOL, ["check", "rules", join(dir, "rules.yml")], { encoding: "utf8" });
    expect(check.stdout + check.stderr).toContain("SUCCESS: 5 rules found");
    expect(check.status).toBe(0);
    copyFileSync("test/fixtures/prometheus/alerts.test.yml", join(dir, "alerts.test.yml"));
    const t = spawnSync(PROMTOOL, ["test", "rules", join(dir, "alerts.test.yml")], { encoding: "utf8" });
    expect(t.stdout + t.stderr).toContain("SUCCESS");
    expect(t.status).toBe(0);
    // Negative control: a test expecting the breaker alert on healthy series fails.
    writeFileSync(join(dir, "wrong.test.yml"), stringify({
      rule_files: ["rules.yml"], evaluation_interval: "1m",
      tests: [{ interval: "1m", input_series: [{ series: 'apparate_registry_breaker_open{registry="quay.io"}', values: "0x10" }],
        alert_rule_test: [{ eval_time: "8m", alertname: "ApparateRegistryBreakerOpen", exp_alerts: [{ exp_labels: { severity: "warning", registry: "quay.io" } }] }] }],
    }));
    expect(spawnSync(PROMTOOL, ["test", "rules", join(dir, "wrong.test.yml")], { encoding: "utf8" }).status).not.toBe(0);
  });

  it("every dashboard query returns data from the scraped webhook, and every alert expression holds on its trouble", async () => {
    await waitFor(async () => (await query(`up{job="${JOB}"}`)).some((s) => s.value[1] === "1"), 20_000, "the first scrape");
    await wave(1);
    await new Promise((r) => setTimeout(r, 2500));
    await wave(2);
    // Nodes losing the label: one node's agent reports its snapshotter unhealthy.
    api.put("nodes", { metadata: { name: "n3", labels: {} } });
    await new Promise((r) => setTimeout(r, 3500));

    const empty: string[] = [];
    for (const p of panels) {
      for (const t of p.targets ?? []) {
        const expr = t.expr.replaceAll("$__rate_interval", "1m");
        const result = await query(expr);
        if (!result.some((s) => Number.isFinite(Number(s.value[1])))) empty.push(`${p.title}: ${expr}`);
      }
    }
    expect(empty, `dashboard queries without data:\n${empty.join("\n")}`).toEqual([]);
    expect(panels.flatMap((p) => p.targets ?? []).length).toBeGreaterThanOrEqual(15);

    // The modes are told apart: eStargz starts beat plain ones in the scraped histograms.
    const ready = await query('histogram_quantile(0.5, sum by (le, acceleration) (rate(apparate_pod_start_seconds_bucket{phase="ready"}[1m])))');
    expect(ready.map((s) => s.metric.acceleration).sort()).toEqual(["estargz", "image-cache", "mirror", "none"]);
    const pull = await query("histogram_quantile(0.5, sum by (le, acceleration) (rate(apparate_image_pull_seconds_bucket[1m])))");
    const of = (mode: string) => Number(pull.find((s) => s.metric.acceleration === mode)!.value[1]);
    expect(of("estargz")).toBeLessThan(1);
    expect(of("none")).toBeGreaterThan(10);

    // Alert expressions (their `for` aside) hold on the replayed trouble.
    const holds = async (name: string) => (await query(liveRules.find((r) => r.alert === name)!.expr)).length > 0;
    expect(await holds("ApparateRegistryBreakerOpen")).toBe(true);
    expect(await holds("ApparateRegistryLookupsFailing")).toBe(true);
    expect(await holds("ApparateLookupDeadlineExceeded")).toBe(true);
    expect(await holds("ApparateNodesLostLabel")).toBe(true);
    // The failing and the hung registry open their breakers (a hung request fails at its timeout); the healthy one never.
    const open = (await query(liveRules.find((r) => r.alert === "ApparateRegistryBreakerOpen")!.expr)).map((s) => s.metric.registry);
    expect(open).toContain(broken.host);
    expect(open).not.toContain(reg.host);
    // ... and the running Prometheus has them pending (firing after their `for`).
    await waitFor(async () => {
      const a = (await (await fetch(`${promUrl}/api/v1/alerts`)).json()) as { data: { alerts: { labels: { alertname: string }; state: string }[] } };
      const names = new Set(a.data.alerts.map((x) => x.labels.alertname));
      return ["ApparateRegistryBreakerOpen", "ApparateRegistryLookupsFailing", "ApparateLookupDeadlineExceeded", "ApparateNodesLostLabel"].every((n) => names.has(n));
    }, 10_000, "the alerts to be pending");

    // Negative control, then the webhook goes away: the unavailable alert's expression holds.
    expect(await holds("ApparateWebhookUnavailable")).toBe(false);
    await ops.close();
    await waitFor(async () => holds("ApparateWebhookUnavailable"), 15_000, "the webhook-down expression to hold");
  }, 120_000);
});
