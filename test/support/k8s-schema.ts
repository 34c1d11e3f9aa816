// Rendered Kubernetes objects checked against the published schemas, twice:
// 1. kubernetes-models' JSON-schema validators (types, required fields, enums, formats),
//    for the built-in kinds and, through @kubernetes-models/cert-manager and
//    @kubernetes-models/prometheus-operator, for cert-manager and Prometheus Operator kinds;
// 2. a strict pass: the same packages' TypeScript interfaces, with every object written
//    as an object literal typed by its kind's interface, so that TypeScript's excess
//    property check rejects any field the schema does not have, at any depth (JSON
//    schema validation lets unknown fields through; the API server prunes or rejects them).
import { mkdirSync, writeFileSync } from "node:fs";
import { join, resolve } from "node:path";
import ts from "typescript";

export type K8sObject = { apiVersion: string; kind: string; metadata: { name: string; [k: string]: unknown }; [k: string]: unknown };

const EXTERNAL: Record<string, string> = {
  "cert-manager.io": "@kubernetes-models/cert-manager",
  "monitoring.coreos.com": "@kubernetes-models/prometheus-operator",
};

function modulePath(o: K8sObject): string {
  const [group, version] = o.apiVersion.includes("/") ? (o.apiVersion.split("/") as [string, string]) : ["", o.apiVersion];
  const pkg = EXTERNAL[group];
  if (pkg) return `${pkg}/${group}/${version}/${o.kind}`;
  return `kubernetes-models/${group ? `${group}/` : ""}${version}/${o.kind}`;
}

/** Pass 1: throws with the object named if kubernetes-models' validator rejects it. */
export async function validateObject(o: K8sObject): Promise<void> {
  const mod = await import(modulePath(o));
  const Model = mod[o.kind];
  if (!Model) throw new Error(`no schema for ${o.apiVersion} ${o.kind}`);
  try {
    new Model(o).validate();
  } catch (err) {
    throw new Error(`${o.kind}/${o.metadata.name}: ${(err as Error).message}`);
  }
}

/**
 * Pass 2: every object type-checked as a literal of its kind's interface. Returns the
 * diagnostics, each naming the object and the unknown or mistyped field.
 */
export function strictCheck(objs: K8sObject[], workDir = ".tmp/strict-k8s"): string[] {
  mkdirSync(workDir, { recursive: true });
  const lines: string[] = [];
  objs.forEach((o, i) => {
    lines.push(`import type { I${o.kind} as T${i} } from ${JSON.stringify(modulePath(o))};`);
  });
  objs.forEach((o, i) => {
    lines.push(`// ${o.kind}/${o.metadata.name}`);
    lines.push(`export const o${i}: T${i} = ${JSON.stringify(o)};`);
  });
  const file = resolve(join(workDir, `objects-${process.pid}.ts`));
  writeFileSync(file, lines.join("\n"));
  const program = ts.createProgram([file], {
    strict: true, noEmit: true, skipLibCheck: true, module: ts.ModuleKind.NodeNext, moduleResolution: ts.ModuleResolutionKind.NodeNext,
    target: ts.ScriptTarget.ES2022, types: [],
  });
  return ts.getPreEmitDiagnostics(program).map((d) => {
    const text = ts.flattenDiagnosticMessageText(d.messageText, "\n");
    if (!d.file || d.start === undefined) return text;
    const { line } = d.file.getLineAndCharacterOfPosition(d.start);
    const src = d.file.text.split("\n");
    let label = "";
    for (let l = line; l >= 0; l--) if (src[l]!.startsWith("// ")) { label = src[l]!.slice(3); break; }
    return `${label}: ${text.split("\n").pop()}`;
  });
}
