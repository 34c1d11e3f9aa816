// `apparate node-agent`: runs in the privileged DaemonSet pod (see the chart for why).
import { existsSync, readFileSync, writeFileSync } from "node:fs";
import { parseArgs } from "node:util";
import { Ajv } from "ajv";
import { parse as parseYaml } from "yaml";
import type { FromSchema } from "json-schema-to-ts";
import { ConfigError } from "../config/config.js";
import { formatSchemaErrors } from "../config/schema-errors.js";
import { createLogger } from "../observability/logger.js";
import { loadKubeConfig } from "../kube/sources.js";
import { NodeAgent } from "./agent.js";
import { checkSnapshotter } from "./health.js";
import { Installer } from "./installer.js";
import { NodeLabeler } from "./label.js";
import { discoverContainerd } from "./node.js";
import { HostContainerd } from "./runtime.js";
import { SystemdSnapshotter } from "./service.js";

const schema = {
  type: "object", additionalProperties: false,
  properties: {
    mirrors: { type: "object", additionalProperties: { anyOf: [{ type: "string" }, { type: "array", items: { type: "string" } }] }, default: {} },
    // Unset: the config the running containerd was started with (its --config, from the host's /proc).
    containerdConfig: { type: "string", pattern: "^/" },
    containerdBinary: { type: "string", default: "containerd" },
    containerdSocket: { type: "string", pattern: "^/" },
    restartCommand: { type: "array", items: { type: "string" }, minItems: 1 },
    replaceSnapshotter: { type: "boolean", default: false },
    stateDir: { type: "string", pattern: "^/", default: "/var/lib/apparate-node" },
    readyFile: { type: "string", pattern: "^/", default: "/tmp/apparate-node/ready" },
    certsDir: { type: "string", pattern: "^/", default: "/etc/containerd/certs.d" },
    nodeLabelKey: { type: "string", default: "cloud.tencent.com/apparate" },
    nodeLabelValue: { type: "string", default: "true" },
    healthCheckSeconds: { type: "integer", minimum: 1, default: 10 },
    unhealthyThreshold: { type: "integer", minimum: 1, default: 3 },
    dockerConfigFile: { type: "string" },
    plainHttp: { type: "array", items: { type: "string" }, default: [] },
    snapshotterSocket: { type: "string", default: "/run/apparate-stargz/stargz.sock" },
    snapshotterRoot: { type: "string", default: "/var/lib/apparate-stargz" },
    snapshotterConfigDir: { type: "string", default: "/etc/apparate-stargz" },
    snapshotterBinary: { type: "string", default: "/opt/apparate/bin/containerd-stargz-grpc" },
  },
} as const;

/** The node agent's file after defaults, derived from the schema above. */
export type NodeAgentConfig = FromSchema<typeof schema>;

const validate = new Ajv({ useDefaults: true, allErrors: true }).compile(schema);

export function loadNodeAgentConfig(path: string | undefined): NodeAgentConfig {
  const doc = (path ? parseYaml(readFileSync(path, "utf8")) : {}) ?? {};
  if (!validate(doc)) {
    throw new ConfigError("config-invalid", `${path ?? "config"}: ${formatSchemaErrors(validate.errors, doc).join("; ")}`, doc);
  }
  return doc as unknown as NodeAgentConfig;
}

export const mirrorList = (m: Record<string, string | string[]>) => Object.fromEntries(Object.entries(m).map(([k, v]) => [k, Array.isArray(v) ? v : [v]]));

export async function nodeAgentMain(argv: string[]): Promise<number> {
  const { values } = parseArgs({ args: argv, options: {
    config: { type: "string" }, uninstall: { type: "boolean", default: false }, check: { type: "boolean", default: false },
    "then-wait": { type: "boolean", default: false },
  } });
  const cfg = loadNodeAgentConfig(values.config);
  const logger = createLogger({ name: "apparate-node-agent" });
  const hostRoot = process.env.APPARATE_HOST_ROOT ?? "";
  if (values.check) {
    const h = await checkSnapshotter(`${hostRoot}${cfg.snapshotterSocket}`);
    process.stdout.write(`${h.healthy ? "healthy" : "unhealthy"}${h.reason ? `: ${h.reason}` : ""}\n`);
    return h.healthy ? 0 : 1;
  }
  const node = process.env.NODE_NAME;
  // Know the node: the config, socket and unit of the containerd that runs, unless configured.
  const facts = discoverContainerd(hostRoot);
  const containerdConfig = cfg.containerdConfig ?? facts?.config ?? "/etc/containerd/config.toml";
  const seedFrom = cfg.containerdConfig ? undefined : facts?.seedFrom;
  const restartCommand = cfg.restartCommand ?? facts?.restartCommand;
  logger.info({ flavour: facts?.flavour ?? "not found", config: containerdConfig, socket: cfg.containerdSocket ?? facts?.socket, restartCommand }, "containerd on this node");
  const runtime = new HostContainerd({
    hostPid: Boolean(hostRoot), hostRoot, binary: cfg.containerdBinary, socket: cfg.containerdSocket ?? facts?.socket ?? "/run/containerd/containerd.sock",
    ...(restartCommand ? { restartCommand } : {}), probeDir: `${cfg.stateDir}/probe`,
  });
  // Fault injection for tests of crash safety: die right after the named journal step.
  const crashAfter = process.env.APPARATE_CRASH_AFTER;
  const afterStep = crashAfter ? (step: string) => { if (step === crashAfter) { logger.warn({ step }, "APPARATE_CRASH_AFTER: exiting"); process.kill(process.pid, "SIGKILL"); } } : undefined;
  const dockerConfigDir = cfg.dockerConfigFile ? `${cfg.snapshotterConfigDir}/docker` : undefined;
  if (cfg.dockerConfigFile && existsSync(cfg.dockerConfigFile)) {
    // Credentials for lazy fetches (imagePullSecretsCrs), where the snapshotter's DOCKER_CONFIG points.
    const { mkdirSync } = await import("node:fs");
    mkdirSync(`${hostRoot}${dockerConfigDir}`, { recursive: true, mode: 0o700 });
    writeFileSync(`${hostRoot}${dockerConfigDir}/config.json`, readFileSync(cfg.dockerConfigFile), { mode: 0o600 });
  }
  const agent = new NodeAgent({
    installer: new Installer({
      hostRoot, containerdConfig, certsDir: cfg.certsDir, snapshotterSocket: cfg.snapshotterSocket,
      snapshotterConfigDir: cfg.snapshotterConfigDir, mirrors: mirrorList(cfg.mirrors), plainHttp: cfg.plainHttp,
      stateDir: cfg.stateDir, replaceSnapshotter: cfg.replaceSnapshotter, ...(seedFrom ? { seedFrom } : {}), ...(afterStep ? { afterStep } : {}),
    }, runtime, logger),
    runtime,
    service: new SystemdSnapshotter({ hostRoot, sourceBinary: cfg.snapshotterBinary, binary: "/usr/local/bin/apparate-stargz-grpc", socket: cfg.snapshotterSocket, root: cfg.snapshotterRoot, configDir: cfg.snapshotterConfigDir, ...(dockerConfigDir ? { dockerConfigDir } : {}) }, logger),
    ...(node ? { labeler: new NodeLabeler(loadKubeConfig(), node, cfg.nodeLabelKey, cfg.nodeLabelValue, logger) } : {}),
    socket: `${hostRoot}${cfg.snapshotterSocket}`,
    checkIntervalMs: cfg.healthCheckSeconds * 1000,
    unhealthyThreshold: cfg.unhealthyThreshold,
    readyFile: cfg.readyFile,
    logger,
  });
  if (values.uninstall) {
    // Idempotent: a second run finds nothing of apparate's and succeeds.
    const r = await agent.uninstall();
    if (r.outcome === "keys-removed") {
      // The node's config was regenerated since install: apparate's keys are out of it, nothing older was put back.
      for (const n of r.notes) process.stderr.write(`apparate node-agent --uninstall: ${n}\n`);
      logger.warn({ notes: r.notes }, "apparate's keys removed from the node's current containerd config");
    } else if (!r.restored) {
      for (const n of r.notes) process.stderr.write(`apparate node-agent --uninstall: ${n}\n`);
      logger.error({ notes: r.notes }, "node not fully restored");
      if (r.notes.length > 0) return 1;
    } else logger.info("node restored");
    if (values["then-wait"]) {
      writeFileSync("/tmp/uninstalled", "done\n");
      await new Promise(() => undefined); // the hook DaemonSet's pod stays Ready until helm deletes it
    }
    return 0;
  }
  try {
    await agent.install();
  } catch (e) {
    // The node keeps its own config; the agent stays (unlabelled, not ready) and reports why.
    logger.error({ err: e }, "install failed; the node is not labelled");
  }
  agent.start();
  await new Promise<void>((resolve) => {
    // SIGTERM stops supervision only: the snapshotter service and its mounts stay.
    process.once("SIGTERM", () => { agent.stop(); resolve(); });
    process.once("SIGINT", () => { agent.stop(); resolve(); });
  });
  return 0;
}
