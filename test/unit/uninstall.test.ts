// The uninstall hooks' decisions (src/uninstall.ts), as tables: when the node agent has
// left, and when the node-cleanup DaemonSet has restored the nodes.
import { describe, expect, it } from "vitest";
import type { V1DaemonSet, V1Node, V1Pod } from "@kubernetes/client-node";
import { agentStopped, nodesRestored, selectorOf } from "../../src/uninstall.js";

const node = (name: string, ready: "True" | "False" | "Unknown" | undefined): V1Node =>
  ({ metadata: { name }, status: { conditions: ready ? [{ type: "Ready", status: ready }] : [] } }) as V1Node;
const pod = (nodeName: string, ready: boolean): V1Pod =>
  ({ metadata: { name: `p-${nodeName}` }, spec: { ...(nodeName ? { nodeName } : {}), containers: [] }, status: { conditions: [{ type: "Ready", status: ready ? "True" : "False" }] } }) as V1Pod;
const ds = (generation: number, status?: V1DaemonSet["status"]): V1DaemonSet => ({ metadata: { generation }, ...(status ? { status } : {}) }) as V1DaemonSet;
const NODES = [node("a", "True"), node("b", "True"), node("c", "Unknown"), node("d", undefined)];

describe("nodesRestored", () => {
  const cases: Array<[string, V1DaemonSet, V1Pod[], boolean, string[]]> = [
    ["no status at all (controller has not run)", ds(1), [], false, []],
    ["status without observedGeneration", ds(1, { desiredNumberScheduled: 0, numberReady: 0, currentNumberScheduled: 0, numberMisscheduled: 0 }), [], false, []],
    ["observedGeneration older than generation", ds(2, { observedGeneration: 1, desiredNumberScheduled: 0, numberReady: 0, currentNumberScheduled: 0, numberMisscheduled: 0 }), [], false, []],
    ["observed, nothing to do (no opted-in node)", ds(1, { observedGeneration: 1, desiredNumberScheduled: 0, numberReady: 0, currentNumberScheduled: 0, numberMisscheduled: 0 }), [], true, []],
    ["observed, pods not created yet", ds(1, { observedGeneration: 1, desiredNumberScheduled: 2, numberReady: 0, currentNumberScheduled: 0, numberMisscheduled: 0 }), [], false, []],
    ["one of two Ready", ds(1, { observedGeneration: 1, desiredNumberScheduled: 2, numberReady: 1, currentNumberScheduled: 2, numberMisscheduled: 0 }), [pod("a", true), pod("b", false)], false, []],
    ["both Ready", ds(1, { observedGeneration: 1, desiredNumberScheduled: 2, numberReady: 2, currentNumberScheduled: 2, numberMisscheduled: 0 }), [pod("a", true), pod("b", true)], true, []],
    ["NotReady (Unknown) and condition-less nodes skipped", ds(1, { observedGeneration: 1, desiredNumberScheduled: 4, numberReady: 2, currentNumberScheduled: 4, numberMisscheduled: 0 }), [pod("a", true), pod("b", true), pod("c", false), pod("d", false)], true, ["c", "d"]],
    ["a pod the scheduler has not bound yet is waited for, not skipped", ds(1, { observedGeneration: 1, desiredNumberScheduled: 2, numberReady: 1, currentNumberScheduled: 2, numberMisscheduled: 0 }), [pod("a", true), pod("", false)], false, []],
    ["a Ready pod on a NotReady node does not count for a Ready node's", ds(1, { observedGeneration: 1, desiredNumberScheduled: 3, numberReady: 2, currentNumberScheduled: 3, numberMisscheduled: 0 }), [pod("a", true), pod("b", false), pod("c", true)], false, []],
  ];
  it.each(cases)("%s", (_name, d, pods, done, skipped) => {
    const p = nodesRestored(d, pods, NODES);
    expect(p.done).toBe(done);
    expect(p.skipped).toEqual(skipped);
  });
});

describe("agentStopped", () => {
  it.each([
    ["no pods left", [], true, []],
    ["a pod on a Ready node", [pod("a", true)], false, []],
    ["only pods on NotReady nodes (their kubelets cannot stop them)", [pod("c", true), pod("d", true)], true, ["c", "d"]],
    ["an unbound pod runs nowhere", [pod("", false)], true, []],
    ["a pod on a node the API no longer knows (deleted): skipped like a NotReady one", [pod("gone", true)], true, ["gone"]],
  ] as Array<[string, V1Pod[], boolean, string[]]>)("%s", (_name, pods, done, skipped) => {
    const p = agentStopped(pods, NODES);
    expect(p.done).toBe(done);
    expect(p.skipped).toEqual(skipped);
  });
});

it("selectorOf joins labels as a label selector", () => {
  expect(selectorOf({ "app.kubernetes.io/component": "node-agent", "app.kubernetes.io/instance": "rel" })).toBe("app.kubernetes.io/component=node-agent,app.kubernetes.io/instance=rel");
  expect(selectorOf(undefined)).toBe("");
});
