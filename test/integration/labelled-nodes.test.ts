// The label-selected node watch behind required placement (issue 24 item 3), with the real
// @kubernetes/client-node informer against the Kubernetes API stand-in: only labelled
// nodes are listed and watched, and only Ready, schedulable ones count.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startLabelledNodes } from "../../src/kube/labelled-nodes.js";
import { createLogger } from "../../src/observability/logger.js";
import { Metrics } from "../../src/observability/metrics.js";
import { KubeApiStandIn } from "../support/kube-api-standin.js";
import { waitFor } from "../support/ports.js";

const KEY = "cloud.tencent.com/apparate";
const node = (name: string, labels: Record<string, string>, ready: "True" | "False" = "True", unschedulable = false) => ({
  metadata: { name, labels },
  spec: unschedulable ? { unschedulable: true } : {},
  status: { conditions: [{ type: "MemoryPressure", status: "False" }, { type: "Ready", status: ready }] },
});

describe("labelled node watch against the API stand-in", () => {
  const api = new KubeApiStandIn();
  const metrics = new Metrics();
  let nodes: ReturnType<typeof startLabelledNodes>;

  beforeAll(async () => {
    await api.start();
    api.put("nodes", node("plain-1", { "kubernetes.io/os": "linux" }));
    api.put("nodes", node("refused-1", { [KEY]: "false" }));
    api.put("nodes", node("fast-1", { [KEY]: "true" }, "False"));
    nodes = startLabelledNodes(api.kubeConfig(), KEY, "true", createLogger({ level: "silent" }), metrics);
    await waitFor(async () => nodes.ready() !== undefined, 10_000, "node informer to sync");
  });

  afterAll(async () => { nodes?.informer.stop(); await api.stop(); });

  it("a cluster whose only labelled node is NotReady has 0; unlabelled and other-valued nodes are never listed", async () => {
    expect(nodes.ready()).toBe(0);
    expect(api.requests.some((r) => r.startsWith("GET /api/v1/nodes"))).toBe(true);
    expect(await metrics.registry.getSingleMetricAsString("apparate_labelled_nodes_ready")).toContain("apparate_labelled_nodes_ready 0");
  });

  it("becoming Ready, a new labelled node, cordoning and deletion all move the count", async () => {
    api.put("nodes", node("fast-1", { [KEY]: "true" }));
    await waitFor(async () => nodes.ready() === 1, 5000, "fast-1 Ready");
    api.put("nodes", node("fast-2", { [KEY]: "true" }));
    await waitFor(async () => nodes.ready() === 2, 5000, "fast-2 added");
    api.put("nodes", node("fast-2", { [KEY]: "true" }, "True", true));
    await waitFor(async () => nodes.ready() === 1, 5000, "fast-2 cordoned");
    api.remove("nodes", "fast-1");
    await waitFor(async () => nodes.ready() === 0, 5000, "fast-1 deleted");
    expect(await metrics.registry.getSingleMetricAsString("apparate_labelled_nodes_ready")).toContain("apparate_labelled_nodes_ready 0");
  });
});
