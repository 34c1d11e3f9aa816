// Builds the registry side from the config: client, resolver and the configured
// credentials (imagePullSecretsCrs as a docker config file).
import { readFileSync } from "node:fs";
import type { Config } from "../config/config.js";
import type { Metrics } from "../observability/metrics.js";
import { RegistryClient } from "./client.js";
import { parseDockerConfig, type Keyring } from "./credentials.js";
import { TagResolver } from "./resolver.js";

export interface RegistryStack {
  client: RegistryClient;
  resolver: TagResolver;
  keyring?: Keyring;
  close(): Promise<void>;
  /** Closes at once, aborting requests in flight. */
  destroy(): Promise<void>;
}

export function createRegistryStack(config: Config, metrics: Metrics, endpoints?: ReadonlyMap<string, string>): RegistryStack {
  const r = config.registry;
  const client = new RegistryClient({
    requestTimeoutMs: r.requestTimeoutMs, plainHttp: r.plainHttp, metrics,
    ...(r.caFile ? { caFile: r.caFile } : {}), ...(endpoints ? { endpoints } : {}),
  });
  const resolver = new TagResolver(client, {
    positiveTtlMs: r.positiveTtlSeconds * 1000, negativeTtlMs: r.negativeTtlSeconds * 1000,
    unknownBackoffMs: r.unknownBackoffSeconds * 1000, jitter: r.ttlJitter, maxEntries: r.cacheMaxEntries,
    breakerFailures: r.breakerFailures, breakerCooldownMs: r.breakerCooldownSeconds * 1000, metrics,
  });
  const keyring = r.dockerConfigFile ? parseDockerConfig(readFileSync(r.dockerConfigFile, "utf8"), r.dockerConfigFile) : undefined;
  return { client, resolver, ...(keyring ? { keyring } : {}), close: () => client.close(), destroy: () => client.destroy() };
}
