// One deadline per review, from the request's arrival to the answer. The handler's own
// work (analysing a pod of 50,000 containers takes most of a second) runs in slices
// under it: between slices it looks at the clock and lets other reviews and the
// sockets run, so that a large review neither outlives its deadline nor holds the
// event loop while small ones wait.
import { setImmediate as nextTurn } from "node:timers/promises";
import { ApparateError } from "../errors.js";

/** The review's time ran out before its answer was ready: answered "allowed", unchanged. */
export class DeadlineSpentError extends ApparateError {}

/** How long the handler works before it checks the clock and yields (ms). */
export const SLICE_MS = 4;

export class ReviewBudget {
  readonly deadlineAt: number;
  private sliceStart: number;
  /** Time spent working (not waiting), ms: what planning the rest is estimated from. */
  private worked = 0;

  constructor(readonly deadlineMs: number, readonly startedAt: number = performance.now(), private readonly clock: () => number = () => performance.now()) {
    this.deadlineAt = startedAt + deadlineMs;
    this.sliceStart = this.clock();
  }

  now(): number { return this.clock(); }

  /** ms left before the deadline (negative once past it). */
  remaining(): number { return this.deadlineAt - this.clock(); }

  get workedMs(): number { return this.worked + (this.clock() - this.sliceStart); }

  /** Throws when fewer than `reserveMs` are left. `stage` names what could not be done in time. */
  check(stage: string, reserveMs = 0): void {
    const left = this.remaining();
    if (left < reserveMs) {
      throw new DeadlineSpentError("deadline-spent", `pod left unchanged: the review's deadline (admission.deadlineMs ${this.deadlineMs} ms) ran out while ${stage}`, { stage, remainingMs: Math.round(left) });
    }
  }

  /**
   * Called often in a long loop: after SLICE_MS of work, checks the deadline and yields
   * to the event loop (other requests' I/O and timers run), then starts a new slice.
   */
  async tick(stage: string, reserveMs = 0): Promise<void> {
    const t = this.clock();
    if (t - this.sliceStart < SLICE_MS) return;
    this.worked += t - this.sliceStart;
    this.check(stage, reserveMs);
    await nextTurn();
    this.sliceStart = this.clock();
    this.check(stage, reserveMs);
  }

  /** Marks the start of a stretch of work after a wait (lookups), so the wait is not counted as work. */
  resume(): void { this.sliceStart = this.clock(); }

  /** Marks the end of a stretch of work before a wait. */
  pauseWork(): void { this.worked += this.clock() - this.sliceStart; this.sliceStart = this.clock(); }
}
