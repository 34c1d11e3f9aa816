// The converter's core: events and scan findings become queue jobs (after the loop
// guards and the shared rules), jobs run the engine, and every step is recorded for
// /conversions, the metrics and, on failure, a Kubernetes Event.
import type { Config } from "../config/config.js";
import { formatReference } from "../image/reference.js";
import { conversionDecision } from "../mutate/rules.js";
import type { Logger } from "../observability/logger.js";
import type { Claims } from "./claim.js";
import type { ConvertImage } from "./engine.js";
import type { PushEvent } from "./events.js";
import type { ConverterMetrics } from "./metrics.js";
import { PermanentFailure, type QueueEvent, type QueueJob, type Timers, WorkQueue } from "./queue.js";
import type { Submitted } from "./receivers.js";
import type { RegistryReader } from "./registry-reader.js";
import { type ScanFinding, type ScanReport, type ScanTarget, scanRegistry } from "./scan.js";

export type Trigger = "event" | "scan";

export interface ConversionJob extends QueueJob {
  registry: string;
  repository: string;
  tag: string;
  digest: string;
  targetTag: string;
  trigger: Trigger;
  /** The rule that selected it. */
  rule: string;
}

export type RecordState = "queued" | "running" | "retrying" | "converted" | "up-to-date" | "failed" | "superseded" | "interrupted" | "elsewhere";

export interface ConversionRecord {
  source: string;
  digest: string;
  target: string;
  trigger: Trigger;
  rule: string;
  state: RecordState;
  attempts: number;
  queuedAt: string;
  startedAt?: string;
  finishedAt?: string;
  durationMs?: number;
  bytesIn?: number;
  bytesOut?: number;
  targetDigest?: string;
  error?: string;
  /** Failed for good: another attempt cannot fix it (not retried, not run again on a replay or rescan). */
  permanent?: boolean;
}

export interface ConverterOptions {
  config: Config;
  convert: ConvertImage;
  metrics: ConverterMetrics;
  logger: Logger;
  /** Replicas coordinate through these (Leases); none: this process is alone. */
  claims?: Claims;
  /** A conversion failed for good: the Kubernetes Event. */
  onFailure?(record: ConversionRecord): void;
  timers?: Timers;
}

/** A short, credential-free reason: engine errors name images and status codes, never headers. */
export function errorText(err: unknown): string {
  const e = err as { message?: unknown };
  const msg = typeof e?.message === "string" ? e.message : String(err);
  return msg.length > 500 ? `${msg.slice(0, 500)}…` : msg;
}

export class Converter {
  readonly queue: WorkQueue<ConversionJob>;
  private readonly records = new Map<string, ConversionRecord>();
  readonly scans = new Map<string, ScanReport>();
  private readonly ownUsers: ReadonlySet<string>;
  private readonly abort = new AbortController();

  constructor(private readonly o: ConverterOptions) {
    const c = o.config.converter;
    this.ownUsers = new Set(c.ownUsers);
    this.queue = new WorkQueue<ConversionJob>({
      concurrency: c.concurrency, maxQueued: c.maxQueued, maxAttempts: c.maxAttempts,
      initialBackoffMs: c.retryBackoffSeconds * 1000, maxBackoffMs: c.retryBackoffMaxSeconds * 1000,
      run: (job) => this.run(job),
      onEvent: (e) => this.observe(e),
      ...(o.timers ? { timers: o.timers } : {}),
    });
  }

  /** One pushed tag from a registry event. */
  submitPush(push: PushEvent & { registry: string }, source: string): Submitted {
    if (push.actor && this.ownUsers.has(push.actor)) return this.count("event", { outcome: "skipped", reason: `pushed by ${push.actor}, the converter's own user` });
    const r = this.submit({ registry: push.registry, repository: push.repository, tag: push.tag, digest: push.digest }, "event");
    if (r.outcome !== "skipped") this.o.logger.info({ source, image: `${push.registry}/${push.repository}:${push.tag}`, digest: push.digest, outcome: r.outcome }, "push event");
    return r;
  }

  submitFinding(f: ScanFinding): Submitted {
    return this.submit(f, "scan");
  }

  private submit(s: { registry: string; repository: string; tag: string; digest: string }, trigger: Trigger): Submitted {
    const decision = conversionDecision({ domain: s.registry, path: s.repository, tag: s.tag }, this.o.config);
    if (!decision.convert) return this.count(trigger, { outcome: "skipped", reason: decision.reason });
    const source = `${s.registry}/${s.repository}:${s.tag}`;
    const job: ConversionJob = {
      key: `${source}@${s.digest}`, slot: source, ...s, targetTag: decision.target.tag!, trigger, rule: decision.rule,
    };
    // Recorded before submitting: the queue may start the job at once.
    const previous = this.records.get(job.key);
    this.record(job.key, { source, digest: s.digest, target: formatReference(decision.target), trigger, rule: decision.rule, state: "queued", attempts: 0, queuedAt: new Date().toISOString() });
    const r = this.queue.submit(job);
    if (r.outcome === "queued") return this.count(trigger, { outcome: "queued" });
    if (previous) this.records.set(job.key, previous); else this.records.delete(job.key);
    if (r.outcome === "duplicate") return this.count(trigger, { outcome: "duplicate", reason: r.reason });
    return this.count(trigger, { outcome: "full" });
  }

  private count(trigger: Trigger, s: Submitted): Submitted {
    this.o.metrics.submissions.inc({ trigger, outcome: s.outcome });
    return s;
  }

  private async run(job: ConversionJob) {
    const claims = this.o.claims;
    if (claims && !(await claims.claim(job.key))) return { result: "elsewhere", forget: true };
    try {
      return await this.convertClaimed(job);
    } finally {
      await claims?.release(job.key).catch((err: unknown) => this.o.logger.warn({ image: job.slot, error: errorText(err) }, "cannot release the conversion lease"));
    }
  }

  private async convertClaimed(job: ConversionJob) {
    const r = await this.o.convert(
      { registry: job.registry, repository: job.repository, tag: job.tag, digest: job.digest, targetTag: job.targetTag },
      this.abort.signal,
    );
    const rec = this.records.get(job.key);
    if (rec) Object.assign(rec, { bytesIn: r.bytesIn, bytesOut: r.bytesOut, ...(r.digest ? { targetDigest: r.digest } : {}) });
    this.o.metrics.bytes.inc({ direction: "in" }, r.bytesIn);
    this.o.metrics.bytes.inc({ direction: "out" }, r.bytesOut);
    return { result: r.result };
  }

  private observe(e: QueueEvent<ConversionJob>): void {
    const rec = this.records.get(e.job.key);
    const now = new Date().toISOString();
    const log = { image: e.job.slot, digest: e.job.digest, trigger: e.job.trigger };
    switch (e.type) {
      case "started":
        if (rec) Object.assign(rec, { state: "running", attempts: e.attempt, startedAt: now });
        break;
      case "succeeded": {
        if (e.outcome.result === "elsewhere") {
          // Another replica holds this digest's Lease: the work is theirs.
          if (rec) Object.assign(rec, { state: "elsewhere", finishedAt: now });
          this.o.metrics.conversions.inc({ result: "elsewhere" });
          break;
        }
        const result = e.outcome.result === "up-to-date" ? "up-to-date" : "converted";
        if (rec) Object.assign(rec, { state: result, finishedAt: now, durationMs: e.ms });
        this.o.metrics.conversions.inc({ result: result.replace(/-/g, "_") });
        this.o.metrics.duration.observe({ result: result.replace(/-/g, "_") }, e.ms / 1000);
        this.o.logger.info({ ...log, result, ms: e.ms, target: rec?.target }, "conversion finished");
        break;
      }
      case "retrying":
        this.o.metrics.failures.inc({ kind: "transient" });
        if (rec) Object.assign(rec, { state: "retrying", error: errorText(e.error) });
        this.o.logger.warn({ ...log, attempt: e.attempt, retryInMs: e.delayMs, error: errorText(e.error) }, "conversion failed, retrying");
        break;
      case "failed": {
        if (this.abort.signal.aborted) {
          // Stopped by shutdown, not broken: the next converter's rescan finishes it.
          if (rec) Object.assign(rec, { state: "interrupted", finishedAt: now });
          this.o.logger.info(log, "conversion interrupted by shutdown");
          break;
        }
        const permanent = e.error instanceof PermanentFailure;
        if (rec) Object.assign(rec, { state: "failed", finishedAt: now, error: errorText(e.error), ...(permanent ? { permanent } : {}) });
        this.o.metrics.failures.inc({ kind: permanent ? "permanent" : "transient" });
        this.o.metrics.conversions.inc({ result: "failed" });
        this.o.logger.error({ ...log, attempts: e.attempt, permanent, error: errorText(e.error) }, permanent ? "conversion failed for good: not retried" : "conversion failed");
        if (rec) this.o.onFailure?.(rec);
        break;
      }
      case "superseded":
        if (rec) Object.assign(rec, { state: "superseded", finishedAt: now });
        break;
    }
  }

  private record(key: string, r: ConversionRecord): void {
    this.records.delete(key);
    this.records.set(key, r);
    const limit = this.o.config.converter.recentLimit;
    while (this.records.size > limit) this.records.delete(this.records.keys().next().value!);
  }

  /** Recent work, newest first, and the failures among it. */
  conversions(): { queued: number; running: number; recent: ConversionRecord[]; failures: ConversionRecord[]; scans: ScanReport[] } {
    const recent = [...this.records.values()].reverse();
    return {
      queued: this.queue.depth, running: this.queue.active, recent,
      failures: recent.filter((r) => r.state === "failed"),
      scans: [...this.scans.values()].map((s) => ({ ...s, findings: s.findings.slice(0, 50) })),
    };
  }

  /** Scans every target once; findings are queued as they are found. */
  async scanAll(targets: readonly ScanTarget[], reader: RegistryReader): Promise<ScanReport[]> {
    const out: ScanReport[] = [];
    for (const target of targets) {
      if (this.abort.signal.aborted) break;
      try {
        const report = await scanRegistry(target, { reader, config: this.o.config, signal: this.abort.signal, found: (f) => { this.o.metrics.scanFindings.inc({ registry: f.registry, reason: f.reason }); this.submitFinding(f); } });
        this.scans.set(target.registry, report);
        this.o.metrics.lastScan.set({ registry: target.registry }, Date.now() / 1000);
        if (report.errors.length > 0) this.o.metrics.scanErrors.inc({ registry: target.registry }, report.errors.length);
        this.o.logger.info({ registry: target.registry, catalog: report.catalog, repositories: report.repositories, tags: report.tags, findings: report.findings.length, upToDate: report.upToDate, errors: report.errors.slice(0, 5) }, "rescan finished");
        out.push(report);
      } catch (err) {
        this.o.metrics.scanErrors.inc({ registry: target.registry });
        this.o.logger.warn({ registry: target.registry, error: errorText(err) }, "rescan failed");
      }
    }
    return out;
  }

  /** Stops taking work; running conversions are aborted (the engine writes the tag last). */
  stop(): void {
    this.queue.stop();
    this.abort.abort();
  }
}
