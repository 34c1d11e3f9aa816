// admission.clientAuth against kube-apiserver's own webhook client: the real mutating
// admission plugin (test/apiserver/driver) reads the AdmissionConfiguration and kubeconfig
// exactly as README "Client certificates" shows them (taken from the README itself, paths
// and names filled in), and calls the chart's webhook configuration on apparate's real
// server with clientAuth on. The plugin fails open (failurePolicy Ignore), so a refused
// handshake shows as a call that failed open and a webhook that received nothing.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { spawnSync } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { parseAllDocuments, parse as parseYaml, stringify } from "yaml";
import { createCA, type KeyPairPem } from "../../src/tls/certificates.js";
import { driverAvailable, startDriver, type DriverAnswer } from "../apiserver/driver.js";
import { startServiceWebhook, type ServiceWebhook } from "../apiserver/webhook.js";
import { LISTED, NAMESPACES, NODES, RELEASE_NS } from "../apiserver/corpus.js";
import { issueClient } from "../support/client-certs.js";
import { webPod } from "../support/pods.js";

const HELM = ".tmp/bin/helm";
type Obj = { kind: string; metadata: { name: string }; [k: string]: any };

/** The two YAML documents README "Client certificates" gives for the API server side. */
function readmeApiServerConfig(): { admission: any; kubeconfig: any } {
  const readme = readFileSync("README.md", "utf8");
  const section = readme.slice(readme.indexOf("### Client certificates"));
  const block = /```yaml\n([\s\S]*?)```/.exec(section)![1]!;
  const [admission, kubeconfig] = parseAllDocuments(block).map((d) => d.toJS());
  return { admission, kubeconfig };
}

describe.skipIf(!driverAvailable || !existsSync(HELM))("admission.clientAuth with kube-apiserver's webhook client and the README's AdmissionConfiguration", () => {
  const apiCa = createCA("cluster client CA", 1);
  const apiserver = issueClient(apiCa, "kube-apiserver-webhook-client");
  const stranger = issueClient(createCA("another CA", 1), "kube-apiserver-webhook-client");
  let dir: string;
  let hook: ServiceWebhook;
  let objs: Obj[];
  let service: { key: string; serverName: string };

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), "apparate-apiserver-client-auth-"));
    const r = spawnSync(HELM, ["template", "rel", "charts/apparate", "-n", RELEASE_NS, "--kube-version", "1.31.0",
      "--set-json", `namespaces=${JSON.stringify(LISTED)}`, "--set", "admission.clientAuth.enabled=true",
      "--set-string", `admission.clientAuth.caBundle=${apiCa.cert}`], { encoding: "utf8" });
    if (r.status !== 0) throw new Error(r.stderr);
    objs = parseAllDocuments(r.stdout).map((d) => d.toJS()).filter(Boolean) as Obj[];
    const svc = objs.find((o) => o.kind === "MutatingWebhookConfiguration")!.webhooks[0].clientConfig.service;
    service = { key: `${svc.namespace}/${svc.name}:${svc.port ?? 443}`, serverName: `${svc.name}.${svc.namespace}.svc` };
    // The chart's config and the bundle it mounts, at a path of this test's.
    const cm = objs.find((o) => o.kind === "ConfigMap" && o.data?.["config.yaml"])!;
    const bundle = objs.find((o) => o.kind === "ConfigMap" && o.metadata.name.endsWith("-client-ca"))!.data["ca.crt"];
    writeFileSync(join(dir, "client-ca.crt"), bundle);
    const config = parseYaml(cm.data["config.yaml"]);
    config.admission.clientAuth.caFile = join(dir, "client-ca.crt");
    hook = await startServiceWebhook(config, service.serverName, { labels: (n) => NAMESPACES.find((x) => x.name === n)?.labels });
  });
  afterAll(async () => { await hook?.stop(); });

  /** The README's two files with this test's paths, the user named `user`, holding `cert`. */
  function apiServerFiles(name: string, user: string, cert: KeyPairPem): string {
    const { admission, kubeconfig } = readmeApiServerConfig();
    writeFileSync(join(dir, `${name}.crt`), cert.cert);
    writeFileSync(join(dir, `${name}.key`), cert.key);
    kubeconfig.users[0].name = user;
    kubeconfig.users[0].user = { "client-certificate": join(dir, `${name}.crt`), "client-key": join(dir, `${name}.key`) };
    writeFileSync(join(dir, `${name}-kubeconfig.yaml`), stringify(kubeconfig));
    admission.plugins[0].configuration.kubeConfigFile = join(dir, `${name}-kubeconfig.yaml`);
    writeFileSync(join(dir, `${name}-admission.yaml`), stringify(admission));
    return join(dir, `${name}-admission.yaml`);
  }

  async function admitWith(admissionConfig?: string): Promise<{ answer: DriverAnswer; received: number }> {
    const before = hook.requests;
    const configurations = objs.filter((o) => o.kind === "MutatingWebhookConfiguration").map((o) => structuredClone(o));
    for (const c of configurations) for (const w of c.webhooks) w.clientConfig.caBundle = Buffer.from(hook.caBundle).toString("base64");
    const d = startDriver({ webhookConfigurations: configurations, namespaces: NAMESPACES, nodes: NODES, services: { [service.key]: hook.url }, ...(admissionConfig ? { admissionConfig } : {}) });
    try {
      const answer = await d.admit({ id: "p", namespace: LISTED[0]!, pod: webPod({ containers: [{ name: "app", image: "busybox:1.36" }], initContainers: [] }) });
      return { answer, received: hook.requests - before };
    } finally {
      await d.stop();
    }
  }

  it("the README's AdmissionConfiguration and kubeconfig (user <service>.<namespace>.svc): the API server's certificate is accepted and the pod reviewed", async () => {
    const { answer, received } = await admitWith(apiServerFiles("apiserver", service.serverName, apiserver));
    expect(answer.error).toBeUndefined();
    expect(answer.webhookCalls.map((c) => c.failedOpen)).toEqual([false]);
    expect(received).toBe(1);
  }, 60_000);

  it("negative control: an API server without client credentials is refused in the handshake (the call fails open, nothing received)", async () => {
    const { answer, received } = await admitWith();
    expect(answer.allowed).toBe(true);
    expect(answer.webhookCalls.map((c) => c.failedOpen)).toEqual([true]);
    expect(received).toBe(0);
  }, 60_000);

  it("a kubeconfig user named for another Service: the API server sends no certificate, refused", async () => {
    const { answer, received } = await admitWith(apiServerFiles("misnamed", `other.${RELEASE_NS}.svc`, apiserver));
    expect(answer.webhookCalls.map((c) => c.failedOpen)).toEqual([true]);
    expect(received).toBe(0);
  }, 60_000);

  it("a certificate another CA signed: refused", async () => {
    const { answer, received } = await admitWith(apiServerFiles("stranger", service.serverName, stranger));
    expect(answer.webhookCalls.map((c) => c.failedOpen)).toEqual([true]);
    expect(received).toBe(0);
  }, 60_000);
});
