// Whether any node can take a pod that apparate pins to the node label: a watch of
// only the labelled nodes (a label selector, so a large cluster sends little), counted
// as they change. `required` placement swaps no image while the count is 0 (plan.ts).
import { CoreV1Api, type KubeConfig, type V1Node } from "@kubernetes/client-node";
import type { Logger } from "../observability/logger.js";
import type { Metrics } from "../observability/metrics.js";
import { startInformer, type ManagedInformer } from "./informer.js";

/** Ready, schedulable nodes carrying the label; undefined while not known. */
export interface LabelledNodeSource { ready(): number | undefined }

/**
 * A node the scheduler would place a new pod on: its Ready condition is True and it
 * is not cordoned (spec.unschedulable). Taints and capacity are the scheduler's business.
 */
export function takesPods(node: Pick<V1Node, "spec" | "status">): boolean {
  if (node.spec?.unschedulable === true) return false;
  return (node.status?.conditions ?? []).some((c) => c.type === "Ready" && c.status === "True");
}

export function startLabelledNodes(kc: KubeConfig, key: string, value: string, logger: Logger, metrics: Metrics): LabelledNodeSource & { informer: ManagedInformer<V1Node> } {
  const core = kc.makeApiClient(CoreV1Api);
  const labelSelector = `${key}=${value}`;
  const usable = new Set<string>();
  const count = () => metrics.labelledNodesReady.set(usable.size);
  const informer = startInformer<V1Node>(kc, `nodes(${labelSelector})`, "/api/v1/nodes", () => core.listNode({ labelSelector }), logger, {
    labelSelector,
    onSetup: (inf) => {
      const put = (n: V1Node) => {
        const name = n.metadata?.name;
        if (!name) return;
        // The selector is the server's; checked again so that a stale object never counts.
        if (takesPods(n) && n.metadata?.labels?.[key] === value) usable.add(name); else usable.delete(name);
        count();
      };
      inf.on("add", put);
      inf.on("update", put);
      inf.on("delete", (n) => { if (n.metadata?.name) usable.delete(n.metadata.name); count(); });
    },
  });
  return { informer, ready: () => (informer.synced() ? usable.size : undefined) };
}
