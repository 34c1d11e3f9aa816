// Loading and validating the configuration file. A bad file fails start-up with
// the key path and the offending value; the result is an immutable, compiled Config.
import { readFileSync } from "node:fs";
import { Ajv } from "ajv";
import { parse as parseYaml } from "yaml";
import { ApparateError } from "../errors.js";
import { isValidDomain, parseReference } from "../image/reference.js";
import { parseAddressRange, parseCidr } from "../registry/network.js";
import { configSchema, type RawConfig } from "./schema.js";
import { formatSchemaErrors } from "./schema-errors.js";
import { isQualifiedName } from "../mutate/validation.js";

export class ConfigError extends ApparateError {}

export interface CompiledRule {
  readonly name: string;
  readonly registry?: string;
  readonly namespace?: string;
  readonly repository?: RegExp;
  readonly tag?: RegExp;
}

export interface Config extends Omit<RawConfig, "namespaces" | "acceleration" | "rewrite" | "admission"> {
  namespaces: ReadonlySet<string>;
  namespaceLabelKey: string;
  namespaceLabelValue: string;
  acceleration: Omit<RawConfig["acceleration"], "rules" | "registries"> & {
    registries: ReadonlySet<string>;
    anyRegistry: boolean;
    rules: readonly CompiledRule[];
  };
  rewrite: { registries: ReadonlyMap<string, RewriteTarget> };
  /** maxConnectionsPerSource always set (a quarter of maxConnections when the file has none). */
  admission: RawConfig["admission"] & { maxConnectionsPerSource: number };
}

/** Where a registry's images go: a host, and an optional path prefix (a Harbor proxy-cache project). */
export interface RewriteTarget { domain: string; prefix: string }

/** Namespaces apparate never mutates, whatever the configuration says. */
export const ALWAYS_EXCLUDED_NAMESPACES: readonly string[] = ["kube-system"];

const ajv = new Ajv({ allErrors: true, useDefaults: true, strict: false });
ajv.addFormat("regex", { type: "string", validate: (s: string) => { try { new RegExp(s); return true; } catch { return false; } } });
const validate = ajv.compile(configSchema);

// Docker Hub is reached under several names; all of them mean docker.io.
const DOCKER_HUB_ALIASES = new Set(["docker.io", "index.docker.io", "registry-1.docker.io"]);
export function normaliseRegistryHost(host: string): string {
  const h = host.trim().replace(/^https?:\/\//, "").replace(/\/+$/, "");
  return DOCKER_HUB_ALIASES.has(h) ? "docker.io" : h;
}

/** Validates an already parsed document and compiles it. Throws ConfigError. */
export function compileConfig(doc: unknown, source = "config"): Config {
  const raw = (doc ?? {}) as Record<string, unknown>;
  if (typeof raw !== "object" || Array.isArray(raw)) throw new ConfigError("config-invalid", `${source}: the configuration must be a mapping`, doc);
  const copy = structuredClone(raw);
  if (!validate(copy)) {
    const lines = formatSchemaErrors(validate.errors, copy);
    throw new ConfigError("config-invalid", `${source}: ${lines.join("; ")}`, doc);
  }
  const c = copy as unknown as RawConfig;

  const nsList = typeof c.namespaces === "string" ? c.namespaces.split(",").map((s) => s.trim()).filter(Boolean) : c.namespaces;
  const [labelKey, labelValue] = c.namespaceLabel.split("=") as [string, string];

  const registries = new Set<string>();
  for (const r of c.acceleration.registries) {
    const host = normaliseRegistryHost(r);
    if (host !== "*" && !isValidDomain(host)) {
      throw new ConfigError("config-invalid", `${source}: acceleration.registries: ${JSON.stringify(r)} is not a registry host`, r);
    }
    registries.add(host);
  }
  const rules = c.acceleration.rules.map((r, i): CompiledRule => ({
    name: r.name ?? `rule-${i}`,
    ...(r.registry !== undefined ? { registry: normaliseRegistryHost(r.registry) } : {}),
    ...(r.namespace !== undefined ? { namespace: r.namespace } : {}),
    // Rules are anchored so that "web" does not match "my-web-old" by accident.
    ...(r.repository !== undefined ? { repository: new RegExp(`^(?:${r.repository})$`) } : {}),
    ...(r.tag !== undefined ? { tag: new RegExp(`^(?:${r.tag})$`) } : {}),
  }));

  const rewrite = new Map<string, RewriteTarget>();
  for (const [from, to] of Object.entries(c.rewrite.registries)) {
    const f = normaliseRegistryHost(from);
    const t = normaliseRegistryHost(to);
    const slash = t.indexOf("/");
    const target = { domain: slash < 0 ? t : t.slice(0, slash), prefix: slash < 0 ? "" : t.slice(slash + 1) };
    let ok = isValidDomain(f) && isValidDomain(target.domain);
    if (ok && target.prefix) {
      try { parseReference(`${target.domain}/${target.prefix}/x`); } catch { ok = false; }
    }
    if (!ok) {
      throw new ConfigError("config-invalid", `${source}: rewrite.registries.${from}: ${JSON.stringify(to)} is not a registry host mapping (host[:port][/path])`, { from, to });
    }
    rewrite.set(f, target);
  }
  const tokenRealms = c.registry.tokenRealms.map((e) => {
    const h = e.trim().replace(/^https:\/\//i, "").replace(/\/.*$/, "").toLowerCase();
    if (/^http:\/\//i.test(e.trim()) || !isValidDomain(h)) {
      throw new ConfigError("config-invalid", `${source}: registry.tokenRealms: ${JSON.stringify(e)} is not a token service host (host[:port], reached over https)`, e);
    }
    return h;
  });
  for (const e of c.registry.allowPrivateNetworks) {
    if (!parseCidr(e) && !isValidDomain(e.trim().toLowerCase())) {
      throw new ConfigError("config-invalid", `${source}: registry.allowPrivateNetworks: ${JSON.stringify(e)} is neither a host[:port] nor an address range (CIDR)`, e);
    }
  }
  const a = c.admission;
  for (const e of a.trustedSources) {
    if (!parseAddressRange(e)) {
      throw new ConfigError("config-invalid", `${source}: admission.trustedSources: ${JSON.stringify(e)} is neither an IP address nor an address range (CIDR)`, e);
    }
  }
  if (a.clientAuth.enabled && !a.clientAuth.caFile) {
    throw new ConfigError("config-invalid", `${source}: admission.clientAuth.caFile: required when admission.clientAuth.enabled is true`, a.clientAuth);
  }
  const maxConnectionsPerSource = a.maxConnectionsPerSource ?? Math.max(1, Math.floor(a.maxConnections / 4));
  if (maxConnectionsPerSource > a.maxConnections) {
    throw new ConfigError("config-invalid", `${source}: admission.maxConnectionsPerSource: ${maxConnectionsPerSource} is more than admission.maxConnections (${a.maxConnections}); one client could take every connection`, maxConnectionsPerSource);
  }
  const { nodeLabelKey } = c.acceleration.placement;
  if (!isQualifiedName(nodeLabelKey)) {
    throw new ConfigError("config-invalid", `${source}: acceleration.placement.nodeLabelKey: ${JSON.stringify(nodeLabelKey)} is not a label key (qualified name)`, nodeLabelKey);
  }
  return Object.freeze({
    ...c,
    namespaces: new Set(nsList),
    namespaceLabelKey: labelKey,
    namespaceLabelValue: labelValue,
    acceleration: { ...c.acceleration, registries, anyRegistry: registries.has("*"), rules },
    rewrite: { registries: rewrite },
    registry: { ...c.registry, plainHttp: c.registry.plainHttp.map(normaliseRegistryHost), tokenRealms },
    admission: { ...a, maxConnectionsPerSource },
  });
}

export function parseConfigText(text: string, source: string): Config {
  let doc: unknown;
  try {
    doc = parseYaml(text);
  } catch (err) {
    throw new ConfigError("config-yaml", `${source}: not valid YAML: ${(err as Error).message}`, text, { cause: err });
  }
  return compileConfig(doc, source);
}

export function loadConfigFile(path: string): Config {
  let text: string;
  try {
    text = readFileSync(path, "utf8");
  } catch (err) {
    throw new ConfigError("config-read", `cannot read config file ${path}: ${(err as Error).message}`, path, { cause: err });
  }
  return parseConfigText(text, path);
}

export function defaultConfig(): Config {
  return compileConfig({});
}
