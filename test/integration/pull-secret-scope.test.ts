// registry.pullSecretNamespaces (the chart's podPullSecretsScope=namespaces): pods' pull
// secrets are read through one informer per listed namespace, so a namespaced Role is
// all the webhook needs, and nothing is ever asked of /api/v1/secrets. Real
// @kubernetes/client-node informers against the Kubernetes API stand-in.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { compileConfig } from "../../src/config/config.js";
import { startKubeSources, type KubeSources } from "../../src/kube/sources.js";
import { createLogger } from "../../src/observability/logger.js";
import { Metrics } from "../../src/observability/metrics.js";
import { KubeApiStandIn } from "../support/kube-api-standin.js";
import { waitFor } from "../support/ports.js";

const pullSecret = (namespace: string, user: string) => ({
  metadata: { name: "regcred", namespace }, type: "kubernetes.io/dockerconfigjson",
  data: { ".dockerconfigjson": Buffer.from(JSON.stringify({ auths: { "registry.example.com": { username: user, password: "p" } } })).toString("base64") },
});

describe.each([
  { scope: "listed namespaces", namespaces: ["shop", "web"], seesOther: false },
  { scope: "cluster-wide (negative control)", namespaces: [], seesOther: true },
])("pull secrets read $scope", ({ namespaces, seesOther }) => {
  const api = new KubeApiStandIn();
  let sources: KubeSources;

  beforeAll(async () => {
    await api.start();
    api.put("secrets", pullSecret("shop", "shop-user"));
    api.put("secrets", pullSecret("other", "other-user"));
    const config = compileConfig({ registry: { usePodPullSecrets: true, pullSecretNamespaces: namespaces } });
    sources = await startKubeSources(config, createLogger({ level: "silent" }), new Metrics(), api.kubeConfig());
    await waitFor(async () => sources.notReady().length === 0, 10_000, "informers to sync");
  });
  afterAll(async () => { sources?.stop(); await api.stop(); });

  it("finds the pull secret of a listed namespace", () => {
    const [k] = sources.pullSecrets.keyrings("shop", ["regcred"]);
    expect(k!.lookup("registry.example.com", "x/y")[0]!.username).toBe("shop-user");
  });

  it(seesOther ? "reads every namespace through /api/v1/secrets" : "never reads another namespace's secret, nor /api/v1/secrets", async () => {
    api.put("secrets", pullSecret("web", "web-user"));
    if (namespaces.length > 0) await waitFor(async () => sources.pullSecrets.keyrings("web", ["regcred"]).length === 1, 5000, "the web secret");
    expect(sources.pullSecrets.keyrings("other", ["regcred"])).toHaveLength(seesOther ? 1 : 0);
    const secretPaths = [...new Set(api.requests.filter((r) => r.includes("/secrets")).map((r) => r.split(" ")[1]))].sort();
    expect(secretPaths).toEqual(seesOther ? ["/api/v1/secrets"] : ["/api/v1/namespaces/shop/secrets", "/api/v1/namespaces/web/secrets"]);
  });
});
