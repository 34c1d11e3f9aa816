// The work queue's decisions: bounded concurrency and queue, de-duplication by digest,
// one conversion per tag at a time, supersession, retries with capped backoff.
import { describe, expect, it } from "vitest";
import { backoffDelay, PermanentFailure, type QueueEvent, type QueueJob, type Timers, WorkQueue } from "../../src/converter/queue.js";

/** Manual clock: timers fire only when the test advances time. */
function fakeTimers() {
  let now = 0;
  let seq = 0;
  const pending = new Map<number, { at: number; fn: () => void }>();
  const timers: Timers = {
    now: () => now,
    setTimeout: (fn, ms) => { const id = ++seq; pending.set(id, { at: now + ms, fn }); return id; },
    clearTimeout: (h) => { pending.delete(h as number); },
  };
  const advance = async (ms: number) => {
    now += ms;
    for (const [id, t] of [...pending].sort((a, b) => a[1].at - b[1].at)) {
      if (t.at <= now) { pending.delete(id); t.fn(); }
    }
    await flush();
  };
  return { timers, advance, pending };
}
const flush = () => new Promise((r) => setTimeout(r, 0));

const job = (tag: string, digest = "d1"): QueueJob => ({ key: `r/app:${tag}@${digest}`, slot: `r/app:${tag}` });

/** A run function whose calls the test completes by hand. */
function controllable() {
  const calls: Array<{ job: QueueJob; attempt: number; resolve: () => void; reject: (e: unknown) => void }> = [];
  let live = 0;
  let maxLive = 0;
  const run = (j: QueueJob, attempt: number) => new Promise<{ result: string }>((res, rej) => {
    live++; maxLive = Math.max(maxLive, live);
    calls.push({ job: j, attempt, resolve: () => { live--; res({ result: "converted" }); }, reject: (e) => { live--; rej(e); } });
  });
  return { run, calls, maxLive: () => maxLive };
}

function queue(over: Partial<ConstructorParameters<typeof WorkQueue<QueueJob>>[0]> = {}) {
  const c = controllable();
  const t = fakeTimers();
  const events: QueueEvent<QueueJob>[] = [];
  const q = new WorkQueue<QueueJob>({ concurrency: 2, maxQueued: 10, maxAttempts: 3, initialBackoffMs: 100, maxBackoffMs: 1000, run: c.run, timers: t.timers, random: () => 0.5, onEvent: (e) => events.push(e), ...over });
  return { q, c, t, events };
}

describe("WorkQueue", () => {
  it("runs at most `concurrency` jobs at once; the rest wait in order", async () => {
    const { q, c } = queue();
    for (const tag of ["a", "b", "c", "d", "e"]) expect(q.submit(job(tag)).outcome).toBe("queued");
    await flush();
    expect(c.calls.map((x) => x.job.slot)).toEqual(["r/app:a", "r/app:b"]);
    expect(q.depth).toBe(3);
    while (c.calls.some((x) => x)) {
      const next = c.calls.shift()!;
      next.resolve();
      await flush();
      if (c.calls.length === 0) break;
    }
    await q.idle();
    expect(c.maxLive()).toBe(2);
  });

  it("the same digest twice is one conversion: while queued, while running, and after success (replays)", async () => {
    const { q, c } = queue();
    expect(q.submit(job("a")).outcome).toBe("queued");
    expect(q.submit(job("a"))).toEqual({ outcome: "duplicate", reason: "already queued or running" });
    await flush();
    c.calls[0]!.resolve();
    await q.idle();
    expect(q.submit(job("a"))).toEqual({ outcome: "duplicate", reason: "converted recently" });
    expect(c.calls).toHaveLength(1);
    // Negative control: another digest of the same tag is new work.
    expect(q.submit(job("a", "d2")).outcome).toBe("queued");
  });

  it("a bounded queue: past maxQueued waiting jobs the answer is full", async () => {
    const { q } = queue({ concurrency: 1, maxQueued: 2 });
    expect(q.submit(job("a")).outcome).toBe("queued"); // runs
    await flush();
    expect(q.submit(job("b")).outcome).toBe("queued");
    expect(q.submit(job("c")).outcome).toBe("queued");
    expect(q.submit(job("d")).outcome).toBe("full");
    expect(q.depth).toBe(2);
  });

  it("a newer digest replaces a queued older one of the same tag", async () => {
    const { q, c, events } = queue({ concurrency: 1 });
    q.submit(job("busy"));
    expect(q.submit(job("a", "d1")).outcome).toBe("queued");
    expect(q.submit(job("a", "d2"))).toEqual({ outcome: "queued", superseded: "r/app:a@d1" });
    expect(q.depth).toBe(1);
    expect(events.filter((e) => e.type === "superseded")).toHaveLength(1);
    await flush();
    c.calls[0]!.resolve();
    await flush();
    expect(c.calls[1]!.job.key).toBe("r/app:a@d2");
  });

  it("one tag is never converted twice at once: a new digest waits for the running one", async () => {
    const { q, c } = queue({ concurrency: 4 });
    q.submit(job("a", "d1"));
    await flush();
    q.submit(job("a", "d2"));
    q.submit(job("b"));
    await flush();
    expect(c.calls.map((x) => x.job.key)).toEqual(["r/app:a@d1", "r/app:b@d1"]);
    c.calls[0]!.resolve();
    await flush();
    expect(c.calls.map((x) => x.job.key)).toContain("r/app:a@d2");
  });

  it("retries with doubling backoff, then succeeds", async () => {
    const { q, c, t, events } = queue();
    q.submit(job("a"));
    await flush();
    c.calls[0]!.reject(new Error("registry 503"));
    await flush();
    expect(events.find((e) => e.type === "retrying")).toMatchObject({ attempt: 1, delayMs: 100 });
    await t.advance(99);
    expect(c.calls).toHaveLength(1);
    await t.advance(1);
    expect(c.calls[1]!.attempt).toBe(2);
    c.calls[1]!.reject(new Error("again"));
    await flush();
    expect(events.filter((e) => e.type === "retrying").at(-1)).toMatchObject({ attempt: 2, delayMs: 200 });
    await t.advance(200);
    c.calls[2]!.resolve();
    await q.idle();
    expect(events.at(-1)).toMatchObject({ type: "succeeded", attempt: 3 });
  });

  it("gives up after maxAttempts, and at once on a PermanentFailure", async () => {
    const { q, c, t, events } = queue({ maxAttempts: 2 });
    q.submit(job("a"));
    q.submit(job("b"));
    await flush();
    c.calls[1]!.reject(new PermanentFailure("source deleted"));
    c.calls[0]!.reject(new Error("transient"));
    await flush();
    await t.advance(100);
    c.calls[2]!.reject(new Error("transient"));
    await q.idle();
    expect(events.filter((e) => e.type === "failed").map((e) => [e.job.slot, e.attempt])).toEqual([["r/app:b", 1], ["r/app:a", 2]]);
  });

  it("a key that failed for good is not run again on a replay or rescan; one that ran out of attempts is (negative control)", async () => {
    const { q, c, t } = queue({ maxAttempts: 1 });
    q.submit(job("a"));
    q.submit(job("b"));
    await flush();
    c.calls[0]!.reject(new PermanentFailure("layer 1/1: entry \"x\" is a sparse file"));
    c.calls[1]!.reject(new Error("registry answered 503"));
    await q.idle();
    expect(q.submit(job("a"))).toEqual({ outcome: "duplicate", reason: "failed for good recently (retrying cannot help)" });
    expect(q.submit(job("b"))).toEqual({ outcome: "queued" });
    // Another digest of the same tag is new work.
    expect(q.submit(job("a", "d2"))).toEqual({ outcome: "queued" });
    await t.advance(0);
    expect(c.calls.map((x) => x.job.key)).toEqual(["r/app:a@d1", "r/app:b@d1", "r/app:b@d1", "r/app:a@d2"]);
  });

  it.each([
    [2, 0.5, 100], [3, 0.5, 200], [4, 0.5, 400], [10, 0.5, 1000], [2, 0, 80], [2, 1, 120],
  ])("backoffDelay(attempt %i, random %d) = %i ms (initial 100, cap 1000, ±20 %%)", (next, r, ms) => {
    expect(backoffDelay(next, 100, 1000, r)).toBe(ms);
  });
});

import { compileConfig } from "../../src/config/config.js";
describe("converter configuration", () => {
  it("defaults: in-process, 2 at once, hourly rescans", () => {
    expect(compileConfig({}).converter).toMatchObject({ mode: "inprocess", concurrency: 2, maxQueued: 1000, rescanIntervalSeconds: 3600, sources: [], scan: [] });
  });
  it.each([
    [{ mode: "cron" }, "converter.mode"],
    [{ sources: [{ name: "Bad Name", kind: "distribution", secretFile: "/s" }] }, "converter.sources.0.name"],
    [{ sources: [{ name: "x", kind: "quay", secretFile: "/s" }] }, "converter.sources.0.kind"],
    [{ sources: [{ name: "x", kind: "harbor" }] }, "secretFile"],
    [{ concurrency: 0 }, "converter.concurrency"],
  ])("rejects %j naming %s", (converter, key) => {
    expect(() => compileConfig({ converter })).toThrow(key);
  });
});
