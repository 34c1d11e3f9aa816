// A per-registry circuit breaker: after `threshold` consecutive faults the registry
// is skipped for `cooldownMs`; then one trial request decides (half-open).
export type BreakerState = "closed" | "open" | "half-open";

export class CircuitBreaker {
  private failures = 0;
  private openedAt = 0;
  private trialInFlight = false;
  state: BreakerState = "closed";

  constructor(private readonly threshold: number, private readonly cooldownMs: number, private readonly now: () => number = Date.now) {}

  /** May a request go out now? */
  allow(): boolean {
    if (this.state === "closed") return true;
    if (this.state === "open" && this.now() - this.openedAt >= this.cooldownMs) this.state = "half-open";
    if (this.state === "half-open" && !this.trialInFlight) { this.trialInFlight = true; return true; }
    return false;
  }

  /** A trial request that was never sent: the next request may try. */
  releaseTrial(): void { this.trialInFlight = false; }

  success(): void { this.failures = 0; this.trialInFlight = false; this.state = "closed"; }

  failure(): void {
    this.trialInFlight = false;
    this.failures++;
    if (this.state === "half-open" || this.failures >= this.threshold) { this.state = "open"; this.openedAt = this.now(); }
  }
}
