// The chart's values.schema.json and the webhook's config schema describe the same
// keys where the chart passes values through (charts/apparate/templates/configmap.yaml).
// If they disagree, `helm install` accepts a value the webhook then refuses at
// start-up (a crash loop), or rejects one the webhook would take.
import { readFileSync } from "node:fs";
import { describe, expect, it } from "vitest";
import { configSchema } from "../../src/config/schema.js";

type Schema = { type?: string; enum?: unknown[]; minimum?: number; maximum?: number; pattern?: string; minLength?: number; properties?: Record<string, Schema>; anyOf?: Schema[]; oneOf?: Schema[]; items?: Schema; additionalProperties?: boolean | Schema };

const values = JSON.parse(readFileSync("charts/apparate/values.schema.json", "utf8")) as Schema;
const webhook = configSchema as unknown as Schema;

// Sections the chart passes to the webhook's config file key for key.
const SECTIONS = ["namespaces", "acceleration", "rewrite", "registry", "imageCache", "admission", "observer"];

// Webhook keys the chart fills from other values (or never sets), with the reason.
const NOT_IN_VALUES: Record<string, string> = {
  "registry.caFile": "rendered from registry.caBundle (a PEM in values, mounted as a file)",
  "registry.dockerConfigFile": "rendered from imagePullSecretsCrs (a Secret mounted as a file)",
  "registry.pullSecretNamespaces": "rendered from `namespaces` when registry.podPullSecretsScope=namespaces",
  "registry.ttlJitter": "an internal tuning knob, the default is always used",
  "admission.maxBodyBytes": "bounded by the API server's own request limit; the default is always used",
  "admission.clientAuth.caFile": "rendered from admission.clientAuth.caBundle/caConfigMap/caSecret (mounted as a file)",
};
// Chart keys in those sections that are not webhook config keys, with the reason.
const VALUES_ONLY: Record<string, string> = {
  "registry.caBundle": "becomes registry.caFile",
  "registry.podPullSecretsScope": "becomes registry.pullSecretNamespaces (the listed namespaces) or [] (cluster-wide)",
  "admission.clientAuth.caBundle": "becomes admission.clientAuth.caFile (a ConfigMap the chart makes)",
  "admission.clientAuth.caConfigMap": "becomes admission.clientAuth.caFile (that ConfigMap, mounted)",
  "admission.clientAuth.caSecret": "becomes admission.clientAuth.caFile (that Secret, mounted)",
  "imageCache.installCRD": "a chart choice (whether helm installs the ImageCache CRD), nothing the webhook reads",
};

const CONSTRAINTS = ["type", "enum", "minimum", "maximum", "pattern", "minLength"] as const;

function leaves(s: Schema, path: string, out: Map<string, Schema>): Map<string, Schema> {
  if (s.properties) {
    for (const [k, v] of Object.entries(s.properties)) leaves(v, path ? `${path}.${k}` : k, out);
  } else {
    out.set(path, s);
  }
  return out;
}

function section(s: Schema, name: string): Map<string, Schema> {
  const sub = s.properties?.[name];
  if (!sub) throw new Error(`schema has no ${name}`);
  return leaves(sub, name, new Map());
}

// The branches of a union, or the schema itself: anyOf in one, oneOf in the other is fine.
const branches = (s: Schema): Schema[] => s.anyOf ?? s.oneOf ?? [s];

function disagreements(w: Schema, v: Schema, path: string): string[] {
  const out: string[] = [];
  const wb = branches(w);
  const vb = branches(v);
  if (wb.length !== vb.length) return [`${path}: ${wb.length} alternatives in the webhook, ${vb.length} in the chart`];
  wb.forEach((wi, i) => {
    const vi = vb[i]!;
    for (const c of CONSTRAINTS) {
      if (wi[c] !== undefined && JSON.stringify(wi[c]) !== JSON.stringify(vi[c])) {
        out.push(`${path}${wb.length > 1 ? `[${i}]` : ""}: ${c} is ${JSON.stringify(wi[c])} in the webhook, ${JSON.stringify(vi[c])} in the chart`);
      }
    }
    if (wi.items && vi.items) out.push(...disagreements(wi.items, vi.items, `${path}[]`));
    // Maps (rewrite.registries): the value type must agree; the chart may say more with a pattern.
    const wa = wi.additionalProperties;
    const va = vi.additionalProperties;
    if (typeof wa === "object" && (typeof va !== "object" || va.type !== wa.type)) {
      out.push(`${path}.*: values are ${wa.type} in the webhook, ${typeof va === "object" ? va.type : JSON.stringify(va)} in the chart`);
    }
  });
  return out;
}

describe("values.schema.json agrees with the webhook's config schema where they overlap", () => {
  it.each(SECTIONS)("%s: every webhook key is in the chart (or listed with a reason) and constrained the same", (name) => {
    const w = section(webhook, name);
    const v = section(values, name);
    const problems: string[] = [];
    for (const [path, ws] of w) {
      if (NOT_IN_VALUES[path]) continue;
      const vs = v.get(path);
      if (!vs) { problems.push(`${path}: in the webhook's schema, missing from values.schema.json`); continue; }
      problems.push(...disagreements(ws, vs, path));
    }
    for (const path of v.keys()) {
      if (!w.has(path) && !VALUES_ONLY[path]) problems.push(`${path}: in values.schema.json, unknown to the webhook`);
    }
    expect(problems).toEqual([]);
  });

  it("negative control: a chart schema with a wider bound is caught", () => {
    const wide = structuredClone(values);
    wide.properties!.admission!.properties!.deadlineMs!.maximum = 60000;
    const w = section(webhook, "admission");
    const v = section(wide, "admission");
    expect(disagreements(w.get("admission.deadlineMs")!, v.get("admission.deadlineMs")!, "admission.deadlineMs"))
      .toEqual(["admission.deadlineMs: maximum is 9000 in the webhook, 60000 in the chart"]);
  });

  it("the exception lists name keys that exist (no stale excuses)", () => {
    const w = new Map(SECTIONS.flatMap((n) => [...section(webhook, n)]));
    const v = new Map(SECTIONS.flatMap((n) => [...section(values, n)]));
    for (const k of Object.keys(NOT_IN_VALUES)) expect(w.has(k), k).toBe(true);
    for (const k of Object.keys(VALUES_ONLY)) expect(v.has(k), k).toBe(true);
  });
});
