import { readFileSync } from "node:fs";
import { Registry } from "prom-client";
import { describe, expect, it } from "vitest";
import { compileConfig } from "../../src/config/config.js";
import { parseGoDuration, parseKubeletMessage, sizeBucket } from "../../src/observer/kubelet-messages.js";
import { accelerationOf, imageStatus, phasesOf, readyAt } from "../../src/observer/pod-start.js";
import { StartLatencyMetrics, StartRecorder, type PodStart } from "../../src/observer/recorder.js";
import { startedPod } from "../support/started-pods.js";

interface Case { source: string; reason: string; message: string; expect: Record<string, unknown> | null }
const CASES = JSON.parse(readFileSync(new URL("../fixtures/kubelet-events/messages.json", import.meta.url), "utf8")) as Case[];

describe("kubelet image messages (every form kubelet has written; sources in test/fixtures/kubelet-events/SOURCES.md)", () => {
  it.each(CASES.map((c) => [c.source, c.message, c] as const))("%s: %s", (_s, _m, c) => {
    const got = parseKubeletMessage(c.reason, c.message);
    if (c.expect === null) { expect(got).toBeUndefined(); return; }
    expect(got).toBeDefined();
    const { pullSeconds, waitingSeconds, ...rest } = c.expect as { pullSeconds?: number; waitingSeconds?: number };
    expect(got).toMatchObject(rest);
    if (pullSeconds !== undefined) expect((got as { pullSeconds: number }).pullSeconds).toBeCloseTo(pullSeconds, 9);
    if (waitingSeconds !== undefined) expect((got as { waitingSeconds: number }).waitingSeconds).toBeCloseTo(waitingSeconds, 9);
    else expect(got).not.toHaveProperty("waitingSeconds");
  });

  it("a Pulled message is only read under reason Pulled (same text, other reason: nothing)", () => {
    const msg = CASES.find((c) => c.source === "issue-17")!.message;
    expect(parseKubeletMessage("Pulled", msg)?.kind).toBe("pulled");
    expect(parseKubeletMessage("Pulling", msg)).toBeUndefined();
    expect(parseKubeletMessage(undefined, msg)).toBeUndefined();
  });

  it.each([
    ["0s", 0], ["1.5µs", 1.5e-6], ["1.5μs", 1.5e-6], ["250ns", 2.5e-7], ["796ms", 0.796], ["1m46.431s", 106.431], ["1h0m0s", 3600], ["2h3m", 7380],
  ])("Go duration %s is %f s", (text, s) => expect(parseGoDuration(text)).toBeCloseTo(s, 12));

  it.each(["", "1.5", "ms", "1.5 s", "1d", "abc", "1s2"])("not a Go duration: %j", (text) => expect(parseGoDuration(text)).toBeUndefined());

  it("size buckets have edges at 10 MB, 100 MB, 500 MB, 1 GB, 5 GB; no size is 'unknown'", () => {
    expect([undefined, 0, 9_999_999, 10_000_000, 99_999_999, 100_000_000, 499_999_999, 500_000_000, 999_999_999, 1_000_000_000, 4_999_999_999, 5_000_000_000, -1, Number.NaN].map(sizeBucket))
      .toEqual(["unknown", "0-10MB", "0-10MB", "10-100MB", "10-100MB", "100-500MB", "100-500MB", "500MB-1GB", "500MB-1GB", "1-5GB", "1-5GB", "5GB+", "unknown", "unknown"]);
  });
});

describe("a started pod's record", () => {
  it("phases are seconds from creation: scheduled, sandbox, first app container (its earlier, restarted run; not the init container), containers ready, ready", () => {
    const pod = startedPod();
    expect(phasesOf(pod)).toEqual({ scheduled: 1, sandbox_ready: 3, first_container_started: 9, containers_ready: 20, ready: 20 });
    expect(readyAt(pod)).toBe(Date.parse("2026-01-10T10:00:20Z"));
  });

  it("an older kubelet without PodReadyToStartContainers gives every phase but that one; a pod not Ready has no ready time", () => {
    const pod = startedPod({ sandbox: false });
    expect(phasesOf(pod)).not.toHaveProperty("sandbox_ready");
    expect(phasesOf(pod).ready).toBe(20);
    pod.status!.conditions = pod.status!.conditions!.map((c) => (c.type === "Ready" ? { ...c, status: "False" } : c));
    expect(readyAt(pod)).toBeUndefined();
    expect(phasesOf(pod)).not.toHaveProperty("ready");
  });

  it.each([
    [{ "apparate.io/actions": "accelerated=2,placement=preferred" }, {}, "estargz"],
    [{ "apparate.io/actions": "accelerated+rewritten=1" }, {}, "estargz"],
    [{ "apparate.io/actions": "accelerated=1" }, { "apparate.io/image-cache": "used" }, "estargz"],
    [{ "apparate.io/actions": "rewritten=1" }, { "apparate.io/image-cache": "used" }, "image-cache"],
    [{}, { "apparate.io/image-cache": "manual" }, "image-cache"],
    [{}, { "apparate.io/image-cache": "missed" }, "none"],
    [{ "apparate.io/actions": "rewritten=3" }, {}, "mirror"],
    [{ "apparate.io/actions": "" }, {}, "none"],
    [{}, {}, "none"],
  ])("annotations %j, labels %j: mode %s", (annotations, labels, mode) => {
    expect(accelerationOf(startedPod({ annotations, labels }))).toBe(mode);
  });

  const config = compileConfig({
    acceleration: { registries: ["registry.example.com", "quay.io"], rules: [{ registry: "registry.example.com", namespace: "team" }] },
    rewrite: { registries: { "quay.io": "mirror.example.com/quay" } },
  });
  it.each([
    ["registry.example.com/team/app:1-apparate", true, { status: "estargz" }],
    ["registry.example.com/team/app:1-apparate", false, { status: "estargz", advice: "node not labelled" }],
    ["registry.example.com/team/app:1", true, { status: "not accelerated", advice: "no -apparate variant" }],
    ["registry.example.com/other/app:1", true, { status: "not accelerated", advice: "no rule matches" }],
    ["docker.io/library/nginx:1.27", true, { status: "not accelerated", advice: "no rule matches" }],
    ["not a reference!", true, { status: "not accelerated", advice: "not an image reference" }],
  ])("image %s on a node labelled=%s: %j", (image, node, want) => {
    expect(imageStatus(startedPod(), image, node, config)).toEqual(want);
  });

  it("a rewritten image is a mirror pull, judged by the name the user wrote", () => {
    const pod = startedPod({ annotations: { "apparate.io/original-images": JSON.stringify({ "containers/c0": "quay.io/team/tool:2" }) } });
    expect(imageStatus(pod, "mirror.example.com/quay/team/tool:2", true, config)).toEqual({ status: "mirror", advice: "no rule matches" });
    const accelerable = compileConfig({ acceleration: { registries: ["quay.io"] }, rewrite: { registries: { "quay.io": "mirror.example.com/quay" } } });
    expect(imageStatus(pod, "mirror.example.com/quay/team/tool:2", true, accelerable)).toEqual({ status: "mirror", advice: "no -apparate variant" });
  });
});

describe("the recorder", () => {
  const start = (over: Partial<PodStart> = {}): PodStart => ({
    uid: "u", namespace: "default", acceleration: "estargz", nodeAccelerated: true, readyAt: 0,
    phases: { scheduled: 1, first_container_started: 4, ready: 6 },
    pulls: [{ image: "a:1-apparate", result: "pulled", seconds: 0.8, sizeBytes: 50_000_000, status: "estargz" }],
    ...over,
  });

  it("observes each phase under its mode and node label, pulls by size bucket, and 'already present' apart", async () => {
    const registry = new Registry();
    const rec = new StartRecorder(new StartLatencyMetrics(registry));
    rec.record(start());
    rec.record(start({ acceleration: "none", nodeAccelerated: false, phases: { ready: 30 }, pulls: [{ image: "b:1", result: "present", status: "not accelerated" }] }));
    const text = await registry.metrics();
    expect(text).toContain('apparate_pod_start_seconds_count{phase="ready",acceleration="estargz",node_accelerated="true",pulled="true"} 1');
    expect(text).toContain('apparate_pod_start_seconds_sum{phase="first_container_started",acceleration="estargz",node_accelerated="true",pulled="true"} 4');
    expect(text).toContain('apparate_pod_start_seconds_bucket{le="5",phase="ready",acceleration="estargz",node_accelerated="true",pulled="true"} 0');
    expect(text).toContain('apparate_pod_start_seconds_bucket{le="8",phase="ready",acceleration="estargz",node_accelerated="true",pulled="true"} 1');
    expect(text).not.toMatch(/phase="sandbox_ready"/);
    expect(text).toContain('apparate_pod_start_seconds_count{phase="ready",acceleration="none",node_accelerated="false",pulled="false"} 1');
    expect(text).toContain('apparate_image_pull_seconds_sum{acceleration="estargz",size_bucket="10-100MB"} 0.8');
    expect(text).toContain('apparate_image_pulls_total{acceleration="none",result="present"} 1');
    expect(text).toContain('apparate_image_already_present_total{acceleration="none"} 1');
    expect(text).not.toMatch(/apparate_image_pull_seconds_count\{acceleration="none"/);
    // Never an image or pod name in a series.
    expect(text).not.toMatch(/a:1-apparate|b:1|"u"/);
  });

  it("keeps a bounded window of the last starts, oldest dropped first", () => {
    const rec = new StartRecorder(new StartLatencyMetrics(new Registry()), 3);
    for (let i = 0; i < 5; i++) rec.record(start({ uid: `u${i}` }));
    expect(rec.window().map((s) => s.uid)).toEqual(["u2", "u3", "u4"]);
  });
});
