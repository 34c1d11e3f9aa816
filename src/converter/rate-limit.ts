// Spaces requests to one registry evenly (a token bucket of one): a rescan of a large
// registry must not look like an attack to it, nor eat its API quota.
import { realTimers, type Timers } from "./queue.js";

export class RateLimiter {
  private next = 0;
  private readonly intervalMs: number;

  constructor(perSecond: number, private readonly timers: Timers = realTimers) {
    this.intervalMs = 1000 / perSecond;
  }

  /** Resolves when the caller may send its request. */
  take(): Promise<void> {
    const now = this.timers.now();
    const at = Math.max(now, this.next);
    this.next = at + this.intervalMs;
    if (at <= now) return Promise.resolve();
    return new Promise((r) => { this.timers.setTimeout(r, at - now); });
  }
}
