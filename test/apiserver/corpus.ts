// The pod corpus: variants generated from the base shapes of test/fixtures/pods/shapes.yaml
// (popular charts' workloads, sources in SOURCES.md). Each variant says which namespace it
// goes to, how its images are hosted and what the chart's selectors should do with it, so
// the test can assert the real dispatcher called the webhook exactly where it should.
import { readFileSync } from "node:fs";
import { parse as parseYaml } from "yaml";
import type { PodLike } from "../../src/mutate/pod.js";

export interface Shape { id: string; pod: PodLike }

export interface NamespaceSpec { name: string; labels: Record<string, string> }

export interface CorpusCase {
  id: string;
  shape: string;
  namespace: string;
  operation: "CREATE" | "UPDATE";
  subresource: "" | "ephemeralcontainers";
  pod: PodLike;
  oldPod?: PodLike;
  /** The chart's rules, namespaceSelector and objectSelector, evaluated independently. */
  expectCalled: boolean;
}

export const RELEASE_NS = "apparate-system";
export const LISTED = ["default", "shop", "istio-app"];
/** Namespaces of the corpus, with the labels a cluster would give them. */
export const NAMESPACES: NamespaceSpec[] = [
  { name: "default", labels: {} },
  { name: "shop", labels: { team: "shop" } },
  { name: "istio-app", labels: { "istio-injection": "enabled" } },
  { name: "team-labelled", labels: { "apparate.io/inject": "enabled" } },
  { name: "unlisted", labels: {} },
  { name: "kube-system", labels: {} },
  { name: RELEASE_NS, labels: { "apparate.io/inject": "enabled" } },
];

const LABEL_KEY = "cloud.tencent.com/apparate";

/** Nodes the scheduler could pick: the placement check asks which of these a pod fits. */
export const NODES = [
  node("node-plain", { "topology.kubernetes.io/zone": "zone-a", "kubernetes.io/arch": "amd64" }),
  node("node-a", { [LABEL_KEY]: "true", "topology.kubernetes.io/zone": "zone-a", "kubernetes.io/arch": "amd64" }),
  node("node-b-arm", { [LABEL_KEY]: "true", "topology.kubernetes.io/zone": "zone-b", "kubernetes.io/arch": "arm64" }),
  // Nodes whose label value is a number, so that pods requiring `Gt`/`Lt` on the key fit somewhere.
  node("node-numeric-high", { [LABEL_KEY]: "10", "topology.kubernetes.io/zone": "zone-a", "kubernetes.io/arch": "amd64" }),
  node("node-numeric-low", { [LABEL_KEY]: "1", "topology.kubernetes.io/zone": "zone-a", "kubernetes.io/arch": "amd64" }),
];

function node(name: string, labels: Record<string, string>) {
  return { apiVersion: "v1", kind: "Node", metadata: { name, labels: { "kubernetes.io/hostname": name, "kubernetes.io/os": "linux", ...labels } } };
}

export function loadShapes(path = "test/fixtures/pods/shapes.yaml"): Shape[] {
  return parseYaml(readFileSync(path, "utf8")) as Shape[];
}

type Container = NonNullable<NonNullable<PodLike["spec"]>["containers"]>[number];
const allContainers = (p: PodLike): Container[] => [...(p.spec?.initContainers ?? []), ...(p.spec?.containers ?? []), ...((p.spec as any)?.ephemeralContainers ?? [])];

/** "registry.k8s.io/a/b:tag@sha256:…" -> { repo: "a/b", tag: "tag", digest } */
export function splitImage(image: string): { repo: string; tag: string; digest?: string } {
  const [nameTag, digest] = image.split("@") as [string, string | undefined];
  const slash = nameTag.indexOf("/");
  const rest = nameTag.slice(slash + 1);
  const colon = rest.lastIndexOf(":");
  return { repo: rest.slice(0, colon), tag: rest.slice(colon + 1), ...(digest ? { digest } : {}) };
}

/** Every repo:tag the shapes use: the test pushes `<tag>-apparate` of each to the registry. */
export function variantsToPush(shapes: Shape[]): Array<{ repo: string; tag: string }> {
  const seen = new Map<string, { repo: string; tag: string }>();
  for (const s of shapes) for (const c of allContainers(s.pod)) {
    const { repo, tag } = splitImage(c.image!);
    seen.set(`${repo}:${tag}`, { repo, tag });
  }
  seen.set("debug/busybox:1.36", { repo: "debug/busybox", tag: "1.36" });
  return [...seen.values()];
}

type ImageMode = "public" | "variant" | "novariant" | "mixed";

function hostImages(pod: PodLike, mode: ImageMode, reg: string): PodLike {
  const p = structuredClone(pod);
  if (mode === "public") return p;
  let first = true;
  for (const c of allContainers(p)) {
    const { repo, tag, digest } = splitImage(c.image!);
    if (mode === "mixed" && !first) continue;
    first = false;
    const path = mode === "novariant" ? `novariant/${repo}` : repo;
    c.image = `${reg}/${path}:${tag}${digest ? `@${digest}` : ""}`;
  }
  return p;
}

/** What the chart's MutatingWebhookConfiguration selects, re-stated from its template. */
export function selectedByChart(ns: NamespaceSpec, labels: Record<string, string> | undefined, operation: string, subresource: string): boolean {
  const ruleMatches = (operation === "CREATE" && subresource === "") || (operation === "UPDATE" && subresource === "ephemeralcontainers");
  if (!ruleMatches) return false;
  if (ns.name === "kube-system" || ns.name === RELEASE_NS) return false;
  if (!LISTED.includes(ns.name) && ns.labels["apparate.io/inject"] !== "enabled") return false;
  return labels?.["app.kubernetes.io/part-of"] !== "apparate" && labels?.["apparate.io/inject"] !== "false";
}

function withNamespace(pod: PodLike, ns: string): PodLike {
  return { ...pod, metadata: { ...pod.metadata, namespace: ns } };
}

function requiredAffinity(key: string, operator: string, values?: string[]) {
  return {
    nodeAffinity: {
      requiredDuringSchedulingIgnoredDuringExecution: {
        nodeSelectorTerms: [{ matchExpressions: [{ key, operator, ...(values ? { values } : {}) }] }],
      },
    },
  };
}

/** Annotations of `total` bytes (keys + values), as kubectl apply's last-applied or a big config would make. */
function bigAnnotations(total: number): Record<string, string> {
  const key = "example.com/last-applied-configuration";
  return { [key]: "x".repeat(total - key.length) };
}

export function buildCorpus(shapes: Shape[], reg: string): CorpusCase[] {
  const out: CorpusCase[] = [];
  const nsByName = new Map(NAMESPACES.map((n) => [n.name, n]));
  const add = (c: Omit<CorpusCase, "expectCalled">) => {
    const ns = nsByName.get(c.namespace)!;
    out.push({ ...c, expectCalled: selectedByChart(ns, c.pod.metadata?.labels as Record<string, string> | undefined, c.operation, c.subresource) });
  };

  // 1. Every shape in every namespace, with its images on the local registry (variant
  //    present), without a variant, only the first container's, and as the chart ships them.
  for (const s of shapes) for (const ns of NAMESPACES) for (const mode of ["variant", "novariant", "mixed", "public"] as const) {
    if (mode !== "variant" && !["default", "team-labelled", "unlisted"].includes(ns.name)) continue;
    add({ id: `${s.id}/${ns.name}/${mode}`, shape: s.id, namespace: ns.name, operation: "CREATE", subresource: "", pod: withNamespace(hostImages(s.pod, mode, reg), ns.name) });
  }

  for (const s of shapes) {
    const base = withNamespace(hostImages(s.pod, "variant", reg), "shop");
    // 2. Object-level opt-outs (the chart's objectSelector), and a label that is no opt-out.
    for (const [label, value] of [["apparate.io/inject", "false"], ["app.kubernetes.io/part-of", "apparate"], ["apparate.io/inject", "true"]] as const) {
      const pod = structuredClone(base);
      pod.metadata!.labels = { ...pod.metadata!.labels, [label]: value };
      add({ id: `${s.id}/label-${label}=${value}`, shape: s.id, namespace: "shop", operation: "CREATE", subresource: "", pod });
    }
    // 3. Big annotations: 200 KiB, and the issue's 262,044 bytes (valid, 100 bytes under the limit).
    for (const size of [200 * 1024, 262_044]) {
      const pod = structuredClone(base);
      const existing = Object.entries(pod.metadata!.annotations ?? {}).reduce((n, [k, v]) => n + k.length + v.length, 0);
      pod.metadata!.annotations = { ...pod.metadata!.annotations, ...bigAnnotations(size - existing) };
      add({ id: `${s.id}/annotations-${size}`, shape: s.id, namespace: "shop", operation: "CREATE", subresource: "", pod });
    }
    // 4. An UPDATE of the pod itself: the chart's rules do not select it (negative control).
    add({ id: `${s.id}/pod-update`, shape: s.id, namespace: "default", operation: "UPDATE", subresource: "", pod: withNamespace(named(base), "default"), oldPod: withNamespace(named(base), "default") });
    // 5. kubectl debug: a second ephemeral container added while the first one's image has
    //    a variant now (pods/ephemeralcontainers UPDATE; existing ones must not change).
    const old = withNamespace(named(base), "default");
    (old.spec as any).ephemeralContainers = [debugContainer("debugger-1", `${reg}/debug/busybox:1.36`, first(base))];
    const cur = structuredClone(old);
    (cur.spec as any).ephemeralContainers.push(debugContainer("debugger-2", `${reg}/debug/busybox:1.36`, first(base)));
    add({ id: `${s.id}/kubectl-debug`, shape: s.id, namespace: "default", operation: "UPDATE", subresource: "ephemeralcontainers", pod: cur, oldPod: old });
  }

  // 6. Node affinities on the placement label, every operator, and ordinary ones.
  const affinities: Array<[string, unknown]> = [
    ["label-In-true", requiredAffinity(LABEL_KEY, "In", ["true"])],
    ["label-NotIn-true", requiredAffinity(LABEL_KEY, "NotIn", ["true"])],
    ["label-Exists", requiredAffinity(LABEL_KEY, "Exists")],
    ["label-DoesNotExist", requiredAffinity(LABEL_KEY, "DoesNotExist")],
    ["label-Gt-5", requiredAffinity(LABEL_KEY, "Gt", ["5"])],
    ["label-Lt-5", requiredAffinity(LABEL_KEY, "Lt", ["5"])],
    ["zone-b", requiredAffinity("topology.kubernetes.io/zone", "In", ["zone-b"])],
    ["arch-amd64 (bitnami nodeAffinityPreset hard)", requiredAffinity("kubernetes.io/arch", "In", ["amd64"])],
    ["preferred-zone-a", { nodeAffinity: { preferredDuringSchedulingIgnoredDuringExecution: [{ weight: 1, preference: { matchExpressions: [{ key: "topology.kubernetes.io/zone", operator: "In", values: ["zone-a"] }] } }] } }],
  ];
  for (const s of shapes.filter((x) => ["ingress-nginx-controller", "bitnami-postgresql-primary", "argo-cd-server"].includes(x.id))) {
    for (const [name, affinity] of affinities) {
      const pod = withNamespace(hostImages(s.pod, "variant", reg), "default");
      pod.spec = { ...pod.spec, affinity: { ...(pod.spec as any).affinity, ...(affinity as object) } } as any;
      add({ id: `${s.id}/affinity-${name}`, shape: s.id, namespace: "default", operation: "CREATE", subresource: "", pod });
    }
    // A nodeSelector that already names the placement label with another value.
    const pod = withNamespace(hostImages(s.pod, "variant", reg), "default");
    pod.spec!.nodeSelector = { ...pod.spec!.nodeSelector, [LABEL_KEY]: "10" };
    add({ id: `${s.id}/nodeSelector-label-10`, shape: s.id, namespace: "default", operation: "CREATE", subresource: "", pod });
  }
  return out;
}

function named(pod: PodLike): PodLike {
  const p = structuredClone(pod);
  if (!p.metadata!.name) p.metadata!.name = `${p.metadata!.generateName}x7k2q`;
  delete p.metadata!.generateName;
  return p;
}

function first(pod: PodLike): string { return pod.spec!.containers![0]!.name; }

/** The ephemeral container `kubectl debug -it --image=busybox --target=<c>` adds. */
function debugContainer(name: string, image: string, target: string) {
  return { name, image, imagePullPolicy: "IfNotPresent", stdin: true, tty: true, targetContainerName: target, terminationMessagePolicy: "File", resources: {} };
}
