// The decisions of `apparate cleanup` (the chart's pre-delete hooks), apart from the API
// calls: when the node agent has left the nodes, and when the node-cleanup DaemonSet has
// restored them. Nodes that are NotReady cannot run or stop a pod; they are skipped and
// named, so that one lost node does not hold the uninstall until helm's hook timeout.
import type { V1DaemonSet, V1Node, V1Pod } from "@kubernetes/client-node";

export interface Progress {
  done: boolean;
  /** One line for the hook's log. */
  line: string;
  /** NotReady nodes left as they are: restore them later with `apparate node-agent --uninstall`. */
  skipped: string[];
}

export function isNodeReady(node: V1Node): boolean {
  return (node.status?.conditions ?? []).some((c) => c.type === "Ready" && c.status === "True");
}

export function isPodReady(pod: V1Pod): boolean {
  return (pod.status?.conditions ?? []).some((c) => c.type === "Ready" && c.status === "True");
}

/** Whether a pod's node can run or stop it: a NotReady node, or one the API no longer knows, cannot. */
function unreachable(nodes: readonly V1Node[]): { has(name: string): boolean } {
  const ready = new Set(nodes.filter(isNodeReady).map((n) => n.metadata?.name ?? ""));
  // An unbound pod (no nodeName yet) is waiting for the scheduler, not lost.
  return { has: (name) => name !== "" && !ready.has(name) };
}

/** The agent's pods are gone from every Ready node (a NotReady node's kubelet cannot stop its pod). */
export function agentStopped(pods: readonly V1Pod[], nodes: readonly V1Node[]): Progress {
  const notReady = unreachable(nodes);
  // Unbound agent pods run nowhere; the controller deletes them.
  const remaining = pods.filter((p) => p.spec?.nodeName && !notReady.has(p.spec.nodeName));
  const skipped = [...new Set(pods.map((p) => p.spec?.nodeName ?? "").filter((n) => notReady.has(n)))].sort();
  const done = remaining.length === 0;
  const line = done
    ? `node agent stopped${skipped.length ? `; NotReady nodes skipped: ${skipped.join(", ")}` : ""}`
    : `waiting for the node agent to leave ${remaining.length} node(s): ${remaining.map((p) => p.spec?.nodeName ?? p.metadata?.name).join(", ")}`;
  return { done, line, skipped };
}

/**
 * The node-cleanup DaemonSet has restored every node it could: its controller has
 * observed the current generation (before that, a status of 0/0 means "not counted yet",
 * not "nothing to do"), and each of its desired pods on a Ready node is Ready.
 * `nodes`: the cluster's nodes, for their readiness.
 */
export function nodesRestored(ds: V1DaemonSet, pods: readonly V1Pod[], nodes: readonly V1Node[]): Progress {
  const generation = ds.metadata?.generation ?? 0;
  const observed = ds.status?.observedGeneration;
  const desired = ds.status?.desiredNumberScheduled;
  if (observed === undefined || observed < generation || desired === undefined) {
    return { done: false, line: "waiting for the DaemonSet controller to count the nodes", skipped: [] };
  }
  // The controller places a pod on a NotReady node too (and counts it in desired), but
  // no kubelet will run it: those nodes are skipped.
  const notReady = unreachable(nodes);
  const skipped = [...new Set(pods.filter((p) => !isPodReady(p) && notReady.has(p.spec?.nodeName ?? "")).map((p) => p.spec!.nodeName!))].sort();
  const ready = pods.filter((p) => isPodReady(p) && !notReady.has(p.spec?.nodeName ?? "")).length;
  const want = Math.max(0, desired - skipped.length);
  const done = ready >= want;
  const waiting = pods.filter((p) => !isPodReady(p) && !notReady.has(p.spec?.nodeName ?? "")).map((p) => p.spec?.nodeName ?? p.metadata?.name ?? "?");
  const line = `nodes restored: ${ready}/${want}${skipped.length ? `; NotReady nodes skipped: ${skipped.join(", ")}` : ""}${!done && waiting.length ? `; waiting for ${waiting.join(", ")}` : ""}`;
  return { done, line, skipped };
}

/** "k=v,k2=v2" for a label selector from a DaemonSet's nodeSelector or matchLabels. */
export function selectorOf(labels: Record<string, string> | undefined): string {
  return Object.entries(labels ?? {}).map(([k, v]) => `${k}=${v}`).join(",");
}

/** A nodeSelector key no node has: the DaemonSet controller then removes the agent from every node. */
export const UNINSTALLING_LABEL = "apparate.io/uninstalling";
