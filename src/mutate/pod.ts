// The few Pod fields apparate reads and writes, typed loosely on purpose: the
// webhook must pass through any field it does not know, unchanged.
export interface ContainerLike {
  name: string;
  image?: string;
  imagePullPolicy?: string;
  [k: string]: unknown;
}

export interface NodeSelectorRequirement { key: string; operator: string; values?: string[] }
export interface NodeSelectorTerm { matchExpressions?: NodeSelectorRequirement[]; matchFields?: NodeSelectorRequirement[] }

export interface PodLike {
  apiVersion?: string;
  kind?: string;
  metadata?: {
    name?: string;
    generateName?: string;
    namespace?: string;
    labels?: Record<string, string>;
    annotations?: Record<string, string>;
    ownerReferences?: Array<{ kind?: string; name?: string }>;
    [k: string]: unknown;
  };
  spec?: {
    containers?: ContainerLike[];
    initContainers?: ContainerLike[];
    ephemeralContainers?: ContainerLike[];
    nodeSelector?: Record<string, string>;
    imagePullSecrets?: Array<{ name?: string }>;
    affinity?: {
      nodeAffinity?: {
        requiredDuringSchedulingIgnoredDuringExecution?: { nodeSelectorTerms?: NodeSelectorTerm[] };
        preferredDuringSchedulingIgnoredDuringExecution?: Array<{ weight: number; preference: NodeSelectorTerm }>;
      };
      [k: string]: unknown;
    };
    [k: string]: unknown;
  };
  [k: string]: unknown;
}

export type ContainerKind = "initContainers" | "containers" | "ephemeralContainers";
export const CONTAINER_KINDS: readonly ContainerKind[] = ["initContainers", "containers", "ephemeralContainers"];

/** The key a container has in apparate.io/original-images: "app", "init:setup", "ephemeral:debug". */
export function containerKey(kind: ContainerKind, name: string): string {
  return kind === "containers" ? name : `${kind === "initContainers" ? "init" : "ephemeral"}:${name}`;
}
