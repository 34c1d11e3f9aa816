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

function node(name: string, labels: Record<string, string>): { apiVersion: string; kind: string; metadata: { name: string; labels: Record<string, string> } } {
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

/** A small seeded PRNG (mulberry32): the random part of the corpus is the same on every run. */
function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/**
 * Random pods (seeded): any namespace, 0-2 init containers and 1-4 containers whose images
 * mix variants on the test registry, images without one, digest pins, short Docker Hub names
 * and other registries; opt-out labels now and then, nodeSelectors and node affinities the
 * node set can satisfy, annotations up to 100 KiB.
 */
export function randomCases(shapes: Shape[], reg: string, n: number, seed = 24): CorpusCase[] {
  const rnd = prng(seed);
  const pick = <T>(xs: readonly T[]): T => xs[Math.floor(rnd() * xs.length)]!;
  const variants = variantsToPush(shapes);
  const imagePool = (): string => {
    const v = pick(variants);
    return pick([
      () => `${reg}/${v.repo}:${v.tag}`,
      () => `${reg}/${v.repo}:${v.tag}`,
      () => `${reg}/novariant/${v.repo}:${v.tag}`,
      () => `${reg}/${v.repo}:${v.tag}@sha256:${"0123456789abcdef".repeat(4)}`,
      () => pick(["nginx", "nginx:1.27", "busybox:1.36", "registry.k8s.io/pause:3.9", "ghcr.io/fluxcd/source-controller:v1.3.0", `docker.io/${v.repo}:${v.tag}`]),
    ])();
  };
  const affinities = [
    undefined, undefined,
    requiredAffinity(LABEL_KEY, "In", ["true"]),
    requiredAffinity(LABEL_KEY, "NotIn", ["true"]),
    requiredAffinity(LABEL_KEY, "Exists"),
    requiredAffinity(LABEL_KEY, "DoesNotExist"),
    requiredAffinity(LABEL_KEY, "Gt", ["5"]),
    requiredAffinity(LABEL_KEY, "Lt", ["5"]),
    requiredAffinity("topology.kubernetes.io/zone", "In", ["zone-a", "zone-b"]),
    requiredAffinity("kubernetes.io/arch", "NotIn", ["arm64"]),
  ];
  const nsByName = new Map(NAMESPACES.map((x) => [x.name, x]));
  const out: CorpusCase[] = [];
  for (let i = 0; i < n; i++) {
    const ns = pick(NAMESPACES);
    const labels: Record<string, string> = { app: `random-${i}`, "pod-template-hash": Math.floor(rnd() * 1e9).toString(36) };
    const r = rnd();
    if (r < 0.05) labels["apparate.io/inject"] = "false";
    else if (r < 0.08) labels["app.kubernetes.io/part-of"] = "apparate";
    const annotations: Record<string, string> = rnd() < 0.1 ? bigAnnotations(100 * 1024) : rnd() < 0.5 ? { "example.com/owner": `team-${i % 7}` } : {};
    const containers = Array.from({ length: 1 + Math.floor(rnd() * 4) }, (_, j) => ({ name: `c${j}`, image: imagePool(), resources: { requests: { cpu: "10m" } } }));
    const initContainers = Array.from({ length: Math.floor(rnd() * 3) }, (_, j) => ({ name: `init-${j}`, image: imagePool() }));
    const nodeSelector = pick([undefined, { "kubernetes.io/os": "linux" }, { "kubernetes.io/arch": "arm64" }, { "topology.kubernetes.io/zone": "zone-a" }]);
    const affinity = pick(affinities);
    const pod: PodLike = {
      apiVersion: "v1", kind: "Pod",
      metadata: { generateName: `random-${i}-`, namespace: ns.name, labels, ...(Object.keys(annotations).length ? { annotations } : {}) },
      spec: { containers, ...(initContainers.length ? { initContainers } : {}), ...(nodeSelector ? { nodeSelector } : {}), ...(affinity ? { affinity } : {}) } as PodLike["spec"],
    };
    out.push({ id: `random/${i}`, shape: "random", namespace: ns.name, operation: "CREATE", subresource: "", pod, expectCalled: selectedByChart(nsByName.get(ns.name)!, labels, "CREATE", "") });
  }
  return out;
}
