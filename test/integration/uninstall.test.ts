// `apparate cleanup`, the chart's uninstall hooks, against the Kubernetes API stand-in:
// the real client-node calls, with the test playing the DaemonSet controller and the
// kubelets (there is no controller-manager here). What issue 14 found: a status of 0/0
// read before the controller fills it in was taken for success, and one NotReady node
// held the uninstall until helm's hook timeout.
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { Writable } from "node:stream";
import { cleanup } from "../../src/ops.js";
import { KubeApiStandIn } from "../support/kube-api-standin.js";

const NS = "apparate-system";
const OPT_IN = { "apparate.io/node": "enabled" };

function sink() {
  let text = "";
  const stream = new Writable({ write(chunk, _enc, cb) { text += chunk.toString(); cb(); } });
  return { stream, text: () => text };
}

function node(name: string, ready: boolean) {
  return { metadata: { name, labels: { ...OPT_IN, "kubernetes.io/os": "linux" } }, status: { conditions: [{ type: "Ready", status: ready ? "True" : "Unknown" }] } };
}

function daemonSet(name: string, component: string) {
  return {
    metadata: { name, namespace: NS },
    spec: {
      selector: { matchLabels: { "app.kubernetes.io/component": component } },
      template: { metadata: { labels: { "app.kubernetes.io/component": component } }, spec: { nodeSelector: { "kubernetes.io/os": "linux", ...OPT_IN }, containers: [{ name: "c", image: "x" }] } },
    },
  };
}

function pod(name: string, component: string, nodeName: string, ready: boolean) {
  return { metadata: { name, namespace: NS, labels: { "app.kubernetes.io/component": component } }, spec: { nodeName, containers: [{ name: "c", image: "x" }] }, status: { conditions: [{ type: "Ready", status: ready ? "True" : "False" }] } };
}

describe("apparate cleanup (uninstall hooks) against the API stand-in", () => {
  let api: KubeApiStandIn;
  let timers: NodeJS.Timeout[] = [];
  const later = (ms: number, f: () => void) => { timers.push(setTimeout(f, ms)); };

  beforeEach(async () => {
    api = new KubeApiStandIn();
    await api.start();
    for (const n of [node("node-1", true), node("node-2", true), node("node-3", false)]) api.put("nodes", n);
  });
  afterEach(async () => {
    for (const t of timers) clearTimeout(t);
    timers = [];
    await api.stop();
  });

  const run = async (args: string[]) => {
    const out = sink();
    const err = sink();
    const t0 = Date.now();
    const code = await cleanup(args, { kc: api.kubeConfig(), out: out.stream, err: err.stream, pollMs: 50 });
    return { code, out: out.text(), err: err.text(), ms: Date.now() - t0 };
  };

  it("a DaemonSet whose status the controller has not filled in (0/0) is not success: the wait runs out and fails", async () => {
    api.put("daemonsets", daemonSet("rel-apparate-node-cleanup", "node-cleanup"), "apps");
    const r = await run(["--wait-daemonset", `${NS}/rel-apparate-node-cleanup`, "--timeout-seconds", "1"]);
    expect(r.code).toBe(1);
    expect(r.out).toContain("waiting for the DaemonSet controller to count the nodes");
    expect(r.err).toMatch(/timed out after 1s waiting for the nodes to be restored/);
  });

  it("a status of an older generation is not success either; once the controller observes it and pods are Ready, it is", async () => {
    api.put("daemonsets", { ...daemonSet("rel-apparate-node-cleanup", "node-cleanup"), status: { observedGeneration: 0, desiredNumberScheduled: 0, numberReady: 0 } }, "apps");
    later(300, () => {
      const ds = api.get("daemonsets", "rel-apparate-node-cleanup", NS, "apps")!;
      api.put("daemonsets", { ...ds, status: { observedGeneration: ds.metadata.generation, desiredNumberScheduled: 2, numberReady: 0 } }, "apps");
      api.put("pods", pod("nc-1", "node-cleanup", "node-1", false));
      api.put("pods", pod("nc-2", "node-cleanup", "node-2", false));
    });
    later(600, () => { api.put("pods", pod("nc-1", "node-cleanup", "node-1", true)); api.put("pods", pod("nc-2", "node-cleanup", "node-2", true)); });
    const r = await run(["--wait-daemonset", `${NS}/rel-apparate-node-cleanup`, "--timeout-seconds", "10"]);
    expect(r.code).toBe(0);
    expect(r.out).toContain("waiting for the DaemonSet controller");
    expect(r.out).toContain("nodes restored: 2/2");
    expect(r.ms).toBeGreaterThanOrEqual(550);
  });

  it("a NotReady node is skipped and named, and the wait ends as soon as every Ready node is restored", async () => {
    const ds = api.put("daemonsets", daemonSet("rel-apparate-node-cleanup", "node-cleanup"), "apps");
    api.put("daemonsets", { ...ds, status: { observedGeneration: ds.metadata.generation, desiredNumberScheduled: 3, numberReady: 2 } }, "apps");
    api.put("pods", pod("nc-1", "node-cleanup", "node-1", true));
    api.put("pods", pod("nc-2", "node-cleanup", "node-2", true));
    api.put("pods", pod("nc-3", "node-cleanup", "node-3", false)); // its kubelet is gone
    const r = await run(["--wait-daemonset", `${NS}/rel-apparate-node-cleanup`, "--timeout-seconds", "10"]);
    expect(r.code).toBe(0);
    expect(r.out).toContain("nodes restored: 2/2; NotReady nodes skipped: node-3");
    expect(r.err).toMatch(/not restored \(NotReady\): node-3/);
    expect(r.ms).toBeLessThan(3000);
  });

  it("negative control: a Ready node whose cleanup pod never gets Ready keeps the wait going until the timeout, named", async () => {
    const ds = api.put("daemonsets", daemonSet("rel-apparate-node-cleanup", "node-cleanup"), "apps");
    api.put("daemonsets", { ...ds, status: { observedGeneration: ds.metadata.generation, desiredNumberScheduled: 3, numberReady: 1 } }, "apps");
    api.put("pods", pod("nc-1", "node-cleanup", "node-1", true));
    api.put("pods", pod("nc-2", "node-cleanup", "node-2", false));
    const r = await run(["--wait-daemonset", `${NS}/rel-apparate-node-cleanup`, "--timeout-seconds", "1"]);
    expect(r.code).toBe(1);
    expect(r.err).toContain("waiting for node-2");
  });

  it("the agent is moved off every node first and the hook waits for its pods to go, skipping the NotReady node", async () => {
    api.put("daemonsets", daemonSet("rel-apparate-node", "node-agent"), "apps");
    for (const n of ["node-1", "node-2", "node-3"]) api.put("pods", pod(`agent-${n}`, "node-agent", n, true));
    api.put("mutatingwebhookconfigurations", { metadata: { name: "rel-apparate" }, webhooks: [] }, "admissionregistration.k8s.io");
    // The controller: once the nodeSelector matches no node, the kubelets of Ready nodes stop the pods.
    const controller = setInterval(() => {
      const d = api.get("daemonsets", "rel-apparate-node", NS, "apps");
      if (d?.spec.template.spec.nodeSelector["apparate.io/uninstalling"] === "true") {
        api.remove("pods", "agent-node-1", NS);
        later(150, () => api.remove("pods", "agent-node-2", NS));
      }
    }, 100);
    timers.push(controller);
    const r = await run(["--webhook-config", "rel-apparate", "--stop-daemonset", `${NS}/rel-apparate-node`, "--timeout-seconds", "10"]);
    clearInterval(controller);
    expect(r.code).toBe(0);
    expect(api.get("mutatingwebhookconfigurations", "rel-apparate", undefined, "admissionregistration.k8s.io")).toBeUndefined();
    const d = api.get("daemonsets", "rel-apparate-node", NS, "apps")!;
    expect(d.spec.template.spec.nodeSelector).toEqual({ "kubernetes.io/os": "linux", ...OPT_IN, "apparate.io/uninstalling": "true" });
    expect(d.metadata.generation).toBe(2);
    expect(r.out).toMatch(/deleted MutatingWebhookConfiguration rel-apparate[\s\S]*moved off every node[\s\S]*node agent stopped; NotReady nodes skipped: node-3/);
    // The order: the webhook configuration goes before the agent is touched.
    const del = api.requests.indexOf("DELETE /apis/admissionregistration.k8s.io/v1/mutatingwebhookconfigurations/rel-apparate");
    const patch = api.requests.indexOf(`PATCH /apis/apps/v1/namespaces/${NS}/daemonsets/rel-apparate-node`);
    expect(del).toBeGreaterThanOrEqual(0);
    expect(patch).toBeGreaterThan(del);
  });

  it("negative control: an agent pod that stays on a Ready node fails the hook after the timeout, naming the node", async () => {
    api.put("daemonsets", daemonSet("rel-apparate-node", "node-agent"), "apps");
    api.put("pods", pod("agent-node-1", "node-agent", "node-1", true));
    const r = await run(["--stop-daemonset", `${NS}/rel-apparate-node`, "--timeout-seconds", "1"]);
    expect(r.code).toBe(1);
    expect(r.err).toContain("waiting for the node agent to leave 1 node(s): node-1");
  });

  it("already gone is fine: no webhook configuration, no agent DaemonSet", async () => {
    const r = await run(["--webhook-config", "rel-apparate", "--stop-daemonset", `${NS}/rel-apparate-node`, "--timeout-seconds", "1"]);
    expect(r.code).toBe(0);
    expect(r.out).toContain("already gone");
  });

  it("a malformed reference fails with the flag named", async () => {
    await expect(run(["--wait-daemonset", "just-a-name"])).rejects.toThrow(/--wait-daemonset: expected NAMESPACE\/NAME, got "just-a-name"/);
  });
});
