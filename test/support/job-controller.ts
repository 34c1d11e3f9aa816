// A test-side Job controller for the API stand-in: there is no kube-controller-manager
// or kubelet here, so this plays both for batch/v1 Jobs. A Job's pod is the container's
// args run by the real apparate CLI (node dist/cli.js), as root but then as the pod's
// runAsUser, in a private mount namespace where the Job's volumes (ConfigMap, Secret,
// emptyDir, read from the stand-in) appear at their mountPaths and the root filesystem is
// read-only, inside a memory cgroup set to the container's memory limit (the kernel's OOM
// killer ends it as the kubelet's would: exit code 137). Job status is written as the
// Job controller writes it: active/succeeded/failed counts, Complete or Failed
// conditions, the pod failure policy (FailJob/Ignore/Count, first matching rule) with the
// controller's message, backoffLimit, activeDeadlineSeconds; a deleted Job's pod is
// killed (Background/Foreground propagation).
//
// Messages and reasons are those of kubernetes/kubernetes pkg/controller/job
// (pod_failure_policy.go and job_controller.go at 57c05b7d223db659c973768beeb079a3d64f76c0).
import { type ChildProcess, spawn } from "node:child_process";
import { chmodSync, chownSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmdirSync, rmSync, writeFileSync } from "node:fs";
import { constants, tmpdir } from "node:os";
import { join, resolve } from "node:path";
import type { KubeApiStandIn } from "./kube-api-standin.js";

type Obj = { metadata: Record<string, any>; spec?: any; status?: any; [k: string]: any };

export interface PodRun {
  job: string;
  args: string[];
  exitCode?: number;
  signal?: string;
  stdout: string;
  stderr: string;
}

export interface JobControllerOptions {
  /** The image's entrypoint: node and the built CLI. */
  entrypoint?: string[];
  /** Delay before a failed pod is replaced (the real controller backs off from 10 s). */
  retryDelayMs?: number;
}

/** Kubernetes quantity ("512Mi", "1G", "1048576") in bytes. */
export function quantityBytes(q: string): number {
  const m = /^([0-9.]+)(Ki|Mi|Gi|Ti|k|M|G|T)?$/.exec(q);
  if (!m) throw new Error(`not a memory quantity: ${q}`);
  const mult: Record<string, number> = { Ki: 1024, Mi: 1024 ** 2, Gi: 1024 ** 3, Ti: 1024 ** 4, k: 1e3, M: 1e6, G: 1e9, T: 1e12 };
  return Math.round(Number(m[1]) * (m[2] ? mult[m[2]]! : 1));
}

/** A memory cgroup (v2, or v1's memory hierarchy) with a limit; undefined when neither is writable. */
function memoryCgroup(name: string, bytes: number): { procs: string; remove(): void } | undefined {
  const v2 = "/sys/fs/cgroup";
  const candidates = existsSync(join(v2, "cgroup.controllers")) && readFileSync(join(v2, "cgroup.controllers"), "utf8").includes("memory")
    ? [{ dir: join(v2, name), limit: "memory.max", swap: "memory.swap.max" }]
    : [{ dir: join(v2, "memory", name), limit: "memory.limit_in_bytes", swap: undefined }];
  for (const c of candidates) {
    try {
      mkdirSync(c.dir);
      writeFileSync(join(c.dir, c.limit), String(bytes));
      if (c.swap) try { writeFileSync(join(c.dir, c.swap), "0"); } catch { /* no swap accounting */ }
      return { procs: join(c.dir, "cgroup.procs"), remove: () => { try { rmdirSync(c.dir); } catch { /* busy for a moment */ } } };
    } catch { /* not this one */ }
  }
  return undefined;
}

const signum = (s: NodeJS.Signals) => constants.signals[s] ?? 9;

interface Running { child?: ChildProcess; root: string; deadline?: NodeJS.Timeout; retry?: NodeJS.Timeout; gone: boolean }

export class TestJobController {
  readonly runs: PodRun[] = [];
  /** Most pods running at once, across Jobs. */
  maxConcurrent = 0;
  /** New pods stay Pending (no node has room) while set. */
  holdPods = false;
  private readonly running = new Map<string, Running>();
  private readonly unsubscribe: () => void;
  private readonly entrypoint: string[];

  constructor(private readonly api: KubeApiStandIn, private readonly o: JobControllerOptions = {}) {
    this.entrypoint = o.entrypoint ?? [process.execPath, resolve("dist/cli.js")];
    this.unsubscribe = api.onChange((type, plural, obj) => {
      if (plural !== "jobs") return;
      const key = `${obj.metadata.namespace}/${obj.metadata.name}`;
      if (type === "ADDED" && !this.running.has(key) && !this.finished(obj)) this.startJob(key, obj);
      if (type === "DELETED" || (type === "MODIFIED" && obj.metadata.deletionTimestamp)) this.kill(key);
    });
  }

  get active(): number { return [...this.running.values()].filter((r) => r.child).length; }

  stop(): void {
    this.unsubscribe();
    for (const k of [...this.running.keys()]) this.kill(k);
  }

  private finished(job: Obj): boolean {
    return (job.status?.conditions ?? []).some((c: any) => (c.type === "Complete" || c.type === "Failed") && c.status === "True");
  }

  private current(key: string): Obj | undefined {
    const [ns, name] = key.split("/") as [string, string];
    return this.api.get("jobs", name, ns, "batch");
  }

  private setStatus(key: string, f: (status: any) => void): void {
    const job = this.current(key);
    if (!job) return;
    job.status ??= {};
    f(job.status);
    this.api.put("jobs", job, "batch");
  }

  private now(): string { return new Date().toISOString().replace(/\.\d+Z$/, "Z"); }

  private startJob(key: string, job: Obj): void {
    const root = mkdtempSync(join(tmpdir(), "apparate-job-"));
    const r: Running = { root, gone: false };
    this.running.set(key, r);
    this.setStatus(key, (s) => { s.startTime = this.now(); s.active = 0; s.succeeded = 0; s.failed = 0; });
    const deadline = job.spec?.activeDeadlineSeconds;
    if (deadline) {
      r.deadline = setTimeout(() => {
        this.finish(key, "Failed", "DeadlineExceeded", "Job was active longer than specified deadline");
        this.kill(key);
      }, deadline * 1000);
    }
    this.startPod(key, job);
  }

  /** Writes each mounted volume's files: under /etc into the overlay's tree, elsewhere into a dir to bind-mount. */
  private materialize(job: Obj, podRoot: string, etcTree: string): Array<{ mountPath: string; host: string }> {
    const ns = job.metadata.namespace as string;
    const pod = job.spec.template.spec;
    const c = pod.containers[0];
    const uid = pod.securityContext?.runAsUser ?? c.securityContext?.runAsUser ?? 0;
    const out: Array<{ mountPath: string; host: string }> = [];
    for (const m of c.volumeMounts ?? []) {
      const vol = (pod.volumes ?? []).find((v: any) => v.name === m.name);
      if (!vol) throw new Error(`volume ${m.name} is mounted but not defined`);
      const host = m.mountPath.startsWith("/etc/") ? join(etcTree, m.mountPath.slice("/etc/".length)) : join(podRoot, "volumes", m.name);
      mkdirSync(host, { recursive: true });
      let files: Record<string, Buffer> = {};
      if (vol.configMap) {
        const cm = this.api.get("configmaps", vol.configMap.name, ns);
        if (!cm) throw new Error(`configmap "${vol.configMap.name}" not found`);
        files = Object.fromEntries(Object.entries(cm.data ?? {}).map(([k, v]) => [k, Buffer.from(String(v))]));
      } else if (vol.secret) {
        const sec = this.api.get("secrets", vol.secret.secretName, ns);
        if (!sec) throw new Error(`secret "${vol.secret.secretName}" not found`);
        files = Object.fromEntries(Object.entries(sec.data ?? {}).map(([k, v]) => [k, Buffer.from(String(v), "base64")]));
      } else if (!vol.emptyDir) throw new Error(`volume ${m.name}: only configMap, secret and emptyDir are played here`);
      for (const [k, v] of Object.entries(files)) { writeFileSync(join(host, k), v); chmodSync(join(host, k), 0o644); }
      if (vol.emptyDir) chownSync(host, uid, pod.securityContext?.fsGroup ?? uid);
      chmodSync(host, vol.emptyDir ? 0o770 : 0o755);
      out.push({ mountPath: m.mountPath, host });
    }
    return out;
  }

  private startPod(key: string, job: Obj): void {
    const r = this.running.get(key);
    if (!r || r.gone) return;
    if (this.holdPods) { r.retry = setTimeout(() => this.startPod(key, this.current(key) ?? job), 100); return; }
    const pod = job.spec.template.spec;
    const c = pod.containers[0];
    const podRoot = mkdtempSync(join(r.root, "pod-"));
    const run: PodRun = { job: job.metadata.name, args: [...(c.args ?? [])], stdout: "", stderr: "" };
    this.runs.push(run);
    const etcTree = join(podRoot, "etc-overlay");
    let mounts: Array<{ mountPath: string; host: string }>;
    try { mounts = this.materialize(job, podRoot, etcTree); } catch (err) {
      // The kubelet would leave the pod ContainerCreating; the Job's deadline ends it.
      run.stderr = (err as Error).message;
      return;
    }
    // Under /etc (absent on the host): an overlay of the pod's files over the host's /etc; elsewhere: bind mounts.
    const script: string[] = ["set -e"];
    if (mounts.some((m) => m.mountPath.startsWith("/etc/"))) script.push(`mount -t overlay overlay -o lowerdir='${etcTree}':/etc /etc`);
    for (const m of mounts) if (!m.mountPath.startsWith("/etc/")) script.push(`mount --bind '${m.host}' '${m.mountPath}'`);
    const sc = { ...pod.securityContext, ...c.securityContext };
    if (sc.readOnlyRootFilesystem) script.push("mount -o remount,bind,ro /");
    const limit = c.resources?.limits?.memory;
    const cg = limit ? memoryCgroup(`apparate-test-${job.metadata.name.slice(-12)}-${this.runs.length}`, quantityBytes(limit)) : undefined;
    if (limit && !cg) throw new Error("no writable memory cgroup: the Job's memory limit cannot be enforced");
    if (cg) script.push(`echo $$ > '${cg.procs}'`);
    const user = sc.runAsUser !== undefined ? ["setpriv", `--reuid=${sc.runAsUser}`, `--regid=${sc.runAsGroup ?? sc.runAsUser}`, "--clear-groups", "--no-new-privs"] : [];
    script.push(`exec ${[...user, ...this.entrypoint].map((a) => `'${a}'`).join(" ")} "$@"`);
    const env: Record<string, string> = { PATH: process.env.PATH ?? "/usr/bin:/bin" };
    for (const e of c.env ?? []) if (typeof e.value === "string") env[e.name] = e.value;
    const child = spawn("unshare", ["--mount", "--propagation", "private", "sh", "-c", script.join("\n"), "pod", ...run.args], { env, stdio: ["ignore", "pipe", "pipe"] });
    r.child = child;
    this.maxConcurrent = Math.max(this.maxConcurrent, this.active);
    this.setStatus(key, (s) => { s.active = 1; s.ready = 1; });
    child.stdout!.on("data", (d: Buffer) => { run.stdout += d.toString(); });
    child.stderr!.on("data", (d: Buffer) => { run.stderr += d.toString(); });
    child.on("exit", (code, signal) => {
      cg?.remove();
      r.child = undefined;
      run.exitCode = code ?? 128 + signum(signal ?? "SIGKILL");
      if (signal) run.signal = signal;
      if (r.gone) return;
      this.podExited(key, run.exitCode, `${job.metadata.namespace}/${job.metadata.name}-${this.runs.length}`);
    });
  }

  /** pod_failure_policy.go: the first rule whose requirement the failed pod meets. */
  private policyAction(job: Obj, exitCode: number): { action: string; index: number } | undefined {
    const rules: any[] = job.spec?.podFailurePolicy?.rules ?? [];
    const container = job.spec.template.spec.containers[0].name;
    for (const [index, rule] of rules.entries()) {
      const on = rule.onExitCodes;
      if (!on) continue; // onPodConditions: no disruption happens here
      if (on.containerName && on.containerName !== container) continue;
      const inList = (on.values as number[]).includes(exitCode);
      if (on.operator === "In" ? inList : !inList) return { action: rule.action, index };
    }
    return undefined;
  }

  private podExited(key: string, exitCode: number, podName: string): void {
    const job = this.current(key);
    if (!job) return;
    if (exitCode === 0) {
      this.setStatus(key, (s) => { s.active = 0; s.ready = 0; s.succeeded = (s.succeeded ?? 0) + 1; s.completionTime = this.now(); });
      this.finish(key, "Complete", "CompletionsReached", "Reached expected number of succeeded pods", "SuccessCriteriaMet");
      return;
    }
    const matched = this.policyAction(job, exitCode);
    if (matched?.action === "Ignore") { this.retry(key, job, false); return; }
    this.setStatus(key, (s) => { s.active = 0; s.ready = 0; s.failed = (s.failed ?? 0) + 1; });
    if (matched?.action === "FailJob") {
      const [ns, pod] = podName.split("/");
      const message = `Container ${job.spec.template.spec.containers[0].name} for pod ${ns}/${pod} failed with exit code ${exitCode} matching FailJob rule at index ${matched.index}`;
      this.finish(key, "Failed", "PodFailurePolicy", message, "FailureTarget");
      return;
    }
    const failed = (this.current(key)?.status?.failed ?? 0) as number;
    if (failed > (job.spec.backoffLimit ?? 6)) {
      this.finish(key, "Failed", "BackoffLimitExceeded", "Job has reached the specified backoff limit", "FailureTarget");
      return;
    }
    this.retry(key, job, true);
  }

  private retry(key: string, job: Obj, counted: boolean): void {
    const r = this.running.get(key);
    if (!r) return;
    void counted;
    r.retry = setTimeout(() => this.startPod(key, this.current(key) ?? job), this.o.retryDelayMs ?? 100);
  }

  private finish(key: string, type: "Complete" | "Failed", reason: string, message: string, before?: string): void {
    const r = this.running.get(key);
    if (!r || r.gone) return;
    r.gone = true;
    if (r.deadline) clearTimeout(r.deadline);
    if (r.retry) clearTimeout(r.retry);
    const t = this.now();
    this.setStatus(key, (s) => {
      s.active = 0;
      s.conditions = [
        ...(before ? [{ type: before, status: "True", reason, message, lastProbeTime: t, lastTransitionTime: t }] : []),
        { type, status: "True", reason, message, lastProbeTime: t, lastTransitionTime: t },
      ];
    });
    if (r.child) r.child.kill("SIGKILL");
    this.running.delete(key);
    rmSync(r.root, { recursive: true, force: true });
  }

  /** The Job is gone (or going): its pod is killed, as the garbage collector deletes it. */
  private kill(key: string): void {
    const r = this.running.get(key);
    if (!r) return;
    r.gone = true;
    if (r.deadline) clearTimeout(r.deadline);
    if (r.retry) clearTimeout(r.retry);
    r.child?.kill("SIGKILL");
    this.running.delete(key);
    setTimeout(() => rmSync(r.root, { recursive: true, force: true }), 500).unref();
  }
}
