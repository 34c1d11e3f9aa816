// The converter's part of the chart, rendered by the real helm binary: its config is
// accepted by the converter's own schema, its objects pass the Kubernetes schemas and
// the restricted Pod Security profile, and its RBAC stays in its namespace.
import { execFileSync, spawnSync } from "node:child_process";
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { beforeAll, describe, expect, it } from "vitest";
import { parseAllDocuments } from "yaml";
import { compileConfig } from "../../src/config/config.js";
import { CONVERT_NODE_OPTIONS, conversionJob } from "../../src/converter/job-spec.js";
import { jobSettings } from "../../src/converter/main.js";
import { validateObject, type K8sObject } from "../support/k8s-schema.js";
import { restrictedViolations } from "../support/pod-security.js";

const HELM = ".tmp/bin/helm";
type Obj = K8sObject & { metadata: any; [k: string]: any };

const VALUES = `
acceleration:
  registries: [registry.example.com]
converter:
  enabled: true
  sources:
    - {name: registry, kind: distribution, secret: "s3cret-value"}
    - {name: harbor, kind: harbor, secret: "h4rbor", registry: harbor.example.com}
  scan:
    - {registry: tcr.example.com, repositories: [team/app]}
  credentials: {dockerServer: registry.example.com, dockerUsername: "100012345678", dockerPassword: pw}
`;

function render(values: string): Obj[] {
  const dir = mkdtempSync(join(tmpdir(), "apparate-chart-converter-"));
  writeFileSync(join(dir, "values.yaml"), values);
  const r = spawnSync(HELM, ["template", "rel", "charts/apparate", "-n", "apparate-system", "-f", join(dir, "values.yaml"), "--api-versions", "cert-manager.io/v1/Certificate"], { encoding: "utf8" });
  if (r.status !== 0) throw new Error(r.stderr);
  return parseAllDocuments(r.stdout).map((d) => d.toJS()).filter(Boolean) as Obj[];
}
const converterObjects = (objs: Obj[]) => objs.filter((o) => o.metadata?.labels?.["app.kubernetes.io/component"] === "converter");

describe("chart: converter", () => {
  beforeAll(() => { execFileSync("bash", ["test/support/install-helm.sh"], { stdio: "ignore" }); });

  it("renders a Deployment, Service, ServiceAccount, Role, RoleBinding, ConfigMap and Secrets, all valid objects", async () => {
    const objs = converterObjects(render(VALUES));
    expect(objs.map((o) => o.kind).sort()).toEqual(["ConfigMap", "Deployment", "Role", "RoleBinding", "Secret", "Secret", "Service", "ServiceAccount"]);
    for (const o of objs) await validateObject(o);
    const dep = objs.find((o) => o.kind === "Deployment")!;
    expect(restrictedViolations(dep.spec.template.spec)).toEqual([]);
    expect(dep.spec.template.spec.containers[0].args).toEqual(["converter", "--config", "/etc/apparate/converter/config.yaml"]);
    // In-process conversions run with the V8 options a conversion Job gets (bench/results.json conversionManyFiles).
    expect(dep.spec.template.spec.containers[0].env).toContainEqual({ name: "NODE_OPTIONS", value: CONVERT_NODE_OPTIONS });
  });

  it("its config is the webhook's rules plus the converter section, accepted by the converter's schema, secrets as mounted files", () => {
    const objs = converterObjects(render(VALUES));
    const cm = objs.find((o) => o.kind === "ConfigMap")!;
    const config = compileConfig(parseAllDocuments(cm.data["config.yaml"])[0]!.toJS());
    expect([...config.acceleration.registries]).toContain("registry.example.com");
    expect(config.converter.sources).toEqual([
      { name: "registry", kind: "distribution", header: "Authorization", secretFile: "/etc/apparate/converter-sources/registry" },
      { name: "harbor", kind: "harbor", header: "Authorization", secretFile: "/etc/apparate/converter-sources/harbor", registry: "harbor.example.com" },
    ]);
    expect(config.converter.scan).toEqual([{ registry: "tcr.example.com", repositories: ["team/app"] }]);
    expect(config.converter.ownUsers).toEqual(["100012345678"]); // its own pushes never loop
    expect(config.registry.dockerConfigFile).toBe("/etc/apparate/converter-credentials/.dockerconfigjson");
    const secret = objs.find((o) => o.kind === "Secret" && o.type === "kubernetes.io/dockerconfigjson")!;
    const auths = JSON.parse(Buffer.from(secret.data[".dockerconfigjson"], "base64").toString()).auths;
    expect(auths["registry.example.com"]).toMatchObject({ username: "100012345678", password: "pw" });
    // The shared secrets are in a Secret, never in the ConfigMap.
    expect(cm.data["config.yaml"]).not.toContain("s3cret-value");
  });

  it("RBAC: a namespaced Role for Events, conversion Leases and reading learned prefetch lists, nothing cluster-wide", () => {
    const objs = converterObjects(render(VALUES));
    expect(objs.some((o) => o.kind === "ClusterRole" || o.kind === "ClusterRoleBinding")).toBe(false);
    const role = objs.find((o) => o.kind === "Role")!;
    expect(role.metadata.namespace).toBe("apparate-system");
    expect(role.rules).toEqual([
      { apiGroups: [""], resources: ["events"], verbs: ["create"] },
      { apiGroups: ["coordination.k8s.io"], resources: ["leases"], verbs: ["create", "get", "delete"] },
      { apiGroups: [""], resources: ["configmaps"], verbs: ["get"] },
    ]);
  });

  const JOB_VALUES = `${VALUES}  mode: job
  job:
    resources: {requests: {cpu: 2, memory: 1Gi}, limits: {memory: 3Gi}}
    ephemeralStorage: 8Gi
registry:
  caBundle: |
    -----BEGIN CERTIFICATE-----
    MIIBszCCAVmgAwIBAgIUQ2vV
    -----END CERTIFICATE-----
`;
  const configOf = (objs: Obj[]) => compileConfig(parseAllDocuments(objs.find((o) => o.kind === "ConfigMap")!.data["config.yaml"])[0]!.toJS());

  it("job mode: the Role may also create, get, list, watch and delete batch/v1 Jobs, in its namespace only; inprocess (negative control) may not", () => {
    const jobRole = converterObjects(render(JOB_VALUES)).find((o) => o.kind === "Role")!;
    expect(jobRole.metadata.namespace).toBe("apparate-system");
    expect(jobRole.rules).toContainEqual({ apiGroups: ["batch"], resources: ["jobs"], verbs: ["create", "get", "list", "watch", "delete"] });
    expect(render(JOB_VALUES).some((o) => (o.kind === "ClusterRole" || o.kind === "Role") && o.metadata?.labels?.["app.kubernetes.io/component"] !== "converter" && JSON.stringify(o.rules ?? []).includes("jobs"))).toBe(false);
    const inprocess = converterObjects(render(VALUES)).find((o) => o.kind === "Role")!;
    expect(JSON.stringify(inprocess.rules)).not.toContain("batch");
  });

  it("job mode: the config gives the Jobs the chart's image, the values' resources and the objects rendered beside it; the Job built from it mounts them where the config reads them", async () => {
    const objs = converterObjects(render(JOB_VALUES));
    for (const o of objs) await validateObject(o);
    const config = configOf(objs);
    expect(config.converter.mode).toBe("job");
    const settings = jobSettings(config, "ignored");
    expect(settings).toMatchObject({ namespace: "apparate-system", cpuRequest: "2", memoryRequest: "1Gi", memoryLimit: "3Gi", ephemeralStorage: "8Gi", backoffLimit: 2, activeDeadlineSeconds: 3600 });
    expect(settings.image).toMatch(/\/apparate:/);
    const dep = objs.find((o) => o.kind === "Deployment")!;
    expect(settings.image).toBe(dep.spec.template.spec.containers[0].image); // the converter's own image
    const job = conversionJob({ registry: "registry.example.com", repository: "team/app", tag: "v1", digest: `sha256:${"a".repeat(64)}`, targetTag: "v1-apparate" }, settings) as unknown as Obj;
    await validateObject(job);
    expect(restrictedViolations(job.spec.template.spec)).toEqual([]);
    const c = job.spec.template.spec.containers[0];
    expect(c.resources.limits.memory).toBe("3Gi");
    const mountOf = (volume: string) => c.volumeMounts.find((m: { name: string }) => m.name === volume).mountPath as string;
    const volume = (n: string) => job.spec.template.spec.volumes.find((v: { name: string }) => v.name === n);
    // --config: the rendered ConfigMap, key config.yaml.
    const cm = objs.find((o) => o.kind === "ConfigMap")!;
    expect(volume("config").configMap.name).toBe(cm.metadata.name);
    expect(c.args.slice(-2)).toEqual(["--config", `${mountOf("config")}/config.yaml`]);
    // The push credentials: the rendered dockerconfigjson Secret, where registry.dockerConfigFile points.
    const secret = objs.find((o) => o.kind === "Secret" && o.type === "kubernetes.io/dockerconfigjson")!;
    expect(volume("credentials").secret.secretName).toBe(secret.metadata.name);
    expect(config.registry.dockerConfigFile).toBe(`${mountOf("credentials")}/.dockerconfigjson`);
    // The registry CA: the chart's CA ConfigMap, where registry.caFile points.
    const ca = render(JOB_VALUES).find((o) => o.kind === "ConfigMap" && o.metadata.name.endsWith("-registry-ca"))!;
    expect(volume("registry-ca").configMap.name).toBe(ca.metadata.name);
    expect(config.registry.caFile).toBe(`${mountOf("registry-ca")}/${Object.keys(ca.data)[0]}`);
  });

  it("negative controls: off by default; a source without a secret fails with its name; an unknown mode is refused", () => {
    expect(converterObjects(render(""))).toEqual([]);
    expect(() => render("converter: {enabled: true, sources: [{name: reg, kind: distribution}]}")).toThrow(/converter.sources\[reg\].secret is empty/);
    expect(() => render("converter: {enabled: true, mode: cron}")).toThrow(/converter.mode/);
    expect(() => render("converter: {enabled: true, mode: job, job: {ephemeralStorage: lots}}")).toThrow(/converter.job.ephemeralStorage/);
    expect(() => render("converter: {enabled: true, mode: job, job: {memoryLimit: 1Gi}}")).toThrow(/converter.job/);
  });
});
