// One observer at a time across webhook replicas: a coordination.k8s.io Lease.
// The Lease also carries the observer's watermark (pods Ready up to that instant
// are recorded), so a restarted or newly elected observer neither counts a pod
// again nor needs any write on the pods themselves. Hand-written: client-node has
// no leader election, and this one needs to carry the watermark in the same write.
import { CoordinationV1Api, type KubeConfig, type V1Lease } from "@kubernetes/client-node";
import { isConflict, isNotFound } from "../kube/status.js";

export const ANNOTATION_OBSERVED_UNTIL = "apparate.io/observed-until";

export type LeaseDecision = "renew" | "take" | "wait";

/** What a candidate may do with the Lease as it is now (pure). */
export function leaseDecision(lease: V1Lease, identity: string, now: number): LeaseDecision {
  const spec = lease.spec ?? {};
  if (spec.holderIdentity === identity) return "renew";
  if (!spec.holderIdentity) return "take";
  const renewed = spec.renewTime ? new Date(spec.renewTime).getTime() : Number.NaN;
  const duration = (spec.leaseDurationSeconds ?? 15) * 1000;
  return !Number.isFinite(renewed) || renewed + duration < now ? "take" : "wait";
}

/** The watermark a Lease carries (ms since epoch); undefined when it carries none. */
export function watermarkOf(lease: V1Lease | undefined): number | undefined {
  const raw = lease?.metadata?.annotations?.[ANNOTATION_OBSERVED_UNTIL];
  if (!raw) return undefined;
  const t = Date.parse(raw);
  return Number.isFinite(t) ? t : undefined;
}

export interface LeaseOptions { namespace: string; name: string; identity: string; durationSeconds: number }

export class ObserverLease {
  private readonly api: CoordinationV1Api;
  private lease?: V1Lease;
  private held = false;

  constructor(kc: KubeConfig, readonly opts: LeaseOptions, private readonly now: () => number = Date.now) {
    this.api = kc.makeApiClient(CoordinationV1Api);
  }

  holds(): boolean { return this.held; }
  holder(): string | undefined { return this.lease?.spec?.holderIdentity; }
  watermark(): number | undefined { return watermarkOf(this.lease); }

  /**
   * Acquires or renews; with `watermark`, writes it in the same conditional update,
   * so a replica that lost the Lease can never move the watermark. Returns whether
   * this replica holds the Lease afterwards. Network errors count as not holding.
   */
  async tick(watermark?: number): Promise<boolean> {
    const { namespace, name, identity, durationSeconds } = this.opts;
    const now = new Date(this.now());
    try {
      let current: V1Lease | undefined;
      try {
        current = await this.api.readNamespacedLease({ name, namespace });
      } catch (err) {
        if (!isNotFound(err)) throw err;
      }
      if (!current) {
        // First observer ever: starts counting from now, not from the cluster's history.
        const body: V1Lease = {
          metadata: { name, namespace, annotations: { [ANNOTATION_OBSERVED_UNTIL]: new Date(watermark ?? now.getTime()).toISOString() } },
          spec: { holderIdentity: identity, leaseDurationSeconds: durationSeconds, acquireTime: now, renewTime: now, leaseTransitions: 0 },
        };
        this.lease = await this.api.createNamespacedLease({ namespace, body });
        this.held = true;
        return true;
      }
      this.lease = current;
      const decision = leaseDecision(current, identity, now.getTime());
      if (decision === "wait") { this.held = false; return false; }
      const next: V1Lease = structuredClone(current);
      next.metadata ??= {};
      next.spec ??= {};
      if (decision === "take") {
        next.spec.holderIdentity = identity;
        next.spec.acquireTime = now;
        next.spec.leaseTransitions = (current.spec?.leaseTransitions ?? 0) + 1;
      }
      next.spec.renewTime = now;
      next.spec.leaseDurationSeconds = durationSeconds;
      if (watermark !== undefined) next.metadata.annotations = { ...(next.metadata.annotations ?? {}), [ANNOTATION_OBSERVED_UNTIL]: new Date(watermark).toISOString() };
      // The resourceVersion read above makes this conditional: a concurrent taker gets 409.
      this.lease = await this.api.replaceNamespacedLease({ name, namespace, body: next });
      this.held = true;
      return true;
    } catch (err) {
      this.held = false;
      if (isConflict(err)) return false;
      throw err;
    }
  }

  /** Gives the Lease up on shutdown so that another replica takes over at once. */
  async release(): Promise<void> {
    if (!this.held || !this.lease) return;
    const next = structuredClone(this.lease);
    if (next.spec) delete next.spec.holderIdentity;
    this.held = false;
    try {
      await this.api.replaceNamespacedLease({ name: this.opts.name, namespace: this.opts.namespace, body: next });
    } catch { /* another replica took it, or the API is gone: it expires by itself */ }
  }
}
