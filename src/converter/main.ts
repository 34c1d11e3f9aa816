// `apparate converter`: receives registry events, rescans, and converts what the rules
// select. One HTTP port: POST /events/<source>, GET /conversions, /metrics, /healthz,
// /readyz. SIGTERM stops taking work and aborts running conversions (the engine
// writes the accelerated tag last, so an aborted conversion leaves no tag).
import { createHash } from "node:crypto";
import { readFileSync } from "node:fs";
import { CoreV1Api, type CoreV1Event, type KubeConfig } from "@kubernetes/client-node";
import Fastify, { type FastifyInstance } from "fastify";
import { Registry } from "prom-client";
import type { Config } from "../config/config.js";
import { ConfigError } from "../config/config.js";
import { isAlreadyExists } from "../kube/status.js";
import type { Logger } from "../observability/logger.js";
import { Metrics } from "../observability/metrics.js";
import { createRegistryStack, type RegistryStack } from "../registry/stack.js";
import { LeaseClaims } from "./claim.js";
import { type ConvertImage, engineFor } from "./engine.js";
import { learnedPrefetch } from "./learned-prefetch.js";
import { PrefetchLists } from "../kube/prefetch-list.js";
import { JobDispatcher } from "./job-dispatch.js";
import type { JobSettings } from "./job-spec.js";
import { ConverterMetrics } from "./metrics.js";
import { RateLimiter } from "./rate-limit.js";
import { type ReceiverSource, receiverRoutes } from "./receivers.js";
import { type AuthorizedSend, HttpRegistryReader, type RegistryReader } from "./registry-reader.js";
import type { ScanTarget } from "./scan.js";
import { type ConversionRecord, Converter } from "./service.js";

/** Reads each source's secret from its file; a missing or empty one fails start-up naming the source. */
export function loadSources(config: Config): ReceiverSource[] {
  return config.converter.sources.map((s, i) => {
    let secret: string;
    try { secret = readFileSync(s.secretFile, "utf8").trim(); } catch (err) {
      throw new ConfigError("config-invalid", `converter.sources.${i} (${s.name}): cannot read secretFile ${s.secretFile}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`, s.secretFile);
    }
    if (!secret) throw new ConfigError("config-invalid", `converter.sources.${i} (${s.name}): secretFile ${s.secretFile} is empty`, s.secretFile);
    return { name: s.name, kind: s.kind, header: s.header.toLowerCase(), secret, ...(s.registry ? { registry: s.registry } : {}) };
  });
}

/** The registries a rescan visits: converter.scan, else every allowed registry. */
export function scanTargets(config: Config): ScanTarget[] {
  if (config.converter.scan.length > 0) return config.converter.scan.map((s) => ({ registry: s.registry, ...(s.repositories ? { repositories: s.repositories } : {}) }));
  return [...config.acceleration.registries].filter((r) => r !== "*").map((registry) => ({ registry }));
}

/** Registry reads with the configured credentials: the client's own auth (tokens, Basic, challenges). */
function authorizedSend(stack: RegistryStack): AuthorizedSend {
  return (domain, scope, req, signal) => {
    const path = /^repository:([^:]+):/.exec(scope)?.[1] ?? "";
    return stack.client.authorizedRequest(domain, scope, stack.keyring?.lookup(domain, path)[0], req, signal);
  };
}

export interface ConverterHandle {
  app: FastifyInstance;
  converter: Converter;
  url: string;
  /** Runs one rescan of every target now. */
  rescan(): Promise<void>;
  close(): Promise<void>;
}

export interface StartOptions {
  config: Config;
  /** Default: the conversion engine (src/convert) on this process's registry client. */
  convert?: ConvertImage;
  logger: Logger;
  port: number;
  host: string;
  /** Overrides for tests: registry endpoints, a reader, the Kubernetes client for Events. */
  endpoints?: ReadonlyMap<string, string>;
  reader?: RegistryReader;
  kube?: { kc: KubeConfig; namespace: string; podName: string };
  /** Skip the timer (tests call rescan()). Default: scan at start and every rescanIntervalSeconds. */
  scanOnStart?: boolean;
  /** Job mode: how often a replica at the Job cap looks again (tests shorten it). */
  jobSlotPollMs?: number;
}

/** converter.job with its namespace resolved: the converter's own unless set. */
export function jobSettings(config: Config, ownNamespace: string): JobSettings {
  const j = config.converter.job;
  return {
    image: j.image, namespace: j.namespace || ownNamespace, serviceAccountName: j.serviceAccountName,
    ttlSecondsAfterFinished: j.ttlSecondsAfterFinished, backoffLimit: j.backoffLimit, activeDeadlineSeconds: j.activeDeadlineSeconds,
    cpuRequest: j.cpuRequest, memoryRequest: j.memoryRequest, memoryLimit: j.memoryLimit, ephemeralStorage: j.ephemeralStorage,
    configMap: j.configMap, credentialsSecret: j.credentialsSecret, registryCaConfigMap: j.registryCaConfigMap, imagePullSecrets: [...j.imagePullSecrets],
  };
}

/** The engine of converter.mode: this process (inprocess) or one Kubernetes Job per conversion (job). */
function engineOf(o: StartOptions, stack: RegistryStack): ConvertImage {
  const { config } = o;
  if (config.converter.mode !== "job") return engineFor(stack, config, o.kube ? learnedPrefetch(new PrefetchLists(o.kube.kc, o.kube.namespace), o.logger) : undefined);
  if (!o.kube) throw new ConfigError("config-invalid", "converter.mode job needs the Kubernetes API (run in a cluster: KUBERNETES_SERVICE_HOST and POD_NAME set)", "job");
  const settings = jobSettings(config, o.kube.namespace);
  if (!settings.image) throw new ConfigError("config-invalid", "converter.job.image is empty: job mode runs apparate convert from that image", settings.image);
  if (!settings.configMap) throw new ConfigError("config-invalid", "converter.job.configMap is empty: the Job reads its configuration from it", settings.configMap);
  const reader = new HttpRegistryReader({ send: authorizedSend(stack), origin: (r) => stack.client.origin(r) });
  const wait = config.converter.job.waitSeconds;
  return new JobDispatcher({
    kc: o.kube.kc, settings, maxActive: config.converter.concurrency, reader, logger: o.logger,
    ...(wait > 0 ? { waitTimeoutMs: wait * 1000 } : {}), ...(o.jobSlotPollMs ? { slotPollMs: o.jobSlotPollMs } : {}),
  }).convert;
}

/** The Warning Event of a failed conversion, on the converter's Pod. Deterministic name: replicas do not repeat it. */
export function failureEvent(rec: ConversionRecord, namespace: string, podName: string, now = new Date()): CoreV1Event {
  const id = createHash("sha256").update(`${rec.source}@${rec.digest}`).digest("hex").slice(0, 16);
  return {
    metadata: { name: `${podName}.conversion-failed.${id}`, namespace },
    involvedObject: { apiVersion: "v1", kind: "Pod", name: podName, namespace },
    reason: "ConversionFailed", type: "Warning",
    message: `Conversion of ${rec.source} (${rec.digest}) to ${rec.target} failed ${rec.permanent ? "for good, not retried (retrying cannot help)" : `after ${rec.attempts} attempt(s)`}: ${rec.error ?? "unknown error"}`.slice(0, 1024),
    source: { component: "apparate-converter" }, reportingComponent: "apparate-converter", reportingInstance: podName,
    firstTimestamp: now, lastTimestamp: now, count: 1,
  };
}

export async function startConverter(o: StartOptions): Promise<ConverterHandle> {
  const { config, logger } = o;
  const sources = loadSources(config);
  const registry = new Registry();
  const metrics = new Metrics();
  const stack = createRegistryStack(config, metrics, o.endpoints);
  let converter: Converter | undefined;
  const cm = new ConverterMetrics(registry, () => ({ queued: converter?.queue.depth ?? 0, running: converter?.queue.active ?? 0 }));
  const core = o.kube ? o.kube.kc.makeApiClient(CoreV1Api) : undefined;
  converter = new Converter({
    config, convert: o.convert ?? engineOf(o, stack), metrics: cm, logger,
    ...(o.kube ? { claims: new LeaseClaims(o.kube.kc, o.kube.namespace, o.kube.podName) } : {}),
    onFailure: (rec) => {
      if (!core || !o.kube) return;
      const body = failureEvent(rec, o.kube.namespace, o.kube.podName);
      core.createNamespacedEvent({ namespace: o.kube.namespace, body }).catch((err: unknown) => {
        if (!isAlreadyExists(err)) logger.warn({ err }, "cannot emit the conversion failure event");
      });
    },
  });
  const c = converter;

  const limiters = new Map<string, RateLimiter>();
  const reader = o.reader ?? new HttpRegistryReader({
    send: authorizedSend(stack),
    origin: (r) => stack.client.origin(r),
    beforeRequest: async (r) => {
      let l = limiters.get(r);
      if (!l) { l = new RateLimiter(config.converter.scanRequestsPerSecond); limiters.set(r, l); }
      await l.take();
    },
  });

  const app = Fastify({ logger: false, bodyLimit: config.converter.maxBodyBytes, keepAliveTimeout: 75_000, return503OnClosing: true });
  app.setErrorHandler((err: { statusCode?: number; code?: string; message: string }, _req, reply) => {
    const status = err.statusCode && err.statusCode >= 400 && err.statusCode < 500 ? err.statusCode : 500;
    if (status === 500) logger.error({ err }, "request failed");
    return reply.code(status).send({ error: err.code ?? "error", message: status === 500 ? "internal error" : err.message });
  });
  await app.register(receiverRoutes({
    sources, maxBodyBytes: config.converter.maxBodyBytes,
    submit: (p, s) => c.submitPush(p, s.name),
    onReceived: (source, result) => cm.events.inc({ source, result }),
  }));
  app.get("/conversions", async () => c.conversions());
  app.get("/healthz", async () => ({ status: "ok" }));
  app.get("/readyz", async () => ({ ready: true }));
  app.get("/metrics", async (_req, reply) => {
    reply.header("content-type", registry.contentType);
    return (await registry.metrics()) + (await metrics.registry.metrics());
  });
  await app.listen({ port: o.port, host: o.host });
  const addr = app.server.address();
  const port = typeof addr === "object" && addr ? addr.port : o.port;

  const targets = scanTargets(config);
  let scanning: Promise<void> | undefined;
  const rescan = () => {
    scanning ??= c.scanAll(targets, reader).then(() => undefined).finally(() => { scanning = undefined; });
    return scanning;
  };
  let timer: NodeJS.Timeout | undefined;
  if (o.scanOnStart !== false && targets.length > 0) {
    void rescan();
    const every = config.converter.rescanIntervalSeconds;
    if (every > 0) { timer = setInterval(() => void rescan(), every * 1000); timer.unref(); }
  }
  logger.info({ port, sources: sources.map((s) => `${s.name} (${s.kind})`), scan: targets.map((t) => t.registry), mode: config.converter.mode, concurrency: config.converter.concurrency }, "converter listening");

  return {
    app, converter: c, url: `http://${o.host === "0.0.0.0" ? "127.0.0.1" : o.host}:${port}`, rescan,
    close: async () => {
      if (timer) clearInterval(timer);
      c.stop();
      await app.close();
      await stack.destroy();
    },
  };
}
