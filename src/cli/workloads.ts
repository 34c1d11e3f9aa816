// The pods a set of Kubernetes documents will create: a Pod as it is, the pod
// template of a workload (what its controller sends to the webhook), the items of a
// List (`kubectl get ... -o yaml`). Pure: documents in, pods and notes out.
import type { PodLike } from "../mutate/pod.js";

export interface WorkloadPod {
  /** "Pod/web", "Deployment/shop/api", for people. */
  source: string;
  /** The pod as the API server would send it in a review (kind Pod). */
  pod: PodLike;
  /** The namespace written in the document, if any. */
  namespace?: string;
}

export interface Extraction { pods: WorkloadPod[]; skipped: string[] }

type Obj = Record<string, unknown>;
const isObj = (v: unknown): v is Obj => typeof v === "object" && v !== null && !Array.isArray(v);

/** Where each workload kind keeps its pod template. */
const TEMPLATE_PATH: Readonly<Record<string, readonly string[]>> = {
  Deployment: ["spec", "template"],
  StatefulSet: ["spec", "template"],
  DaemonSet: ["spec", "template"],
  ReplicaSet: ["spec", "template"],
  ReplicationController: ["spec", "template"],
  Job: ["spec", "template"],
  CronJob: ["spec", "jobTemplate", "spec", "template"],
  PodTemplate: ["template"],
};

export const WORKLOAD_KINDS = ["Pod", ...Object.keys(TEMPLATE_PATH), "List"] as const;

function at(o: Obj, path: readonly string[]): unknown {
  let v: unknown = o;
  for (const k of path) v = isObj(v) && Object.hasOwn(v, k) ? v[k] : undefined;
  return v;
}

function label(kind: string, meta: unknown): string {
  const m = isObj(meta) ? meta : {};
  const name = typeof m.name === "string" ? m.name : typeof m.generateName === "string" ? `${m.generateName}*` : "(unnamed)";
  return `${kind}/${typeof m.namespace === "string" ? `${m.namespace}/` : ""}${name}`;
}

export function podsOf(docs: readonly unknown[]): Extraction {
  const out: Extraction = { pods: [], skipped: [] };
  const visit = (doc: unknown, where: string, depth: number) => {
    if (doc === null || doc === undefined) return; // an empty YAML document
    if (!isObj(doc)) { out.skipped.push(`${where}: not an object`); return; }
    const kind = typeof doc.kind === "string" ? doc.kind : undefined;
    const ns = isObj(doc.metadata) && typeof doc.metadata.namespace === "string" ? doc.metadata.namespace : undefined;
    if (kind === "Pod") {
      out.pods.push({ source: label(kind, doc.metadata), pod: doc as PodLike, ...(ns ? { namespace: ns } : {}) });
      return;
    }
    if (kind !== undefined && Object.hasOwn(TEMPLATE_PATH, kind)) {
      const t = at(doc, TEMPLATE_PATH[kind]!);
      if (!isObj(t)) { out.skipped.push(`${where} ${label(kind, doc.metadata)}: no pod template at ${TEMPLATE_PATH[kind]!.join(".")}`); return; }
      const meta = isObj(t.metadata) ? { ...t.metadata } : {};
      // The controller creates pods in its own namespace, named after itself.
      const wmeta = isObj(doc.metadata) ? doc.metadata : {};
      if (meta.namespace === undefined && ns) meta.namespace = ns;
      if (meta.name === undefined && meta.generateName === undefined && typeof wmeta.name === "string") meta.generateName = `${wmeta.name}-`;
      const pod: PodLike = { apiVersion: "v1", kind: "Pod", metadata: meta, spec: t.spec as PodLike["spec"] };
      out.pods.push({ source: label(kind, doc.metadata), pod, ...(ns ? { namespace: ns } : {}) });
      return;
    }
    if (Array.isArray(doc.items) && (kind === undefined || kind.endsWith("List")) && depth < 4) {
      doc.items.forEach((item, i) => { visit(item, `${where} items[${i}]`, depth + 1); });
      return;
    }
    out.skipped.push(`${where}: ${kind ? `kind ${kind}` : "no kind"} holds no pod template (${WORKLOAD_KINDS.join(", ")} do)`);
  };
  docs.forEach((d, i) => { visit(d, `document ${i + 1}`, 0); });
  return out;
}
