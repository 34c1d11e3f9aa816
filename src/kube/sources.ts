// The webhook's Kubernetes inputs, all informer-backed (never one API call per
// review): namespace labels, pull secrets, image caches.
import { CoreV1Api, CustomObjectsApi, KubeConfig, type KubernetesListObject, type V1Namespace, type V1Secret } from "@kubernetes/client-node";
import type { Config } from "../config/config.js";
import type { Logger } from "../observability/logger.js";
import type { Metrics } from "../observability/metrics.js";
import { Keyring, type DockerConfigJson } from "../registry/credentials.js";
import type { NamespaceSource, PullSecretSource } from "../admission/handler.js";
import { ImageCacheIndex } from "../imagecache/policy.js";
import { imageCacheSpecOf, type ImageCacheObject } from "../imagecache/object.js";
import { startInformer, type ManagedInformer } from "./informer.js";
import { startImageCacheEvents } from "../imagecache/events.js";
import { startLabelledNodes, type LabelledNodeSource } from "./labelled-nodes.js";

export interface KubeSources {
  pullSecrets: PullSecretSource;
  namespaces: NamespaceSource;
  imageCaches?: ImageCacheIndex;
  /** With required placement: the labelled nodes that take pods. */
  labelledNodes?: LabelledNodeSource;
  notReady(): string[];
  /** Synced informers that lost their watch: still serving their cached data. */
  degraded(): string[];
  stop(): void;
}

export function loadKubeConfig(): KubeConfig {
  const kc = new KubeConfig();
  kc.loadFromDefault();
  return kc;
}

const SECRET_TYPES = ["kubernetes.io/dockerconfigjson", "kubernetes.io/dockercfg"] as const;

function keyringOf(secret: V1Secret): Keyring | undefined {
  const data = secret.data ?? {};
  const raw = secret.type === "kubernetes.io/dockercfg" ? data[".dockercfg"] : data[".dockerconfigjson"];
  if (!raw) return undefined;
  try {
    const doc = JSON.parse(Buffer.from(raw, "base64").toString("utf8")) as DockerConfigJson;
    const k = new Keyring();
    k.add(doc, `secret ${secret.metadata?.namespace}/${secret.metadata?.name}`);
    return k;
  } catch {
    return undefined;
  }
}

export async function startKubeSources(config: Config, logger: Logger, metrics: Metrics, kc: KubeConfig = loadKubeConfig()): Promise<KubeSources> {
  const core = kc.makeApiClient(CoreV1Api);
  const informers: ManagedInformer<never>[] = [];

  const ns = startInformer<V1Namespace>(kc, "namespaces", "/api/v1/namespaces", () => core.listNamespace(), logger);
  informers.push(ns as never);

  // Parsed keyrings are memoised per secret resourceVersion.
  const parsed = new Map<string, { rv: string | undefined; keyring: Keyring | undefined }>();
  // Cluster-wide, or (registry.pullSecretNamespaces) one informer per namespace, so that a
  // namespaced Role in each is all the webhook needs.
  const scopes: Array<string | undefined> = config.registry.pullSecretNamespaces.length > 0 ? [...config.registry.pullSecretNamespaces] : [undefined];
  const secretInformers = config.registry.usePodPullSecrets
    ? SECRET_TYPES.flatMap((type) => scopes.map((namespace) => namespace
      ? startInformer<V1Secret>(kc, `secrets(${type}, ${namespace})`, `/api/v1/namespaces/${namespace}/secrets`,
        () => core.listNamespacedSecret({ namespace, fieldSelector: `type=${type}` }), logger, { fieldSelector: `type=${type}` })
      : startInformer<V1Secret>(kc, `secrets(${type})`, "/api/v1/secrets",
        () => core.listSecretForAllNamespaces({ fieldSelector: `type=${type}` }), logger, { fieldSelector: `type=${type}` })))
    : [];
  informers.push(...(secretInformers as never[]));

  let index: ImageCacheIndex | undefined;
  if (config.imageCache.enabled) {
    const { group, version, plural } = config.imageCache;
    const custom = kc.makeApiClient(CustomObjectsApi);
    const idx = new ImageCacheIndex();
    index = idx;
    const ic = startInformer<ImageCacheObject>(kc, "imagecaches", `/apis/${group}/${version}/${plural}`,
      () => custom.listClusterCustomObject({ group, version, plural }) as Promise<KubernetesListObject<ImageCacheObject>>, logger, {
        onSetup: (inf) => {
          const put = (o: ImageCacheObject) => { const s = imageCacheSpecOf(o); if (s) idx.upsert(s); metrics.imageCaches.set(idx.size); };
          inf.on("add", put);
          inf.on("update", put);
          inf.on("delete", (o) => { if (o.metadata?.name) idx.remove(o.metadata.name); metrics.imageCaches.set(idx.size); });
        },
      });
    informers.push(ic as never);
    if (config.imageCache.events) informers.push(startImageCacheEvents(kc, logger) as never);
  }

  // Not among the informers readiness waits for: until it syncs, the label is assumed present
  // (today's behaviour), and a webhook without nodes RBAC still serves.
  const placement = config.acceleration.placement;
  const nodes = placement.mode === "required" ? startLabelledNodes(kc, placement.nodeLabelKey, placement.nodeLabelValue, logger, metrics) : undefined;

  return {
    ...(nodes ? { labelledNodes: nodes } : {}),
    namespaces: { labels: (name) => ns.informer.get(name)?.metadata?.labels ?? (ns.synced() ? {} : undefined) },
    pullSecrets: {
      keyrings: (namespace, names) => {
        const out: Keyring[] = [];
        for (const name of names) {
          for (const inf of secretInformers) {
            const s = inf.informer.get(name, namespace);
            if (!s) continue;
            const key = `${namespace}/${name}`;
            const rv = s.metadata?.resourceVersion;
            let p = parsed.get(key);
            if (!p || p.rv !== rv) { p = { rv, keyring: keyringOf(s) }; parsed.set(key, p); }
            if (p.keyring) out.push(p.keyring);
          }
        }
        return out;
      },
    },
    ...(index ? { imageCaches: index } : {}),
    notReady: () => informers.filter((i) => !i.synced()).map((i) => `informer ${i.name} has not synced`),
    degraded: () => [...informers, ...(nodes ? [nodes.informer as never] : [])].filter((i: ManagedInformer<never>) => i.synced() && !i.connected())
      .map((i: ManagedInformer<never>) => `informer ${i.name} is disconnected from the API server; serving cached data`),
    stop: () => { for (const i of informers) i.stop(); nodes?.informer.stop(); },
  };
}
