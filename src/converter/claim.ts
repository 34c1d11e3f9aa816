// Several converter replicas never convert the same digest at once: before converting,
// a replica creates a Lease named after the source digest in its namespace. AlreadyExists
// means another replica holds it (the work is theirs); a Lease past its duration was left
// by a replica that died and is taken over. The Lease is deleted when the work ends.
import { createHash } from "node:crypto";
import { CoordinationV1Api, type KubeConfig, type V1Lease } from "@kubernetes/client-node";
import { isAlreadyExists, isNotFound } from "../kube/status.js";

export interface Claims {
  /** True when this replica may convert the key now; release() when done. */
  claim(key: string): Promise<boolean>;
  release(key: string): Promise<void>;
}

export function leaseName(key: string): string {
  return `apparate-conversion-${createHash("sha256").update(key).digest("hex").slice(0, 32)}`;
}

export class LeaseClaims implements Claims {
  private readonly api: CoordinationV1Api;

  constructor(kc: KubeConfig, private readonly namespace: string, private readonly holder: string, private readonly durationSeconds = 1800, private readonly now = () => new Date()) {
    this.api = kc.makeApiClient(CoordinationV1Api);
  }

  private body(key: string): V1Lease {
    const t = this.now();
    return {
      metadata: { name: leaseName(key), namespace: this.namespace, annotations: { "apparate.io/conversion": key.slice(0, 1000) } },
      spec: { holderIdentity: this.holder, leaseDurationSeconds: this.durationSeconds, acquireTime: t, renewTime: t },
    };
  }

  async claim(key: string): Promise<boolean> {
    const namespace = this.namespace;
    try {
      await this.api.createNamespacedLease({ namespace, body: this.body(key) });
      return true;
    } catch (err) {
      if (!isAlreadyExists(err)) throw err;
    }
    let held: V1Lease;
    try { held = await this.api.readNamespacedLease({ name: leaseName(key), namespace }); } catch (err) {
      if (isNotFound(err)) return this.claim(key); // released meanwhile
      throw err;
    }
    const renew = held.spec?.renewTime ? new Date(held.spec.renewTime).getTime() : 0;
    const expired = renew + (held.spec?.leaseDurationSeconds ?? this.durationSeconds) * 1000 < this.now().getTime();
    if (!expired) return false;
    // Left by a replica that died: take it over once (a racing replica loses the create).
    try { await this.api.deleteNamespacedLease({ name: leaseName(key), namespace }); } catch (err) { if (!isNotFound(err)) throw err; }
    try {
      await this.api.createNamespacedLease({ namespace, body: this.body(key) });
      return true;
    } catch (err) {
      if (isAlreadyExists(err)) return false;
      throw err;
    }
  }

  async release(key: string): Promise<void> {
    try { await this.api.deleteNamespacedLease({ name: leaseName(key), namespace: this.namespace }); } catch (err) { if (!isNotFound(err)) throw err; }
  }
}
