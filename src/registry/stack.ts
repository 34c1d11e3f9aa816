// Builds the registry side from the config: client, resolver and the configured
// credentials (imagePullSecretsCrs as a docker config file).
import { readFileSync } from "node:fs";
import type { Config } from "../config/config.js";
import type { Metrics } from "../observability/metrics.js";
import { RegistryClient } from "./client.js";
import { parseDockerConfig, type Keyring } from "./credentials.js";
import { DialPolicy } from "./network.js";
import { DigestLinkResolver, ReferenceLookup } from "./link-resolver.js";
import { OTHER, type TagLookup, TagResolver } from "./resolver.js";

export interface RegistryStack {
  client: RegistryClient;
  resolver: TagResolver;
  /** Conversion links of digest-pinned images (acceleration.digestPinned). */
  links: DigestLinkResolver;
  /** What the handler asks: tags of the resolver, digests of the links. */
  lookup: TagLookup;
  keyring?: Keyring;
  close(): Promise<void>;
  /** Closes at once, aborting requests in flight. */
  destroy(): Promise<void>;
}

/** Registry hosts the operator named: metric labels by name, and any address may be dialled. */
export function namedRegistryHosts(config: Config): Set<string> {
  const named = new Set<string>();
  for (const h of config.acceleration.registries) if (h !== "*") named.add(h);
  for (const h of config.rewrite.registries.keys()) if (config.acceleration.anyRegistry || config.acceleration.registries.has(h)) named.add(h);
  return named;
}

/** Metric label of a registry: configured hosts by name, every other host "other" (bounded series). */
export function registryLabeller(config: Config): (domain: string) => string {
  const named = namedRegistryHosts(config);
  return (domain) => (named.has(domain) ? domain : OTHER);
}

export function createRegistryStack(config: Config, metrics: Metrics, endpoints?: ReadonlyMap<string, string>): RegistryStack {
  const r = config.registry;
  const label = registryLabeller(config);
  const dialPolicy = new DialPolicy({ namedHosts: [...namedRegistryHosts(config), ...r.tokenRealms], allowPrivate: r.allowPrivateNetworks });
  const client = new RegistryClient({
    requestTimeoutMs: r.requestTimeoutMs, plainHttp: r.plainHttp, metrics, label, dialPolicy,
    tokenRealms: r.tokenRealms, maxConcurrentPerRegistry: r.maxConcurrentPerRegistry, maxRegistryHosts: r.maxRegistryHosts,
    ...(r.caFile ? { caFile: r.caFile } : {}), ...(endpoints ? { endpoints } : {}),
  });
  const resolver = new TagResolver(client, {
    positiveTtlMs: r.positiveTtlSeconds * 1000, negativeTtlMs: r.negativeTtlSeconds * 1000,
    unknownBackoffMs: r.unknownBackoffSeconds * 1000, jitter: r.ttlJitter, maxEntries: r.cacheMaxEntries,
    breakerFailures: r.breakerFailures, breakerCooldownMs: r.breakerCooldownSeconds * 1000, metrics,
    maxRegistryHosts: r.maxRegistryHosts, label,
  });
  const links = new DigestLinkResolver(client, resolver, {
    maxEntries: r.cacheMaxEntries, negativeTtlMs: r.negativeTtlSeconds * 1000, unknownBackoffMs: r.unknownBackoffSeconds * 1000, metrics,
  });
  const lookup = new ReferenceLookup(resolver, links);
    const keyring = r.dockerConfigFile ? parseDockerConfig(readFileSync(r.dockerConfigFile, "utf8"), r.dockerConfigFile) : undefined;
  return { client, resolver, links, lookup, ...(keyring ? { keyring } : {}), close: () => client.close(), destroy: () => client.destroy() };
}
