// Operational subcommands run by the chart: `cleanup` (pre-delete hooks) and
// `selftest` (helm test). The decisions are in uninstall.ts; this file does the calls.
import { parseArgs } from "node:util";
import { AdmissionregistrationV1Api, AppsV1Api, CoreV1Api, type KubeConfig } from "@kubernetes/client-node";
import { Agent, request } from "undici";
import { loadKubeConfig } from "./kube/sources.js";
import { isNotFound } from "./kube/status.js";
import { agentStopped, nodesRestored, type Progress, selectorOf, UNINSTALLING_LABEL } from "./uninstall.js";

export interface CleanupDeps {
  kc?: KubeConfig;
  out?: NodeJS.WritableStream;
  err?: NodeJS.WritableStream;
  /** Between polls; tests make it short. */
  pollMs?: number;
}

function splitRef(ref: string, flag: string): { namespace: string; name: string } {
  const [namespace, name, extra] = ref.split("/");
  if (!namespace || !name || extra !== undefined) throw new Error(`--${flag}: expected NAMESPACE/NAME, got ${JSON.stringify(ref)}`);
  return { namespace, name };
}

/**
 * The uninstall hooks, each step optional: delete the webhook configuration (first, so
 * no pod is sent to a webhook that is going away); move the node agent off every node
 * and wait for its pods to go (--stop-daemonset); wait for the node-cleanup DaemonSet
 * (--wait-daemonset). NotReady nodes are skipped and named. Exit 1 when a wait runs out.
 */
export async function cleanup(argv: string[], deps: CleanupDeps = {}): Promise<number> {
  const { values } = parseArgs({ args: argv, options: {
    "webhook-config": { type: "string" }, "stop-daemonset": { type: "string" }, "wait-daemonset": { type: "string" },
    "timeout-seconds": { type: "string", default: "240" },
  } });
  const out = deps.out ?? process.stdout;
  const err = deps.err ?? process.stderr;
  const timeoutMs = Number(values["timeout-seconds"]) * 1000;
  if (!Number.isFinite(timeoutMs) || timeoutMs <= 0) throw new Error(`--timeout-seconds: expected a positive number, got ${JSON.stringify(values["timeout-seconds"])}`);
  const pollMs = deps.pollMs ?? 3000;
  const kc = deps.kc ?? loadKubeConfig();
  const apps = kc.makeApiClient(AppsV1Api);
  const core = kc.makeApiClient(CoreV1Api);

  if (values["webhook-config"]) {
    try {
      await kc.makeApiClient(AdmissionregistrationV1Api).deleteMutatingWebhookConfiguration({ name: values["webhook-config"] });
      out.write(`deleted MutatingWebhookConfiguration ${values["webhook-config"]}\n`);
    } catch (e) {
      if (!isNotFound(e)) throw e;
    }
  }

  const poll = async (what: string, step: () => Promise<Progress>): Promise<Progress | undefined> => {
    const end = Date.now() + timeoutMs;
    let last = "";
    for (;;) {
      const p = await step();
      if (p.line !== last) { out.write(`${p.line}\n`); last = p.line; }
      if (p.done) return p;
      if (Date.now() >= end) { err.write(`timed out after ${values["timeout-seconds"]}s ${what}: ${p.line}\n`); return undefined; }
      await new Promise((r) => setTimeout(r, pollMs));
    }
  };

  if (values["stop-daemonset"]) {
    const { namespace, name } = splitRef(values["stop-daemonset"], "stop-daemonset");
    let selector: string | undefined;
    try {
      const ds = await apps.readNamespacedDaemonSet({ name, namespace });
      selector = selectorOf(ds.spec?.selector?.matchLabels);
      if (ds.spec?.template?.spec?.nodeSelector?.[UNINSTALLING_LABEL] === undefined) {
        const key = UNINSTALLING_LABEL.replace(/~/g, "~0").replace(/\//g, "~1");
        const op = ds.spec?.template?.spec?.nodeSelector
          ? { op: "add", path: `/spec/template/spec/nodeSelector/${key}`, value: "true" }
          : { op: "add", path: "/spec/template/spec/nodeSelector", value: { [UNINSTALLING_LABEL]: "true" } };
        await apps.patchNamespacedDaemonSet({ name, namespace, body: [op] });
      }
      out.write(`node agent ${namespace}/${name}: moved off every node (nodeSelector ${UNINSTALLING_LABEL}=true)\n`);
    } catch (e) {
      if (!isNotFound(e)) throw e;
      out.write(`node agent ${namespace}/${name} is already gone\n`);
    }
    if (selector !== undefined) {
      const sel = selector;
      const stopped = await poll("waiting for the node agent to stop", async () => {
        const pods = (await core.listNamespacedPod({ namespace, labelSelector: sel })).items;
        return agentStopped(pods, (await core.listNode()).items);
      });
      if (!stopped) return 1;
    }
  }

  if (values["wait-daemonset"]) {
    const { namespace, name } = splitRef(values["wait-daemonset"], "wait-daemonset");
    const restored = await poll("waiting for the nodes to be restored", async () => {
      const ds = await apps.readNamespacedDaemonSet({ name, namespace });
      const pods = (await core.listNamespacedPod({ namespace, labelSelector: selectorOf(ds.spec?.selector?.matchLabels) })).items;
      return nodesRestored(ds, pods, (await core.listNode()).items);
    });
    if (!restored) return 1;
    if (restored.skipped.length > 0) {
      err.write(`not restored (NotReady): ${restored.skipped.join(", ")}; when they are back, run \`apparate node-agent --uninstall\` there or delete their containerd changes by hand (README, "Uninstall")\n`);
    }
  }
  return 0;
}

export async function selftest(argv: string[]): Promise<number> {
  const { values } = parseArgs({ args: argv, options: { url: { type: "string" }, "ready-url": { type: "string" }, "webhook-config": { type: "string" }, "expect-client-auth": { type: "boolean", default: false } } });
  if (values["ready-url"]) {
    const r = await fetch(values["ready-url"]);
    process.stdout.write(`readyz: ${r.status} ${await r.text()}\n`);
    if (r.status !== 200) return 1;
  }
  if (!values.url || !values["webhook-config"]) return 0;
  const cfg = await loadKubeConfig().makeApiClient(AdmissionregistrationV1Api).readMutatingWebhookConfiguration({ name: values["webhook-config"] });
  const ca = Buffer.from(cfg.webhooks?.[0]?.clientConfig?.caBundle ?? "", "base64").toString();
  if (!ca) { process.stderr.write("webhook configuration has no caBundle yet\n"); return 1; }
  const review = {
    apiVersion: "admission.k8s.io/v1", kind: "AdmissionReview",
    request: { uid: "apparate-selftest", kind: { group: "", version: "v1", kind: "Pod" }, resource: { group: "", version: "v1", resource: "pods" },
      namespace: "default", operation: "CREATE", dryRun: true,
      object: { apiVersion: "v1", kind: "Pod", metadata: { name: "selftest" }, spec: { containers: [{ name: "c", image: "busybox:1.36" }] } } },
  };
  // admission.clientAuth: this pod has no client certificate, so the port must refuse it in the handshake.
  if (values["expect-client-auth"]) {
    try {
      const res = await request(values.url, { method: "POST", body: JSON.stringify(review), headers: { "content-type": "application/json" }, dispatcher: new Agent({ connect: { ca } }) });
      await res.body.dump();
      process.stdout.write(`mutate: HTTP ${res.statusCode} without a client certificate: admission.clientAuth is not enforced\n`);
      return 1;
    } catch (err) {
      process.stdout.write(`mutate: refused without a client certificate (${(err as { code?: string }).code ?? "TLS error"}), as admission.clientAuth requires\n`);
      return 0;
    }
  }
  // The same trust the API server has: only the caBundle of the webhook configuration.
  const res = await request(values.url, { method: "POST", body: JSON.stringify(review), headers: { "content-type": "application/json" }, dispatcher: new Agent({ connect: { ca } }) });
  const body = (await res.body.json()) as { response?: { allowed?: boolean } };
  process.stdout.write(`mutate: HTTP ${res.statusCode}, allowed=${String(body.response?.allowed)}\n`);
  return res.statusCode === 200 && body.response?.allowed === true ? 0 : 1;
}
