// Job mode, the pure part: what Kubernetes Job converts one source digest (name, pod
// spec, failure policy), and what a Job's status means for the conversion. The I/O
// (create, watch, delete) is in job-dispatch.ts.
import { createHash } from "node:crypto";
import type { V1Job, V1JobCondition } from "@kubernetes/client-node";
import { ApparateError } from "../errors.js";
import type { ConversionRequest } from "./engine.js";

/** converter.job of the configuration, with the namespace resolved. */
export interface JobSettings {
  image: string;
  namespace: string;
  serviceAccountName: string;
  ttlSecondsAfterFinished: number;
  backoffLimit: number;
  activeDeadlineSeconds: number;
  cpuRequest: string;
  memoryRequest: string;
  memoryLimit: string;
  ephemeralStorage: string;
  /** ConfigMap holding config.yaml (the converter's own). */
  configMap: string;
  /** kubernetes.io/dockerconfigjson Secret with push rights; "" for none. */
  credentialsSecret: string;
  /** ConfigMap with the registry CA bundle (ca.crt); "" for none. */
  registryCaConfigMap?: string;
  imagePullSecrets?: string[];
}

export class JobSpecError extends ApparateError {}

/** Where the Job's container finds its files: the paths the converter's own config names. */
export const JOB_CONFIG_DIR = "/etc/apparate/converter";
export const JOB_CREDENTIALS_DIR = "/etc/apparate/converter-credentials";
export const JOB_REGISTRY_CA_DIR = "/etc/apparate/registry-ca";
export const JOB_CONTAINER = "convert";

/** `apparate convert` exit codes the failure policy tells apart (src/convert/command.ts). */
export const EXIT_USAGE = 2;
export const EXIT_UP_TO_DATE = 10;
/** The source cannot be converted as it is: the converter records it failed for good. */
export const EXIT_UNCONVERTIBLE = 11;
/** 128 + SIGKILL: what the kubelet reports for a container the kernel's OOM killer ended. */
export const EXIT_KILLED = 137;

/** V8 options `apparate convert` runs with in a Job (and in the bench): a small young generation bounds RSS. */
export const CONVERT_NODE_OPTIONS = "--max-semi-space-size=2";

export const LABEL_CONVERSION = "apparate.io/conversion";
export const ANNOTATION_SOURCE = "apparate.io/source";
export const ANNOTATION_DIGEST = "apparate.io/source-digest";
export const ANNOTATION_TARGET = "apparate.io/target";

/** The work's identity, as the queue and the Leases key it. */
export const conversionKey = (r: ConversionRequest) => `${r.registry}/${r.repository}:${r.tag}@${r.digest}`;

/**
 * One name per source digest (and target tag): a DNS-1123 label under 63 characters,
 * so that the Job's pods can carry it in their job-name label. The same request always
 * gives the same name: a restarted converter or another replica finds the Job again.
 */
export function conversionJobName(r: ConversionRequest): string {
  const h = createHash("sha256").update(`${conversionKey(r)}\n${r.targetTag}`).digest("hex").slice(0, 40);
  return `apparate-convert-${h}`;
}

const quantity = /^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$/;

export function conversionJob(r: ConversionRequest, s: JobSettings): V1Job {
  if (!s.image) throw new JobSpecError("job-image-missing", "converter.job.image is empty: job mode needs the image of apparate (the converter's own)", "");
  if (!s.configMap) throw new JobSpecError("job-config-missing", "converter.job.configMap is empty: the Job reads the converter's configuration from it", "");
  for (const [k, v] of Object.entries({ cpuRequest: s.cpuRequest, memoryRequest: s.memoryRequest, memoryLimit: s.memoryLimit, ephemeralStorage: s.ephemeralStorage })) {
    if (!quantity.test(v)) throw new JobSpecError("job-quantity", `converter.job.${k} ${JSON.stringify(v)} is not a Kubernetes quantity`, v);
  }
  const name = conversionJobName(r);
  const source = `${r.registry}/${r.repository}:${r.tag}`;
  const target = `${r.registry}/${r.repository}:${r.targetTag}`;
  const labels = { "app.kubernetes.io/name": "apparate", "app.kubernetes.io/component": "conversion", [LABEL_CONVERSION]: "true" };
  const mounts = [
    { name: "config", mountPath: JOB_CONFIG_DIR, readOnly: true },
    { name: "tmp", mountPath: "/tmp" },
    ...(s.credentialsSecret ? [{ name: "credentials", mountPath: JOB_CREDENTIALS_DIR, readOnly: true }] : []),
    ...(s.registryCaConfigMap ? [{ name: "registry-ca", mountPath: JOB_REGISTRY_CA_DIR, readOnly: true }] : []),
  ];
  const volumes = [
    { name: "config", configMap: { name: s.configMap } },
    { name: "tmp", emptyDir: { sizeLimit: s.ephemeralStorage } },
    ...(s.credentialsSecret ? [{ name: "credentials", secret: { secretName: s.credentialsSecret } }] : []),
    ...(s.registryCaConfigMap ? [{ name: "registry-ca", configMap: { name: s.registryCaConfigMap } }] : []),
  ];
  return {
    apiVersion: "batch/v1", kind: "Job",
    metadata: {
      name, namespace: s.namespace, labels,
      annotations: { [ANNOTATION_SOURCE]: source.slice(0, 1000), [ANNOTATION_DIGEST]: r.digest, [ANNOTATION_TARGET]: target.slice(0, 1000) },
    },
    spec: {
      backoffLimit: s.backoffLimit,
      activeDeadlineSeconds: s.activeDeadlineSeconds,
      ttlSecondsAfterFinished: s.ttlSecondsAfterFinished,
      // No new pod: up to date (nothing to do), a usage error, a source that cannot be
      // converted, or the memory limit killed it (a pod at once at the same limit would
      // meet the same end; the converter tries again later, with backoff). A node going
      // away is not counted.
      podFailurePolicy: {
        rules: [
          { action: "Ignore", onPodConditions: [{ type: "DisruptionTarget", status: "True" }] },
          { action: "FailJob", onExitCodes: { containerName: JOB_CONTAINER, operator: "In", values: [EXIT_USAGE, EXIT_UP_TO_DATE, EXIT_UNCONVERTIBLE, EXIT_KILLED] } },
        ],
      },
      template: {
        metadata: { labels },
        spec: {
          restartPolicy: "Never",
          automountServiceAccountToken: false,
          enableServiceLinks: false,
          ...(s.serviceAccountName ? { serviceAccountName: s.serviceAccountName } : {}),
          ...(s.imagePullSecrets?.length ? { imagePullSecrets: s.imagePullSecrets.map((n) => ({ name: n })) } : {}),
          securityContext: { runAsNonRoot: true, runAsUser: 65532, runAsGroup: 65532, fsGroup: 65532, seccompProfile: { type: "RuntimeDefault" } },
          containers: [{
            name: JOB_CONTAINER,
            image: s.image,
            args: ["convert", `${source}@${r.digest}`, target, "--config", `${JOB_CONFIG_DIR}/config.yaml`],
            // A 2 MiB young generation: the conversion's short-lived buffers are collected sooner
            // (peak RSS: bench/results.json conversionManyFiles).
            env: [{ name: "LOG_LEVEL", value: "info" }, { name: "HOME", value: "/tmp" }, { name: "NODE_OPTIONS", value: CONVERT_NODE_OPTIONS }],
            resources: {
              requests: { cpu: s.cpuRequest, memory: s.memoryRequest, "ephemeral-storage": s.ephemeralStorage },
              limits: { memory: s.memoryLimit, "ephemeral-storage": s.ephemeralStorage },
            },
            securityContext: {
              runAsNonRoot: true, runAsUser: 65532, runAsGroup: 65532, allowPrivilegeEscalation: false,
              readOnlyRootFilesystem: true, capabilities: { drop: ["ALL"] }, seccompProfile: { type: "RuntimeDefault" },
            },
            terminationMessagePolicy: "FallbackToLogsOnError",
            volumeMounts: mounts,
          }],
          volumes,
        },
      },
    },
  };
}

export type JobState =
  | { state: "running" }
  | { state: "complete" }
  | { state: "failed"; reason: string; message: string; exitCode?: number };

const isTrue = (c: V1JobCondition | undefined) => c?.status === "True";

/** What a Job's conditions say: finished only on a Complete or Failed condition that is True. */
export function jobState(job: V1Job): JobState {
  const conds = job.status?.conditions ?? [];
  if (isTrue(conds.find((c) => c.type === "Complete"))) return { state: "complete" };
  const failed = conds.find((c) => c.type === "Failed");
  if (!isTrue(failed)) return { state: "running" };
  const message = failed!.message ?? "";
  // The Job controller's FailJob message: "... failed with exit code N matching FailJob rule at index I".
  const code = /failed with exit code (\d+) matching/.exec(message);
  return { state: "failed", reason: failed!.reason ?? "Failed", message, ...(code ? { exitCode: Number(code[1]) } : {}) };
}

/** Whether a failed Job failed for good: its pod said retrying cannot help (a new Job would fail alike). */
export function failedForGood(f: Extract<JobState, { state: "failed" }>): boolean {
  return f.exitCode === EXIT_UNCONVERTIBLE || f.exitCode === EXIT_USAGE;
}

/** The reason a failed Job is recorded with: the controller's words, and what they mean here. */
export function failureText(name: string, f: Extract<JobState, { state: "failed" }>, s: Pick<JobSettings, "memoryLimit" | "activeDeadlineSeconds" | "backoffLimit">): string {
  const what = f.exitCode === EXIT_KILLED ? `killed (exit code ${EXIT_KILLED}): out of memory at the Job's memory limit ${s.memoryLimit} (converter.job.memoryLimit)`
    : f.exitCode === EXIT_USAGE ? "apparate convert refused its arguments (exit code 2)"
      : f.exitCode === EXIT_UNCONVERTIBLE ? `the source cannot be converted as it is (exit code ${EXIT_UNCONVERTIBLE}; the pod's log names the layer and entry)`
      : f.reason === "DeadlineExceeded" ? `ran longer than converter.job.activeDeadlineSeconds (${s.activeDeadlineSeconds} s)`
        : f.reason === "BackoffLimitExceeded" ? `apparate convert failed ${s.backoffLimit + 1} time(s) (converter.job.backoffLimit ${s.backoffLimit})`
          : f.exitCode !== undefined ? `apparate convert exited with code ${f.exitCode}` : "the Job failed";
  return `Job ${name} failed: ${what} [${f.reason}: ${f.message.slice(0, 300)}]`;
}
