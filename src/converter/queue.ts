// The converter's work queue: in memory, bounded, de-duplicated. A job is one source
// image at one digest; its "slot" is the tag it is converted under, and one slot never
// runs twice at once (a newer digest waits, and replaces a queued older one). Failures
// are retried with capped exponential backoff, except a PermanentFailure; a job that
// succeeded or failed for good is remembered for a while, so a replayed or duplicated
// event (or a rescan) does not run the same digest again.
//
// Hand-written: the npm queues (p-queue, fastq) bound concurrency but know nothing of
// keys, slots or supersession, which are the point here. Time is injected for tests.

export interface QueueJob {
  /** Identity of the work: the source at one digest (registry/repo:tag@digest). */
  key: string;
  /** What it writes: one job per slot at a time (registry/repo:tag). */
  slot: string;
}

export type SubmitResult =
  | { outcome: "queued"; superseded?: string }
  | { outcome: "duplicate"; reason: string }
  | { outcome: "full" };

export interface RunOutcome {
  result: string;
  /** Not remembered against replays: the work was not done here (another replica holds it). */
  forget?: boolean;
}

/** An error that retrying cannot fix (the source is gone, a rule refuses it). */
export class PermanentFailure extends Error {}

export type QueueEvent<J extends QueueJob> =
  | { type: "started"; job: J; attempt: number }
  | { type: "succeeded"; job: J; attempt: number; outcome: RunOutcome; ms: number }
  | { type: "retrying"; job: J; attempt: number; error: unknown; delayMs: number }
  | { type: "failed"; job: J; attempt: number; error: unknown }
  | { type: "superseded"; job: J; by: J };

export interface Timers {
  now(): number;
  setTimeout(fn: () => void, ms: number): unknown;
  clearTimeout(handle: unknown): void;
}

export const realTimers: Timers = {
  now: () => Date.now(),
  setTimeout: (fn, ms) => { const t = setTimeout(fn, ms); t.unref?.(); return t; },
  clearTimeout: (h) => clearTimeout(h as NodeJS.Timeout),
};

export interface WorkQueueOptions<J extends QueueJob> {
  concurrency: number;
  /** Jobs waiting (queued or backing off) at most; running ones are not counted. */
  maxQueued: number;
  maxAttempts: number;
  initialBackoffMs: number;
  maxBackoffMs: number;
  /** Successful (and permanently failed) keys remembered against replays, each. */
  rememberDone?: number;
  run(job: J, attempt: number): Promise<RunOutcome>;
  onEvent?(e: QueueEvent<J>): void;
  timers?: Timers;
  /** 0..1 from a random source; tests pass a constant. */
  random?: () => number;
}

/** Delay before attempt `next` (2, 3, …): doubling from the initial delay, capped, ±20 % jitter. */
export function backoffDelay(next: number, initialMs: number, maxMs: number, random: number): number {
  const base = Math.min(maxMs, initialMs * 2 ** Math.max(0, next - 2));
  return Math.round(base * (0.8 + 0.4 * random));
}

interface Entry<J> { job: J; attempt: number; timer?: unknown }

export class WorkQueue<J extends QueueJob> {
  private readonly ready: Entry<J>[] = [];
  private readonly backingOff = new Map<string, Entry<J>>();
  private readonly running = new Map<string, Entry<J>>();
  private readonly runningSlots = new Set<string>();
  private readonly done = new Map<string, true>();
  /** Keys that failed with a PermanentFailure: a replayed event or a rescan does not run them again. */
  private readonly failedForGood = new Map<string, true>();
  private readonly timers: Timers;
  private readonly random: () => number;
  private idleWaiters: Array<() => void> = [];
  private stopped = false;

  constructor(private readonly opts: WorkQueueOptions<J>) {
    this.timers = opts.timers ?? realTimers;
    this.random = opts.random ?? Math.random;
  }

  /** Jobs waiting to run (queued or backing off). */
  get depth(): number { return this.ready.length + this.backingOff.size; }
  get active(): number { return this.running.size; }

  submit(job: J): SubmitResult {
    if (this.stopped) return { outcome: "full" };
    if (this.running.has(job.key) || this.backingOff.has(job.key) || this.ready.some((e) => e.job.key === job.key)) {
      return { outcome: "duplicate", reason: "already queued or running" };
    }
    if (this.done.has(job.key)) return { outcome: "duplicate", reason: "converted recently" };
    if (this.failedForGood.has(job.key)) return { outcome: "duplicate", reason: "failed for good recently (retrying cannot help)" };
    // A queued older digest of the same tag is replaced: converting it would be wasted work.
    const older = this.ready.findIndex((e) => e.job.slot === job.slot);
    if (older >= 0) {
      const [old] = this.ready.splice(older, 1, { job, attempt: 1 });
      this.opts.onEvent?.({ type: "superseded", job: old!.job, by: job });
      this.pump();
      return { outcome: "queued", superseded: old!.job.key };
    }
    for (const [k, e] of this.backingOff) {
      if (e.job.slot !== job.slot) continue;
      this.timers.clearTimeout(e.timer);
      this.backingOff.delete(k);
      this.opts.onEvent?.({ type: "superseded", job: e.job, by: job });
      this.ready.push({ job, attempt: 1 });
      this.pump();
      return { outcome: "queued", superseded: k };
    }
    if (this.depth >= this.opts.maxQueued) return { outcome: "full" };
    this.ready.push({ job, attempt: 1 });
    this.pump();
    return { outcome: "queued" };
  }

  /** Resolves when nothing is queued, backing off or running. */
  idle(): Promise<void> {
    if (this.depth === 0 && this.active === 0) return Promise.resolve();
    return new Promise((r) => this.idleWaiters.push(r));
  }

  /** Stops taking work and drops what waits; running jobs finish. */
  stop(): void {
    this.stopped = true;
    this.ready.length = 0;
    for (const e of this.backingOff.values()) this.timers.clearTimeout(e.timer);
    this.backingOff.clear();
    this.checkIdle();
  }

  private pump(): void {
    while (!this.stopped && this.running.size < this.opts.concurrency) {
      const i = this.ready.findIndex((e) => !this.runningSlots.has(e.job.slot));
      if (i < 0) break;
      const [entry] = this.ready.splice(i, 1);
      this.start(entry!);
    }
    this.checkIdle();
  }

  private start(entry: Entry<J>): void {
    const { job, attempt } = entry;
    this.running.set(job.key, entry);
    this.runningSlots.add(job.slot);
    this.opts.onEvent?.({ type: "started", job, attempt });
    const t0 = this.timers.now();
    let p: Promise<RunOutcome>;
    try { p = this.opts.run(job, attempt); } catch (err) { p = Promise.reject(err); }
    p.then(
      (outcome) => {
        this.finish(job);
        if (!outcome.forget) this.remember(job.key);
        this.opts.onEvent?.({ type: "succeeded", job, attempt, outcome, ms: this.timers.now() - t0 });
      },
      (error: unknown) => {
        this.finish(job);
        if (error instanceof PermanentFailure || attempt >= this.opts.maxAttempts || this.stopped) {
          if (error instanceof PermanentFailure && !this.stopped) this.remember(job.key, this.failedForGood);
          this.opts.onEvent?.({ type: "failed", job, attempt, error });
          return;
        }
        const delayMs = backoffDelay(attempt + 1, this.opts.initialBackoffMs, this.opts.maxBackoffMs, this.random());
        const next: Entry<J> = { job, attempt: attempt + 1 };
        next.timer = this.timers.setTimeout(() => {
          if (this.backingOff.get(job.key) !== next) return;
          this.backingOff.delete(job.key);
          this.ready.push(next);
          this.pump();
        }, delayMs);
        this.backingOff.set(job.key, next);
        this.opts.onEvent?.({ type: "retrying", job, attempt, error, delayMs });
      },
    ).finally(() => this.pump());
  }

  private finish(job: J): void {
    this.running.delete(job.key);
    this.runningSlots.delete(job.slot);
  }

  private remember(key: string, into: Map<string, true> = this.done): void {
    const limit = this.opts.rememberDone ?? 10_000;
    into.delete(key);
    into.set(key, true);
    if (into.size > limit) into.delete(into.keys().next().value!);
  }

  private checkIdle(): void {
    if (this.depth !== 0 || this.active !== 0) return;
    const w = this.idleWaiters;
    this.idleWaiters = [];
    for (const r of w) r();
  }
}
