// Job mode's pure part: the Job's name (deterministic, a DNS-1123 label under 63
// characters), its spec (valid batch/v1, restricted Pod Security, the limits from the
// configuration, a failure policy that never retries what cannot succeed), and what a
// Job's status means. Status rows use the Job controller's own reasons and messages
// (kubernetes/kubernetes pkg/controller/job at 57c05b7d223db659c973768beeb079a3d64f76c0).
import { describe, expect, it } from "vitest";
import { compileConfig } from "../../src/config/config.js";
import { jobSettings } from "../../src/converter/main.js";
import { conversionJob, conversionJobName, failedForGood, failureText, JobSpecError, jobState, type JobSettings } from "../../src/converter/job-spec.js";
import { strictCheck, validateObject, type K8sObject } from "../support/k8s-schema.js";
import { restrictedViolations } from "../support/pod-security.js";

const D1 = `sha256:${"a".repeat(64)}`;
const D2 = `sha256:${"b".repeat(64)}`;
const req = (over: Partial<Parameters<typeof conversionJobName>[0]> = {}) => ({ registry: "registry.example.com", repository: "team/app", tag: "v1", digest: D1, targetTag: "v1-apparate", ...over });
const settings: JobSettings = jobSettings(compileConfig({
  converter: { mode: "job", job: { image: "ghcr.io/example/apparate:1.0", configMap: "rel-apparate-converter", credentialsSecret: "rel-apparate-converter-credentials", memoryLimit: "768Mi", memoryRequest: "300Mi", cpuRequest: "1" } },
}), "apparate-system");

describe("conversion Job name", () => {
  it("is the same for the same request, a DNS-1123 label of at most 63 characters, whatever the image", () => {
    const long = req({ repository: `${"x".repeat(200)}/${"y".repeat(200)}`, tag: "t".repeat(128), targetTag: `${"t".repeat(119)}-apparate` });
    for (const r of [req(), long, req({ registry: "127.0.0.1:5000" })]) {
      const n = conversionJobName(r);
      expect(n).toBe(conversionJobName({ ...r }));
      expect(n.length).toBeLessThanOrEqual(63);
      expect(n).toMatch(/^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/);
    }
  });

  it("differs for another digest, tag, repository or registry (one Job per image digest)", () => {
    const names = new Set([req(), req({ digest: D2 }), req({ tag: "v2", targetTag: "v2-apparate" }), req({ repository: "team/other" }), req({ registry: "other.example.com" })].map(conversionJobName));
    expect(names.size).toBe(5);
  });
});

describe("conversion Job spec", () => {
  const job = conversionJob(req(), settings);

  it("is a valid batch/v1 Job (schema and strict field check) that passes the restricted Pod Security profile", async () => {
    await validateObject(job as unknown as K8sObject);
    expect(strictCheck([job as unknown as K8sObject], ".tmp/strict-k8s-jobspec")).toEqual([]);
    expect(restrictedViolations(job.spec!.template.spec!)).toEqual([]);
  });

  it("runs apparate convert of exactly that digest, non-root, read-only root, an emptyDir for /tmp, config and credentials mounted", () => {
    const pod = job.spec!.template.spec!;
    const c = pod.containers[0]!;
    expect(c.image).toBe("ghcr.io/example/apparate:1.0");
    expect(c.args).toEqual(["convert", `registry.example.com/team/app:v1@${D1}`, "registry.example.com/team/app:v1-apparate", "--config", "/etc/apparate/converter/config.yaml"]);
    expect(c.securityContext).toMatchObject({ runAsNonRoot: true, readOnlyRootFilesystem: true, allowPrivilegeEscalation: false });
    expect(c.volumeMounts).toEqual(expect.arrayContaining([
      { name: "tmp", mountPath: "/tmp" },
      { name: "config", mountPath: "/etc/apparate/converter", readOnly: true },
      { name: "credentials", mountPath: "/etc/apparate/converter-credentials", readOnly: true },
    ]));
    expect(pod.volumes).toEqual(expect.arrayContaining([
      { name: "tmp", emptyDir: { sizeLimit: "2Gi" } },
      { name: "config", configMap: { name: "rel-apparate-converter" } },
      { name: "credentials", secret: { secretName: "rel-apparate-converter-credentials" } },
    ]));
    expect(pod.automountServiceAccountToken).toBe(false);
    expect(job.metadata!.namespace).toBe("apparate-system");
  });

  it("takes resources and the memory limit from converter.job", () => {
    expect(job.spec!.template.spec!.containers[0]!.resources).toEqual({
      requests: { cpu: "1", memory: "300Mi", "ephemeral-storage": "2Gi" },
      limits: { memory: "768Mi", "ephemeral-storage": "2Gi" },
    });
    expect(job.spec).toMatchObject({ backoffLimit: 2, activeDeadlineSeconds: 3600, ttlSecondsAfterFinished: 600 });
  });

  it("runs apparate convert with a 2 MiB young generation (NODE_OPTIONS), which bounds its RSS (bench/results.json conversionManyFiles)", () => {
    expect(job.spec!.template.spec!.containers[0]!.env).toContainEqual({ name: "NODE_OPTIONS", value: "--max-semi-space-size=2" });
  });

  it("fails the Job at once on up to date (10), usage (2), cannot be converted (11) and killed (137): another pod at once would end alike", () => {
    expect(job.spec!.podFailurePolicy!.rules).toContainEqual({ action: "FailJob", onExitCodes: { containerName: "convert", operator: "In", values: [2, 10, 11, 137] } });
    expect(job.spec!.template.spec!.restartPolicy).toBe("Never");
  });

  it("negative controls: no image, no ConfigMap or a bad quantity is refused with the setting named", () => {
    expect(() => conversionJob(req(), { ...settings, image: "" })).toThrow(JobSpecError);
    expect(() => conversionJob(req(), { ...settings, configMap: "" })).toThrow(/converter.job.configMap/);
    expect(() => conversionJob(req(), { ...settings, memoryLimit: "lots" })).toThrow(/converter.job.memoryLimit "lots"/);
    const bare = conversionJob(req(), { ...settings, credentialsSecret: "" });
    expect(bare.spec!.template.spec!.volumes!.map((v) => v.name)).toEqual(["config", "tmp"]);
  });
});

describe("a Job's status, as the Job controller writes it", () => {
  const cond = (type: string, reason: string, message: string, status = "True") => ({ status: { conditions: [{ type, status, reason, message }] } });
  const rows: Array<[string, object, ReturnType<typeof jobState>]> = [
    ["no status yet", {}, { state: "running" }],
    ["active", { status: { active: 1, startTime: new Date() } }, { state: "running" }],
    ["FailureTarget only (pods still terminating)", cond("FailureTarget", "PodFailurePolicy", "x"), { state: "running" }],
    ["Complete", { status: { conditions: [{ type: "SuccessCriteriaMet", status: "True" }, { type: "Complete", status: "True", reason: "CompletionsReached" }] } }, { state: "complete" }],
    ["Complete False", cond("Complete", "", "", "False"), { state: "running" }],
    ["OOM-killed, FailJob rule", cond("Failed", "PodFailurePolicy", "Container convert for pod ns/p-1 failed with exit code 137 matching FailJob rule at index 1"),
      { state: "failed", reason: "PodFailurePolicy", message: "Container convert for pod ns/p-1 failed with exit code 137 matching FailJob rule at index 1", exitCode: 137 }],
    ["backoff limit", cond("Failed", "BackoffLimitExceeded", "Job has reached the specified backoff limit"), { state: "failed", reason: "BackoffLimitExceeded", message: "Job has reached the specified backoff limit" }],
    ["deadline", cond("Failed", "DeadlineExceeded", "Job was active longer than specified deadline"), { state: "failed", reason: "DeadlineExceeded", message: "Job was active longer than specified deadline" }],
  ];
  it.each(rows)("%s", (_name, job, want) => {
    expect(jobState(job)).toEqual(want);
  });

  it("the recorded reason says what happened: out of memory at the configured limit, the backoff limit, the deadline", () => {
    const s = { memoryLimit: "512Mi", activeDeadlineSeconds: 3600, backoffLimit: 2 };
    expect(failureText("j", { state: "failed", reason: "PodFailurePolicy", message: "m", exitCode: 137 }, s)).toMatch(/out of memory at the Job's memory limit 512Mi/);
    expect(failureText("j", { state: "failed", reason: "BackoffLimitExceeded", message: "m" }, s)).toMatch(/failed 3 time\(s\)/);
    expect(failureText("j", { state: "failed", reason: "DeadlineExceeded", message: "m" }, s)).toMatch(/longer than converter.job.activeDeadlineSeconds \(3600 s\)/);
    expect(failureText("j", { state: "failed", reason: "PodFailurePolicy", message: "m", exitCode: 11 }, s)).toMatch(/cannot be converted as it is \(exit code 11; the pod's log names the layer and entry\)/);
  });

  // Failed for good: the converter records it at once and never replaces the Job; the rest
  // are retried by the queue, each retry deleting the failed Job and creating a new one.
  it.each([
    ["cannot be converted (11)", { reason: "PodFailurePolicy", exitCode: 11 }, true],
    ["usage (2)", { reason: "PodFailurePolicy", exitCode: 2 }, true],
    ["OOM-killed (137)", { reason: "PodFailurePolicy", exitCode: 137 }, false],
    ["backoff limit (exit 1 each time)", { reason: "BackoffLimitExceeded" }, false],
    ["deadline", { reason: "DeadlineExceeded" }, false],
  ])("%s: failed for good = %s", (_n, f, want) => {
    expect(failedForGood({ state: "failed", message: "", ...f })).toBe(want);
  });
});
