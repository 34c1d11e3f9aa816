// Job mode, the I/O part: a conversion becomes a Kubernetes Job running `apparate
// convert` (job-spec.ts), and the converter waits for it (a watch on that one Job, with
// a timeout) before recording the result as an in-process conversion would be. The
// registry stays the judge: a Job counts as converted only when the target records the
// source digest. The Job keeps its deterministic name, so a restarted converter (or
// another replica) finds a running Job again instead of starting a second one.
import { BatchV1Api, type KubeConfig, type V1Job, Watch } from "@kubernetes/client-node";
import { ApparateError } from "../errors.js";
import { isAlreadyExists, isNotFound } from "../kube/status.js";
import type { Logger } from "../observability/logger.js";
import type { ConversionResult, ConvertImage } from "./engine.js";
import { conversionJob, conversionJobName, EXIT_UP_TO_DATE, failedForGood, failureText, type JobSettings, jobState, LABEL_CONVERSION } from "./job-spec.js";
import { PermanentFailure } from "./queue.js";
import type { RegistryReader } from "./registry-reader.js";

/** A Job that went away, never finished or failed in a way a new one may not: the queue tries again (bounded by maxAttempts). */
export class JobWaitError extends ApparateError {}

export interface JobDispatchOptions {
  kc: KubeConfig;
  settings: JobSettings;
  /** Active conversion Jobs at most in the namespace, whoever created them. */
  maxActive: number;
  /** Reads the target after the Job: the registry says whether it was converted. */
  reader: Pick<RegistryReader, "recordedSource" | "digest" | "layerSizes">;
  logger: Logger;
  /** How long to wait for one Job; default activeDeadlineSeconds + 60 s (the Job's own deadline fires first). */
  waitTimeoutMs?: number;
  /** How often a replica at the cap looks again for a free slot. */
  slotPollMs?: number;
}

type WatchOutcome = { kind: "job"; job: V1Job } | { kind: "deleted" } | { kind: "ended" } | { kind: "timeout" };

function abortError(signal: AbortSignal): Error {
  return signal.reason instanceof Error ? signal.reason : new Error("aborted");
}

export class JobDispatcher {
  private readonly batch: BatchV1Api;
  private readonly watcher: Watch;
  private readonly timeoutMs: number;

  constructor(private readonly o: JobDispatchOptions) {
    this.batch = o.kc.makeApiClient(BatchV1Api);
    this.watcher = new Watch(o.kc);
    this.timeoutMs = o.waitTimeoutMs ?? (o.settings.activeDeadlineSeconds + 60) * 1000;
  }

  /** The engine the Converter calls in job mode. */
  readonly convert: ConvertImage = async (req, signal) => {
    const s = this.o.settings;
    const body = conversionJob(req, s);
    const name = conversionJobName(req);
    const log = { job: name, image: `${req.registry}/${req.repository}:${req.tag}`, digest: req.digest };
    let job = await this.read(name);
    if (job && jobState(job).state !== "running") {
      // A finished Job of this digest: its result stands, unless it failed in a way
      // another attempt may fix; then it goes (its name is this digest's) and a new one
      // is made, rather than the failure standing until ttlSecondsAfterFinished.
      try { return await this.result(req, name, job); } catch (err) {
        if (err instanceof PermanentFailure || signal.aborted) throw err;
        this.o.logger.info({ ...log, error: (err as Error).message }, "conversion Job finished without converting: deleting it to run a new one");
        await this.deleteAndForget(name, signal);
        job = undefined;
      }
    }
    if (job) this.o.logger.info({ ...log, state: jobState(job).state }, "conversion Job exists: waiting for it");
    else {
      await this.slot(signal);
      try {
        job = await this.batch.createNamespacedJob({ namespace: s.namespace, body });
        this.o.logger.info(log, "conversion Job created");
      } catch (err) {
        if (!isAlreadyExists(err)) throw err;
        job = await this.read(name);
        if (!job) throw new JobWaitError("job-deleted", `Job ${name} was deleted while it was being created`, name);
      }
    }
    const done = await this.wait(name, job, signal);
    return this.result(req, name, done);
  };

  private async read(name: string): Promise<V1Job | undefined> {
    try { return await this.batch.readNamespacedJob({ name, namespace: this.o.settings.namespace }); } catch (err) {
      if (isNotFound(err)) return undefined;
      throw err;
    }
  }

  /** Active conversion Jobs in the namespace (this replica's and others'). */
  async active(): Promise<number> {
    const list = await this.batch.listNamespacedJob({ namespace: this.o.settings.namespace, labelSelector: `${LABEL_CONVERSION}=true` });
    return list.items.filter((j) => jobState(j).state === "running" && !j.metadata?.deletionTimestamp).length;
  }

  /** Waits (the work stays queued, never dropped) until fewer than maxActive Jobs run. */
  private async slot(signal: AbortSignal): Promise<void> {
    const every = this.o.slotPollMs ?? 2000;
    let logged = false;
    for (;;) {
      if (signal.aborted) throw abortError(signal);
      const n = await this.active();
      if (n < this.o.maxActive) return;
      if (!logged) { this.o.logger.info({ active: n, max: this.o.maxActive }, "conversion Jobs at the cap: waiting for one to finish"); logged = true; }
      await new Promise<void>((resolve) => {
        const t = setTimeout(done, every);
        function done() { clearTimeout(t); signal.removeEventListener("abort", done); resolve(); }
        signal.addEventListener("abort", done, { once: true });
      });
    }
  }

  /** Follows one Job until it is Complete or Failed; re-reads after a dropped watch or 410 Gone. */
  private async wait(name: string, first: V1Job, signal: AbortSignal): Promise<V1Job> {
    const deadline = Date.now() + this.timeoutMs;
    let job = first;
    for (;;) {
      if (jobState(job).state !== "running") return job;
      if (signal.aborted) throw abortError(signal); // the Job goes on; the next converter adopts it
      const left = deadline - Date.now();
      const w = left > 0 ? await this.watchOnce(name, job.metadata?.resourceVersion, signal, left) : { kind: "timeout" as const };
      if (w.kind === "job") { job = w.job; continue; }
      if (w.kind === "deleted") throw new JobWaitError("job-deleted", `Job ${name} was deleted before it finished`, name);
      if (w.kind === "timeout") {
        await this.delete(name);
        throw new JobWaitError("job-timeout", `Job ${name} did not finish within ${Math.round(this.timeoutMs / 1000)} s: deleted`, name);
      }
      const again = await this.read(name);
      if (!again) throw new JobWaitError("job-deleted", `Job ${name} was deleted before it finished`, name);
      job = again;
    }
  }

  /** One watch of one Job from resourceVersion: the first finished state, its deletion, or the watch's end. */
  private watchOnce(name: string, resourceVersion: string | undefined, signal: AbortSignal, ms: number): Promise<WatchOutcome> {
    return new Promise<WatchOutcome>((resolve) => {
      let settled = false;
      let ctl: AbortController | undefined;
      const finish = (o: WatchOutcome) => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        signal.removeEventListener("abort", onAbort);
        ctl?.abort();
        resolve(o);
      };
      const timer = setTimeout(() => finish({ kind: "timeout" }), ms);
      const onAbort = () => finish({ kind: "ended" });
      signal.addEventListener("abort", onAbort, { once: true });
      const path = `/apis/batch/v1/namespaces/${this.o.settings.namespace}/jobs`;
      const query = { fieldSelector: `metadata.name=${name}`, allowWatchBookmarks: true, ...(resourceVersion ? { resourceVersion } : {}) };
      this.watcher.watch(path, query, (phase, obj: V1Job) => {
        if (phase === "DELETED") finish({ kind: "deleted" });
        else if ((phase === "ADDED" || phase === "MODIFIED") && jobState(obj).state !== "running") finish({ kind: "job", job: obj });
        else if (phase === "ERROR") finish({ kind: "ended" }); // 410 Gone: read it again
      }, () => finish({ kind: "ended" })).then((c) => { ctl = c; if (settled) c.abort(); }, () => finish({ kind: "ended" }));
    });
  }

  /** Deletes a finished Job (Background: its pods go after it) and waits until its name is free. */
  private async deleteAndForget(name: string, signal: AbortSignal): Promise<void> {
    await this.delete(name);
    const until = Date.now() + 30_000;
    for (;;) {
      if (!(await this.read(name))) return;
      if (signal.aborted) throw abortError(signal);
      if (Date.now() > until) throw new JobWaitError("job-not-deleted", `Job ${name} failed and was deleted to run again, but it is still there after 30 s`, name);
      await new Promise((r) => setTimeout(r, 200));
    }
  }

  private async delete(name: string): Promise<void> {
    try { await this.batch.deleteNamespacedJob({ name, namespace: this.o.settings.namespace, propagationPolicy: "Background" }); } catch (err) {
      if (!isNotFound(err)) this.o.logger.warn({ job: name, err }, "cannot delete the conversion Job");
    }
  }

  /**
   * Bytes read and written, from the two images' manifests (the Job's own counts stay in
   * its pod): the source layers that were converted, and the eStargz layers made of them.
   * Layers copied as they were (already eStargz) count on neither side, as in process.
   */
  private async bytes(req: Parameters<ConvertImage>[0], signal: AbortSignal): Promise<{ bytesIn: number; bytesOut: number }> {
    if (!this.o.reader.layerSizes) return { bytesIn: 0, bytesOut: 0 };
    try {
      const [src, dst] = await Promise.all([
        this.o.reader.layerSizes(req.registry, req.repository, req.digest, signal),
        this.o.reader.layerSizes(req.registry, req.repository, req.targetTag, signal),
      ]);
      let bytesIn = 0;
      let bytesOut = 0;
      for (const [d, n] of src) if (!dst.has(d)) bytesIn += n;
      for (const [d, n] of dst) if (!src.has(d)) bytesOut += n;
      return { bytesIn, bytesOut };
    } catch (err) {
      this.o.logger.warn({ image: `${req.registry}/${req.repository}:${req.tag}`, err }, "cannot read the layer sizes: bytes not counted");
      return { bytesIn: 0, bytesOut: 0 };
    }
  }

  /** The registry decides: converted only when the target records this source digest. */
  private async result(req: Parameters<ConvertImage>[0], name: string, job: V1Job): Promise<ConversionResult> {
    const st = jobState(job);
    const ac = new AbortController();
    const target = `${req.registry}/${req.repository}:${req.targetTag}`;
    let recorded: string | undefined;
    try { recorded = await this.o.reader.recordedSource(req.registry, req.repository, req.targetTag, ac.signal); } catch (err) {
      throw new JobWaitError("job-result-unreadable", `Job ${name} finished (${st.state}), but ${target} could not be read to check it: ${(err as Error).message}`, name, { cause: err });
    }
    if (recorded === req.digest) {
      const digest = await this.o.reader.digest(req.registry, req.repository, req.targetTag, ac.signal);
      // A Job that ended on exit code 10 found the target already up to date.
      const upToDate = st.state === "failed";
      const bytes = upToDate ? { bytesIn: 0, bytesOut: 0 } : await this.bytes(req, ac.signal);
      return { result: upToDate ? "up-to-date" : "converted", ...(digest ? { digest } : {}), ...bytes };
    }
    if (st.state === "complete") {
      throw new JobWaitError("job-result-missing", `Job ${name} completed but ${req.registry}/${req.repository}:${req.targetTag} does not record ${req.digest}`, name);
    }
    if (st.state === "failed" && st.exitCode === EXIT_UP_TO_DATE) {
      throw new JobWaitError("job-result-missing", `Job ${name} found the target up to date, but it does not record ${req.digest}`, name);
    }
    // Its pod said retrying cannot help (exit 11 or 2): failed for good. Otherwise (the
    // Job's pods ran out at backoffLimit, its deadline, killed at its memory limit) the
    // queue tries again with backoff, and the next attempt replaces this Job.
    const failed = st as Extract<typeof st, { state: "failed" }>;
    if (failedForGood(failed)) throw new PermanentFailure(failureText(name, failed, this.o.settings));
    throw new JobWaitError("job-failed", failureText(name, failed, this.o.settings), name);
  }
}
