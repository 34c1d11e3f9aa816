// Fairness on the admission port: no single client address may hold the server's
// connections or its CPU. Every in-cluster pod can reach the port (unless the chart's
// NetworkPolicy says otherwise), so one hostile client holding 1,000 idle connections
// once filled admission.maxConnections and every API server review failed with
// ECONNRESET. Limits are per source address; the API server's own connections are
// never refused because another address is at its limit.

/** Counts per client address; an address with nothing open is forgotten (bounded by the live connections). */
export class SourceLimits {
  private readonly connections = new Map<string, number>();
  private readonly reviews = new Map<string, number>();

  constructor(readonly maxConnectionsPerSource: number, readonly maxReviewsPerSource: number) {}

  /** A new connection from `address`: false (refuse it) when that address is at its limit. */
  openConnection(address: string): boolean {
    return take(this.connections, address, this.maxConnectionsPerSource);
  }

  closeConnection(address: string): void { give(this.connections, address); }

  /** A review from `address` may be worked on: false when that address has too many in flight. */
  beginReview(address: string): boolean {
    return take(this.reviews, address, this.maxReviewsPerSource);
  }

  endReview(address: string): void { give(this.reviews, address); }

  get sources(): number { return this.connections.size; }
}

function take(m: Map<string, number>, k: string, max: number): boolean {
  const n = m.get(k) ?? 0;
  if (n >= max) return false;
  m.set(k, n + 1);
  return true;
}

function give(m: Map<string, number>, k: string): void {
  const n = (m.get(k) ?? 0) - 1;
  if (n <= 0) m.delete(k); else m.set(k, n);
}

/**
 * One large review worked on at a time, waiting ones in arrival order; small reviews
 * never wait here. A large review's synchronous stretches (planning 40,000 containers)
 * then delay a small one by one stretch at most, not by one per flooding client.
 */
export class LargeReviewLane {
  private busy = false;
  private readonly waiting: Array<() => void> = [];

  /** Resolves a release function when the lane is free, or undefined at `deadlineAt` (performance.now()). */
  acquire(deadlineAt: number): Promise<(() => void) | undefined> {
    if (!this.busy) { this.busy = true; return Promise.resolve(this.release()); }
    return new Promise((resolve) => {
      let timer: NodeJS.Timeout | undefined;
      const go = () => { if (timer) clearTimeout(timer); resolve(this.release()); };
      this.waiting.push(go);
      timer = setTimeout(() => {
        const i = this.waiting.indexOf(go);
        if (i >= 0) { this.waiting.splice(i, 1); resolve(undefined); }
      }, Math.max(0, deadlineAt - performance.now()));
    });
  }

  private release(): () => void {
    let done = false;
    return () => {
      if (done) return;
      done = true;
      const next = this.waiting.shift();
      if (next) next(); else this.busy = false;
    };
  }
}

/** A review body this large (bytes) goes through the large-review lane. */
export const LARGE_REVIEW_BYTES = 256 * 1024;

/**
 * Per-source limits from admission.maxConnections: one address may hold a quarter of
 * the connections (the API server needs one per concurrent review over HTTP/1.1) and
 * have 32 reviews in flight.
 */
export function sourceLimitsFor(maxConnections: number): SourceLimits {
  return new SourceLimits(Math.max(1, Math.floor(maxConnections / 4)), 32);
}
