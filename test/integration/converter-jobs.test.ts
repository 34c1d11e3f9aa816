// converter.mode: job end to end on loopback: a real docker-registry notifies the
// converter, which creates one batch/v1 Job per image digest in the API stand-in
// (client-node unmodified); the test's Job controller (test/support/job-controller.ts)
// runs the Job's container args with the real `apparate convert` (dist/cli.js), non-root,
// read-only root, the ConfigMap, the credentials Secret and an emptyDir mounted, under a
// memory cgroup at the Job's limit, and writes the Job's status as the Job controller
// does; the converter records the outcome as in process (/conversions, metrics, Events).
import { createServer, type Server, type Socket } from "node:net";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Writable } from "node:stream";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { compileConfig } from "../../src/config/config.js";
import { SOURCE_DIGEST_ANNOTATION } from "../../src/convert/image.js";
import { conversionJobName } from "../../src/converter/job-spec.js";
import { type ConverterHandle, startConverter } from "../../src/converter/main.js";
import type { ConversionRecord } from "../../src/converter/service.js";
import { createLogger } from "../../src/observability/logger.js";
import { TestJobController } from "../support/job-controller.js";
import { KubeApiStandIn } from "../support/kube-api-standin.js";
import { getManifest, pushTestImage } from "../support/oci-images.js";
import { freePort, waitFor } from "../support/ports.js";
import { registryAvailable, type RunningRegistry, startRegistry } from "../support/registry.js";
import { type FaultServer, forwardTo, startFaultServer } from "../support/faults.js";
import { gzipTar } from "../support/tarball.js";

const SECRET = "distribution-shared-secret-jobs";
const NS = "apparate";
const layer = (name: string) => gzipTar([{ name: "etc/", type: "5" }, { name: `etc/${name}`, data: `${name}\n` }]);
const digestOf = (n: string) => `sha256:${n.repeat(64).slice(0, 64)}`;

describe.skipIf(!registryAvailable && process.env.CI !== "true")("converter.mode job: one Kubernetes Job per image digest", () => {
  let dir: string;
  let reg: RunningRegistry;
  let hang: Server;            // a registry that accepts and never answers: Jobs that run until stopped
  let hangHost: string;
  let quiet: RunningRegistry;  // sends no events: only the converter's own submissions convert its images
  let front: FaultServer;      // forwards to quiet; fails blob GETs while `failBlobs` > 0
  let failBlobs = 0;
  const sockets = new Set<Socket>();
  let api: KubeApiStandIn;
  let ctl: TestJobController;
  let port: number;
  let conv: ConverterHandle | undefined;
  const logLines: string[] = [];

  const rawConfig = (job: Record<string, unknown>, over: Record<string, unknown> = {}) => ({
    acceleration: { registries: [reg.host, hangHost, front.host] },
    registry: { plainHttp: [reg.host, hangHost, front.host], requestTimeoutMs: 5000 },
    converter: {
      mode: "job", concurrency: 1, maxAttempts: 1, rescanIntervalSeconds: 0,
      sources: [{ name: "local", kind: "distribution", secretFile: join(dir, "local") }],
      job: { image: "apparate:test", configMap: "apparate-converter", credentialsSecret: "apparate-converter-credentials", backoffLimit: 1, activeDeadlineSeconds: 120, memoryLimit: "512Mi", ...job },
      ...over,
    },
  });

  /** The converter, and the ConfigMap its Jobs read (its own config, credentials at the mounted path). */
  const start = async (job: Record<string, unknown> = {}, over: Record<string, unknown> = {}) => {
    await conv?.close();
    const raw = rawConfig(job, over);
    const forJob = { ...raw, registry: { ...raw.registry, dockerConfigFile: "/etc/apparate/converter-credentials/.dockerconfigjson" } };
    api.put("configmaps", { metadata: { name: "apparate-converter", namespace: NS }, data: { "config.yaml": JSON.stringify(forJob) } });
    const logger = createLogger({ level: "debug", destination: new Writable({ write(c, _e, cb) { logLines.push(c.toString()); cb(); } }) });
    conv = await startConverter({ config: compileConfig(raw), logger, port, host: "127.0.0.1", scanOnStart: false, jobSlotPollMs: 200, kube: { kc: api.kubeConfig(), namespace: NS, podName: "converter-0" } });
    return conv;
  };
  const record = (source: string) => conv!.converter.conversions().recent.find((r) => r.source === source);
  const finished = async (source: string, ms = 60_000): Promise<ConversionRecord> => {
    await waitFor(async () => ["converted", "up-to-date", "failed"].includes(record(source)?.state ?? ""), ms, `${source} to finish`);
    return record(source)!;
  };
  const submit = (registry: string, repository: string, tag: string, digest: string) => conv!.converter.submitPush({ registry, repository, tag, digest }, "test");
  const jobs = () => api.list("jobs", "batch");

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), "apparate-converter-jobs-"));
    writeFileSync(join(dir, "local"), SECRET);
    port = await freePort();
    reg = await startRegistry({ notify: { url: `http://127.0.0.1:${port}/events/local`, headers: { Authorization: `Bearer ${SECRET}` } } });
    hang = createServer((s) => { sockets.add(s); s.on("close", () => sockets.delete(s)); });
    await new Promise<void>((r) => hang.listen(0, "127.0.0.1", () => r()));
    hangHost = `127.0.0.1:${(hang.address() as { port: number }).port}`;
    quiet = await startRegistry();
    front = await startFaultServer((req, res) => {
      if (req.method === "GET" && /\/blobs\/sha256:/.test(req.url ?? "") && failBlobs > 0) { failBlobs--; res.writeHead(503).end("try later"); return; }
      forwardTo(quiet.host)(req, res);
    });
    api = new KubeApiStandIn();
    await api.start();
    const auth = Buffer.from("converter:push-password").toString("base64");
    api.put("secrets", {
      metadata: { name: "apparate-converter-credentials", namespace: NS }, type: "kubernetes.io/dockerconfigjson",
      data: { ".dockerconfigjson": Buffer.from(JSON.stringify({ auths: { [reg.host]: { auth } } })).toString("base64") },
    });
    ctl = new TestJobController(api);
  }, 120_000);

  afterEach(async () => { await conv?.close(); conv = undefined; });

  afterAll(async () => {
    if (process.env.DEBUG_JOBS) console.log(JSON.stringify(ctl.runs.map((r) => ({ ...r, stdout: r.stdout.slice(0, 400), stderr: r.stderr.slice(0, 600) })), null, 1));
    ctl?.stop();
    await conv?.close();
    await reg?.stop();
    for (const s of sockets) s.destroy();
    hang?.close();
    await front?.stop();
    await quiet?.stop();
    await api?.stop();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it("push -> Job created -> apparate convert runs in it -> the -apparate tag appears -> the result is recorded", async () => {
    await start();
    const digest = await pushTestImage(reg.url, "team/web", "v1", [{ layers: [{ blob: layer("web") }] }]);
    const rec = await finished(`${reg.host}/team/web:v1`);
    const m = await getManifest(reg.url, "team/web", "v1-apparate");
    expect(m.status).toBe(200);
    expect(m.json.annotations[SOURCE_DIGEST_ANNOTATION]).toBe(digest);
    expect(rec).toMatchObject({ state: "converted", digest, targetDigest: m.digest, trigger: "event", attempts: 1 });
    // The Job: its deterministic name, created through the API, completed by the pod's exit 0.
    const name = conversionJobName({ registry: reg.host, repository: "team/web", tag: "v1", digest, targetTag: "v1-apparate" });
    const job = api.get("jobs", name, NS, "batch")!;
    expect(job.status.conditions.map((c: { type: string }) => c.type)).toContain("Complete");
    expect(api.requests).toContain(`POST /apis/batch/v1/namespaces/${NS}/jobs`);
    const run = ctl.runs.find((r) => r.job === name)!;
    expect(run).toMatchObject({ exitCode: 0, args: ["convert", `${reg.host}/team/web:v1@${digest}`, `${reg.host}/team/web:v1-apparate`, "--config", "/etc/apparate/converter/config.yaml"] });
    // The engine ran in the Job, not in the converter: the converter never read the layer.
    // Bytes, from the two images' manifests: the source layer read, the eStargz layer written.
    const src = (await getManifest(reg.url, "team/web", digest)).json.layers[0].size as number;
    expect(rec).toMatchObject({ bytesIn: src, bytesOut: m.json.layers[0].size });
    const metrics = await (await fetch(`${conv!.url}/metrics`)).text();
    expect(metrics).toContain(`apparate_conversion_bytes_total{direction="in"} ${src}`);
    expect(metrics).toMatch(/apparate_conversions_total\{result="converted"\} 1/);
    expect(metrics).toMatch(/apparate_conversion_duration_seconds_count\{result="converted"\} 1/);
  }, 90_000);

  it("the same digest again adopts the finished Job by its name instead of creating a second one, its result checked against the registry", async () => {
    await start();
    const digest = (await getManifest(reg.url, "team/web", "v1")).digest;
    const posts = api.requests.filter((r) => r.startsWith("POST") && r.endsWith("/jobs")).length;
    expect(submit(reg.host, "team/web", "v1", digest).outcome).toBe("queued");
    const rec = await finished(`${reg.host}/team/web:v1`);
    expect(rec.state).toBe("converted"); // the existing Job's result, checked against the registry
    expect(api.requests.filter((r) => r.startsWith("POST") && r.endsWith("/jobs")).length).toBe(posts);
  }, 60_000);

  it("a Job OOM-killed at its memory limit fails on its first pod; the converter retries with backoff, replacing the failed Job, then records the reason and one Event", async () => {
    await start({ memoryLimit: "24Mi", backoffLimit: 3 }, { maxAttempts: 2, retryBackoffSeconds: 0.2 });
    const digest = await pushTestImage(reg.url, "team/oom", "v1", [{ layers: [{ blob: layer("oom") }] }]);
    const rec = await finished(`${reg.host}/team/oom:v1`);
    expect(rec).toMatchObject({ state: "failed", attempts: 2 });
    expect(rec.permanent).toBeUndefined();
    expect(rec.error).toMatch(/killed \(exit code 137\): out of memory at the Job's memory limit 24Mi/);
    const name = conversionJobName({ registry: reg.host, repository: "team/oom", tag: "v1", digest, targetTag: "v1-apparate" });
    // The failure policy failed each Job on its first pod despite backoffLimit 3; the
    // failed Job was deleted (Background) for the second attempt's new one.
    expect(ctl.runs.filter((r) => r.job === name).map((r) => r.exitCode)).toEqual([137, 137]);
    expect(api.deletions.filter((d) => d.name === name)).toEqual([{ plural: "jobs", namespace: NS, name, propagationPolicy: "Background" }]);
    expect(api.get("jobs", name, NS, "batch")!.status.conditions).toContainEqual(expect.objectContaining({ type: "Failed", reason: "PodFailurePolicy" }));
    expect((await getManifest(reg.url, "team/oom", "v1-apparate")).status).toBe(404);
    await waitFor(async () => api.list("events").some((e) => e.reason === "ConversionFailed" && e.message.includes("team/oom")), 10_000, "the Event");
    expect(api.list("events").filter((e) => e.reason === "ConversionFailed" && e.message.includes("team/oom"))).toHaveLength(1);
  }, 90_000);

  it("a source that cannot be converted fails its Job on the first pod (exit 11) and is recorded failed for good; a new converter finds that Job and does not replace it", async () => {
    await start({ backoffLimit: 1 }, { maxAttempts: 3, retryBackoffSeconds: 0.2 });
    const missing = digestOf("c");
    submit(reg.host, "team/missing", "v1", missing);
    const rec = await finished(`${reg.host}/team/missing:v1`);
    expect(rec).toMatchObject({ state: "failed", attempts: 1, permanent: true });
    expect(rec.error).toMatch(/the source cannot be converted as it is \(exit code 11/);
    const name = conversionJobName({ registry: reg.host, repository: "team/missing", tag: "v1", digest: missing, targetTag: "v1-apparate" });
    const runs = ctl.runs.filter((r) => r.job === name);
    expect(runs.map((r) => r.exitCode)).toEqual([11]);
    expect(runs[0]!.stderr).toMatch(/team\/missing.* does not exist \(cannot be converted: retrying cannot help\)/);
    // A restarted converter (its memory gone) is offered the digest again: the failed Job stands.
    const posts = api.requests.filter((r) => r.startsWith("POST") && r.endsWith("/jobs")).length;
    await start({ backoffLimit: 1 }, { maxAttempts: 3, retryBackoffSeconds: 0.2 });
    submit(reg.host, "team/missing", "v1", missing);
    expect(await finished(`${reg.host}/team/missing:v1`)).toMatchObject({ state: "failed", attempts: 1, permanent: true });
    expect(api.requests.filter((r) => r.startsWith("POST") && r.endsWith("/jobs")).length).toBe(posts);
    expect(api.deletions.filter((d) => d.name === name)).toEqual([]);
    expect(ctl.runs.filter((r) => r.job === name)).toHaveLength(1);
  }, 90_000);

  it("a Job that failed on the way (registry 503: exit 1 until backoffLimit) does not block the retry: deleted with propagationPolicy Background, a new Job converts", async () => {
    await start({ backoffLimit: 1 }, { maxAttempts: 2, retryBackoffSeconds: 0.2 });
    const digest = await pushTestImage(quiet.url, "team/flaky", "v1", [{ layers: [{ blob: layer("flaky") }] }]);
    failBlobs = 2; // both pods of the first Job see 503 for the layer
    submit(front.host, "team/flaky", "v1", digest);
    const rec = await finished(`${front.host}/team/flaky:v1`);
    expect(rec).toMatchObject({ state: "converted", attempts: 2 });
    const name = conversionJobName({ registry: front.host, repository: "team/flaky", tag: "v1", digest, targetTag: "v1-apparate" });
    expect(ctl.runs.filter((r) => r.job === name).map((r) => r.exitCode)).toEqual([1, 1, 0]);
    expect(api.deletions.filter((d) => d.name === name)).toEqual([{ plural: "jobs", namespace: NS, name, propagationPolicy: "Background" }]);
    expect(api.get("jobs", name, NS, "batch")!.status.conditions.map((c: { type: string }) => c.type)).toContain("Complete");
    expect((await getManifest(quiet.url, "team/flaky", "v1-apparate")).json.annotations[SOURCE_DIGEST_ANNOTATION]).toBe(digest);
  }, 90_000);

  it("a Job deleted under the converter is recorded failed (deleted before it finished) and its pod is killed", async () => {
    await start();
    const d = digestOf("d");
    submit(hangHost, "team/hang", "v1", d);
    const name = conversionJobName({ registry: hangHost, repository: "team/hang", tag: "v1", digest: d, targetTag: "v1-apparate" });
    await waitFor(async () => ctl.active > 0 && ctl.runs.some((r) => r.job === name), 20_000, "the Job's pod");
    api.remove("jobs", name, NS, "batch");
    const rec = await finished(`${hangHost}/team/hang:v1`);
    expect(rec).toMatchObject({ state: "failed", attempts: 1 });
    expect(rec.error).toMatch(/deleted before it finished/);
    await waitFor(async () => ctl.runs.filter((r) => r.job === name).every((r) => r.signal === "SIGKILL"), 5000, "the pod killed");
  }, 60_000);

  it("a Job that outlives converter.job.waitSeconds is deleted with propagationPolicy Background and recorded failed", async () => {
    await start({ waitSeconds: 2 });
    const d = digestOf("e");
    submit(hangHost, "team/slow", "v1", d);
    const rec = await finished(`${hangHost}/team/slow:v1`, 30_000);
    expect(rec.state).toBe("failed");
    expect(rec.error).toMatch(/did not finish within 2 s: deleted/);
    const name = conversionJobName({ registry: hangHost, repository: "team/slow", tag: "v1", digest: d, targetTag: "v1-apparate" });
    expect(api.deletions).toContainEqual({ plural: "jobs", namespace: NS, name, propagationPolicy: "Background" });
    expect(api.get("jobs", name, NS, "batch")).toBeUndefined();
  }, 60_000);

  it("at the cap of active Jobs (another replica's included) work is queued, not dropped, and runs when a slot frees", async () => {
    await start({}, { concurrency: 2 });
    // Another replica's conversion Job holds one slot; this replica may start one more.
    const foreign = digestOf("f");
    submit(hangHost, "team/foreign", "v1", foreign);
    const foreignName = conversionJobName({ registry: hangHost, repository: "team/foreign", tag: "v1", digest: foreign, targetTag: "v1-apparate" });
    await waitFor(async () => ctl.runs.some((r) => r.job === foreignName), 20_000, "the foreign Job's pod");
    await conv!.close();
    conv = undefined;
    await start({}, { concurrency: 1 });
    const digests = [];
    for (const t of ["a", "b", "c"]) digests.push(await pushTestImage(reg.url, "team/capped", t, [{ layers: [{ blob: layer(`capped-${t}`) }] }]));
    await waitFor(async () => conv!.converter.conversions().recent.filter((r) => r.source.includes("team/capped")).length === 3, 20_000, "three events");
    // The slot is taken: nothing is created, the three wait in the queue (none dropped).
    await new Promise((r) => setTimeout(r, 1500));
    expect(jobs().filter((j) => j.metadata.annotations?.["apparate.io/source"]?.includes("team/capped"))).toEqual([]);
    const { queued, running } = conv!.converter.conversions();
    expect(queued + running).toBe(3);
    // The foreign Job goes; the three run one at a time.
    api.remove("jobs", foreignName, NS, "batch");
    for (const t of ["a", "b", "c"]) expect((await finished(`${reg.host}/team/capped:${t}`, 90_000)).state).toBe("converted");
    for (const [i, t] of ["a", "b", "c"].entries()) expect((await getManifest(reg.url, "team/capped", `${t}-apparate`)).json.annotations[SOURCE_DIGEST_ANNOTATION]).toBe(digests[i]);
    expect(ctl.maxConcurrent).toBeLessThanOrEqual(2);
  }, 180_000);

  it("a dropped watch (history compacted too) is followed by a fresh read and a new watch; a Job Complete while the registry lacks the tag is not counted converted", async () => {
    await start();
    const d = await pushTestImage(reg.url, "team/liar", "v1", [{ layers: [{ blob: layer("liar") }] }]);
    ctl.holdPods = true; // its pod stays Pending: nothing converts it
    try {
      const name = conversionJobName({ registry: reg.host, repository: "team/liar", tag: "v1", digest: d, targetTag: "v1-apparate" });
      await waitFor(async () => api.get("jobs", name, NS, "batch") !== undefined, 20_000, "the Job");
      await new Promise((r) => setTimeout(r, 300));
      // The API server restarts its watches and compacts its history.
      api.dropWatches();
      api.compact();
      const job = api.get("jobs", name, NS, "batch")!;
      api.put("jobs", { ...job, status: { ...job.status, succeeded: 1, conditions: [{ type: "Complete", status: "True", reason: "CompletionsReached" }] } }, "batch");
      const rec = await finished(`${reg.host}/team/liar:v1`, 30_000);
      expect(rec.state).toBe("failed");
      expect(rec.error).toMatch(/completed but .*team\/liar:v1-apparate does not record/);
      expect((await getManifest(reg.url, "team/liar", "v1-apparate")).status).toBe(404);
      expect(api.goneCount).toBe(0); // never re-watched from a resourceVersion it had not just read
    } finally { ctl.holdPods = false; }
  }, 60_000);

  it("job mode refuses to start without the Kubernetes API or without the Job's image, naming what is missing", async () => {
    const raw = rawConfig({});
    await expect(startConverter({ config: compileConfig(raw), logger: createLogger({ level: "silent" }), port: 0, host: "127.0.0.1", scanOnStart: false }))
      .rejects.toThrow(/converter.mode job needs the Kubernetes API/);
    const noImage = rawConfig({ image: "" });
    await expect(startConverter({ config: compileConfig(noImage), logger: createLogger({ level: "silent" }), port: 0, host: "127.0.0.1", scanOnStart: false, kube: { kc: api.kubeConfig(), namespace: NS, podName: "converter-0" } }))
      .rejects.toThrow(/converter.job.image is empty/);
  });

  it("negative control: inprocess mode creates no Job and converts in the converter", async () => {
    await start({}, { mode: "inprocess" });
    const before = jobs().length;
    const digest = await pushTestImage(reg.url, "team/inproc", "v1", [{ layers: [{ blob: layer("inproc") }] }]);
    expect((await finished(`${reg.host}/team/inproc:v1`)).state).toBe("converted");
    expect((await getManifest(reg.url, "team/inproc", "v1-apparate")).json.annotations[SOURCE_DIGEST_ANNOTATION]).toBe(digest);
    expect(jobs().length).toBe(before);
  }, 60_000);
});
