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

  it("RBAC: a namespaced Role for Events and conversion Leases, nothing cluster-wide", () => {
    const objs = converterObjects(render(VALUES));
    expect(objs.some((o) => o.kind === "ClusterRole" || o.kind === "ClusterRoleBinding")).toBe(false);
    const role = objs.find((o) => o.kind === "Role")!;
    expect(role.metadata.namespace).toBe("apparate-system");
    expect(role.rules).toEqual([
      { apiGroups: [""], resources: ["events"], verbs: ["create"] },
      { apiGroups: ["coordination.k8s.io"], resources: ["leases"], verbs: ["create", "get", "delete"] },
    ]);
  });

  it("negative controls: off by default; a source without a secret fails with its name; an unknown mode is refused", () => {
    expect(converterObjects(render(""))).toEqual([]);
    expect(() => render("converter: {enabled: true, sources: [{name: reg, kind: distribution}]}")).toThrow(/converter.sources\[reg\].secret is empty/);
    expect(() => render("converter: {enabled: true, mode: cron}")).toThrow(/converter.mode/);
  });
});
