// Fairness on the admission port: no single client address may hold the server's
// connections or its CPU. Every in-cluster pod can reach the port (unless the chart's
// NetworkPolicy says otherwise), so one hostile client holding 1,000 idle connections
// once filled admission.maxConnections and every API server review failed with
// ECONNRESET. Limits are per source address; the API server's own connections are
// never refused because another address is at its limit, and addresses listed in
// admission.trustedSources (the API server's) are exempt from the per-address limits.
import { AddressRanges } from "../registry/network.js";

export interface SourceLimitOptions {
  maxConnectionsPerSource: number;
  maxReviewsPerSource: number;
  /** admission.maxConnections: all untrusted addresses together; trusted ones have a reserve beyond it. */
  maxConnections?: number;
  /** admission.trustedSources: the API server's addresses, exempt from the per-address limits. */
  trusted?: AddressRanges;
}

/** Counts per client address; an address with nothing open is forgotten (bounded by the live connections). */
export class SourceLimits {
  private readonly connections = new Map<string, number>();
  private readonly reviews = new Map<string, number>();
  private untrustedConnections = 0;
  private trustedConnections = 0;
  readonly maxConnectionsPerSource: number;
  readonly maxReviewsPerSource: number;
  private readonly maxConnections: number;
  private readonly trusted: AddressRanges | undefined;

  constructor(opts: SourceLimitOptions) {
    this.maxConnectionsPerSource = opts.maxConnectionsPerSource;
    this.maxReviewsPerSource = opts.maxReviewsPerSource;
    this.maxConnections = opts.maxConnections ?? Number.POSITIVE_INFINITY;
    this.trusted = opts.trusted;
  }

  isTrusted(address: string): boolean { return this.trusted?.has(address) ?? false; }

  /**
   * Connections the server may hold in all (its maxConnections): with trusted sources,
   * twice admission.maxConnections: trusted and untrusted addresses each have
   * maxConnections of their own, so that clients from many addresses filling theirs
   * leave the API server all of its own.
   */
  get serverMaxConnections(): number {
    return this.trusted && this.trusted.size > 0 ? 2 * this.maxConnections : this.maxConnections;
  }

  /** A new connection from `address`: false (refuse it) when that address, or all untrusted ones together, are at their limit. */
  openConnection(address: string): boolean {
    if (this.isTrusted(address)) {
      if (this.trustedConnections >= this.maxConnections) return false;
      this.trustedConnections++;
      return true;
    }
    if (this.untrustedConnections >= this.maxConnections) return false;
    if (!take(this.connections, address, this.maxConnectionsPerSource)) return false;
    this.untrustedConnections++;
    return true;
  }

  closeConnection(address: string): void {
    if (this.isTrusted(address)) { this.trustedConnections--; return; }
    give(this.connections, address);
    this.untrustedConnections--;
  }

  /** A review from `address` may be worked on: false when that address has too many in flight. */
  beginReview(address: string): boolean {
    return this.isTrusted(address) || take(this.reviews, address, this.maxReviewsPerSource);
  }

  endReview(address: string): void { if (!this.isTrusted(address)) give(this.reviews, address); }

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

  private firstUntrusted = 0;

  /**
   * Resolves a release function when the lane is free, or undefined at `deadlineAt`
   * (performance.now()). A trusted source's review (`first`) waits ahead of every
   * untrusted one, so flooding clients never queue in front of the API server.
   */
  acquire(deadlineAt: number, first = false): Promise<(() => void) | undefined> {
    if (!this.busy) { this.busy = true; return Promise.resolve(this.release()); }
    return new Promise((resolve) => {
      let timer: NodeJS.Timeout | undefined;
      const go = () => { if (timer) clearTimeout(timer); resolve(this.release()); };
      if (first) this.waiting.splice(this.firstUntrusted++, 0, go); else this.waiting.push(go);
      timer = setTimeout(() => {
        const i = this.waiting.indexOf(go);
        if (i >= 0) { this.waiting.splice(i, 1); if (i < this.firstUntrusted) this.firstUntrusted--; resolve(undefined); }
      }, Math.max(0, deadlineAt - performance.now()));
    });
  }

  private release(): () => void {
    let done = false;
    return () => {
      if (done) return;
      done = true;
      const next = this.waiting.shift();
      if (this.firstUntrusted > 0) this.firstUntrusted--;
      if (next) next(); else this.busy = false;
    };
  }
}

/** The limits of admission.* (maxConnectionsPerSource is always set once the config is compiled). */
export function sourceLimitsFor(a: { maxConnections: number; maxConnectionsPerSource: number; maxReviewsPerSource: number; trustedSources: readonly string[] }): SourceLimits {
  return new SourceLimits({
    maxConnections: a.maxConnections, maxConnectionsPerSource: a.maxConnectionsPerSource,
    maxReviewsPerSource: a.maxReviewsPerSource, trusted: new AddressRanges(a.trustedSources),
  });
}
