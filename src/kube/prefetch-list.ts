// A learned prefetch list, kept in the cluster between the node that recorded it and the
// converter that uses it: one ConfigMap per repository, `apparate-prefetch-<hash>` in the
// release namespace, keys `repository` (domain/path) and `prefetch` (one path a line, the
// format `apparate convert --prefetch` reads). The node agent may only create it (it cannot
// change an existing list, or any other ConfigMap); the converter only reads it. To learn
// a list again, delete the ConfigMap.
import { createHash } from "node:crypto";
import { CoreV1Api, type KubeConfig, type V1ConfigMap } from "@kubernetes/client-node";
import { parsePrefetchList } from "../convert/command.js";
import { ApparateError } from "../errors.js";
import { isAlreadyExists, isNotFound } from "./status.js";

export const PREFETCH_CONFIGMAP_PREFIX = "apparate-prefetch-";
/** A node is not trusted with more: a bigger list is refused when read. */
export const MAX_PREFETCH_PATHS = 20_000;

export class PrefetchListError extends ApparateError {}

/** `apparate-prefetch-` + the first 20 hex digits of sha256(domain/path): a valid name for any repository. */
export function prefetchConfigMapName(repository: string): string {
  return PREFETCH_CONFIGMAP_PREFIX + createHash("sha256").update(repository).digest("hex").slice(0, 20);
}

export function prefetchConfigMap(repository: string, files: readonly string[], namespace: string, recordedBy?: string): V1ConfigMap {
  return {
    apiVersion: "v1",
    kind: "ConfigMap",
    metadata: {
      name: prefetchConfigMapName(repository),
      namespace,
      labels: { "app.kubernetes.io/name": "apparate", "app.kubernetes.io/component": "prefetch-list" },
      ...(recordedBy ? { annotations: { "apparate.io/recorded-by": recordedBy.slice(0, 253) } } : {}),
    },
    data: { repository, prefetch: `${files.join("\n")}\n` },
  };
}

/**
 * The list in a ConfigMap read back, checked as untrusted input: the repository key must
 * be the one asked for (the name is only a hash of it), the list must parse and stay small.
 */
export function listFromConfigMap(cm: V1ConfigMap, repository: string): string[] {
  const name = cm.metadata?.name ?? "";
  if (cm.data?.repository !== repository) throw new PrefetchListError("prefetch-list-invalid", `ConfigMap ${name} is for ${JSON.stringify(cm.data?.repository)}, not ${repository}`, name);
  const text = cm.data?.prefetch ?? "";
  let list: string[];
  try {
    list = parsePrefetchList(text);
  } catch (err) {
    throw new PrefetchListError("prefetch-list-invalid", `ConfigMap ${name}: ${(err as Error).message}`, name);
  }
  if (list.length === 0) throw new PrefetchListError("prefetch-list-invalid", `ConfigMap ${name} names no path`, name);
  if (list.length > MAX_PREFETCH_PATHS) throw new PrefetchListError("prefetch-list-invalid", `ConfigMap ${name} names ${list.length} paths, more than ${MAX_PREFETCH_PATHS}`, name);
  return list;
}

export class PrefetchLists {
  private readonly core: CoreV1Api;
  constructor(kc: KubeConfig, private readonly namespace: string) {
    this.core = kc.makeApiClient(CoreV1Api);
  }

  /** The learned list for domain/path, or undefined when none was recorded. */
  async read(repository: string): Promise<string[] | undefined> {
    let cm: V1ConfigMap;
    try {
      cm = await this.core.readNamespacedConfigMap({ name: prefetchConfigMapName(repository), namespace: this.namespace });
    } catch (err) {
      if (isNotFound(err)) return undefined;
      throw err;
    }
    return listFromConfigMap(cm, repository);
  }

  /** Publishes a list; an existing one is kept (the node may not overwrite it) and reported. */
  async publish(repository: string, files: readonly string[], recordedBy?: string): Promise<"created" | "exists"> {
    try {
      await this.core.createNamespacedConfigMap({ namespace: this.namespace, body: prefetchConfigMap(repository, files, this.namespace, recordedBy) });
      return "created";
    } catch (err) {
      if (isAlreadyExists(err)) return "exists";
      throw err;
    }
  }
}
