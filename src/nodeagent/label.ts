// The node label cloud.tencent.com/apparate=true: set only while the snapshotter
// is healthy, removed after `threshold` failed checks in a row and at uninstall,
// with an Event on the node at each transition.
import { CoreV1Api, PatchStrategy, setHeaderOptions, type KubeConfig } from "@kubernetes/client-node";
import type { Logger } from "../observability/logger.js";

export const NODE_CONDITION = "ApparateLazyLoading";

export type GateAction = "add" | "remove" | undefined;

/** Pure: what a health observation means for the label. */
export class LabelGate {
  private failures = 0;
  constructor(private readonly threshold: number, public labelled = false) {}
  /** `immediate`: no grace period (CRI does not use the snapshotter at all). */
  observe(healthy: boolean, immediate = false): GateAction {
    if (healthy) {
      this.failures = 0;
      if (!this.labelled) { this.labelled = true; return "add"; }
      return undefined;
    }
    this.failures++;
    if (this.labelled && (immediate || this.failures >= this.threshold)) { this.labelled = false; return "remove"; }
    return undefined;
  }
}

export class NodeLabeler {
  private readonly core: CoreV1Api;
  constructor(kc: KubeConfig, private readonly node: string, private readonly key: string, private readonly value: string, private readonly logger: Logger) {
    this.core = kc.makeApiClient(CoreV1Api);
  }

  async isLabelled(): Promise<boolean> {
    const n = await this.core.readNode({ name: this.node });
    return n.metadata?.labels?.[this.key] === this.value;
  }

  /**
   * A Node condition (type ApparateLazyLoading) saying why lazy loading is or is not
   * there; strategic merge keyed by type, so the kubelet's own conditions stay.
   */
  async condition(ok: boolean, reason: string, message: string): Promise<void> {
    const now = new Date().toISOString();
    await this.core.patchNodeStatus({
      name: this.node,
      body: { status: { conditions: [{ type: NODE_CONDITION, status: ok ? "True" : "False", reason, message, lastHeartbeatTime: now, lastTransitionTime: now }] } },
    }, setHeaderOptions("Content-Type", PatchStrategy.StrategicMergePatch));
  }

  async event(reason: string, message: string, type: "Normal" | "Warning"): Promise<void> {
    const now = new Date();
    await this.core.createNamespacedEvent({
      namespace: "default",
      body: {
        metadata: { generateName: `${this.node}.apparate-`, namespace: "default" },
        involvedObject: { apiVersion: "v1", kind: "Node", name: this.node, uid: this.node },
        reason, message, type,
        source: { component: "apparate-node-agent", host: this.node },
        firstTimestamp: now, lastTimestamp: now, count: 1,
      },
    });
  }

  async set(on: boolean, reason: string): Promise<void> {
    // JSON merge patch: null removes the key.
    await this.core.patchNode({ name: this.node, body: { metadata: { labels: { [this.key]: on ? this.value : null } } } }, setHeaderOptions("Content-Type", PatchStrategy.MergePatch));
    this.logger.info({ node: this.node, label: `${this.key}=${this.value}`, on, reason }, "node label changed");
    await this.event(
      on ? "ApparateReady" : "ApparateNotReady",
      on ? `lazy loading ready: ${reason}; label ${this.key}=${this.value} set` : `lazy loading unavailable: ${reason}; label ${this.key} removed`,
      on ? "Normal" : "Warning",
    ).catch((err: Error) => this.logger.warn({ err }, "cannot emit node event"));
  }
}
