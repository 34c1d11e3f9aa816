// Operational subcommands run by the chart: `cleanup` (pre-delete hook) and
// `selftest` (helm test).
import { parseArgs } from "node:util";
import { AdmissionregistrationV1Api, AppsV1Api } from "@kubernetes/client-node";
import { Agent, request } from "undici";
import { loadKubeConfig } from "./kube/sources.js";

const codeOf = (err: unknown) => (err as { code?: number }).code;

export async function cleanup(argv: string[]): Promise<number> {
  const { values } = parseArgs({ args: argv, options: { "webhook-config": { type: "string" }, "wait-daemonset": { type: "string" }, "timeout-seconds": { type: "string", default: "300" } } });
  const kc = loadKubeConfig();
  if (values["webhook-config"]) {
    // First, so that no pod is sent to a webhook that is going away.
    try {
      await kc.makeApiClient(AdmissionregistrationV1Api).deleteMutatingWebhookConfiguration({ name: values["webhook-config"] });
      process.stdout.write(`deleted MutatingWebhookConfiguration ${values["webhook-config"]}\n`);
    } catch (err) {
      if (codeOf(err) !== 404) throw err;
    }
  }
  const ds = values["wait-daemonset"];
  if (ds) {
    const [namespace, name] = ds.split("/") as [string, string];
    const apps = kc.makeApiClient(AppsV1Api);
    const end = Date.now() + Number(values["timeout-seconds"]) * 1000;
    for (;;) {
      const d = await apps.readNamespacedDaemonSet({ name, namespace });
      const want = d.status?.desiredNumberScheduled ?? 0;
      const ready = d.status?.numberReady ?? 0;
      process.stdout.write(`nodes restored: ${ready}/${want}\n`);
      if (ready >= want) break;
      if (Date.now() > end) { process.stderr.write("timed out waiting for nodes to be restored\n"); return 1; }
      await new Promise((r) => setTimeout(r, 3000));
    }
  }
  return 0;
}

export async function selftest(argv: string[]): Promise<number> {
  const { values } = parseArgs({ args: argv, options: { url: { type: "string" }, "ready-url": { type: "string" }, "webhook-config": { type: "string" } } });
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
  // The same trust the API server has: only the caBundle of the webhook configuration.
  const res = await request(values.url, { method: "POST", body: JSON.stringify(review), headers: { "content-type": "application/json" }, dispatcher: new Agent({ connect: { ca } }) });
  const body = (await res.body.json()) as { response?: { allowed?: boolean } };
  process.stdout.write(`mutate: HTTP ${res.statusCode}, allowed=${String(body.response?.allowed)}\n`);
  return res.statusCode === 200 && body.response?.allowed === true ? 0 : 1;
}
