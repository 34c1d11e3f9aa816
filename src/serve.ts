// `apparate serve`: wires config, registry, Kubernetes caches and TLS into the
// HTTPS admission server, and drains in-flight reviews on SIGTERM.
import { readFileSync, watchFile, writeFileSync } from "node:fs";
import { parseArgs } from "node:util";
import { defaultConfig, loadConfigFile } from "./config/config.js";
import { ApparateError } from "./errors.js";
import { PlanMemo } from "./admission/plan-memo.js";
import { buildAdmissionServer, buildOpsServer, swapCertificate } from "./admission/server.js";
import type { HandlerDeps } from "./admission/handler.js";
import { createLogger } from "./observability/logger.js";
import { Metrics } from "./observability/metrics.js";
import { createRegistryStack } from "./registry/stack.js";
import { createCA, issueServing } from "./tls/certificates.js";
import type { ServingMaterial } from "./tls/settings.js";
import { clientAuthFromConfig } from "./tls/client-auth.js";
import { loadKubeConfig, startKubeSources, type KubeSources } from "./kube/sources.js";
import { TlsManager } from "./tls/manager.js";
import { startObserverService, type ObserverService } from "./observer/service.js";

/** How long SIGTERM waits for reviews in flight (the longest admission deadline is 9 s). */
const DRAIN_BUDGET_MS = 20_000;

function envInt(name: string, fallback: number): number {
  const v = process.env[name];
  if (v === undefined || v === "") return fallback;
  const n = Number(v);
  if (!Number.isInteger(n) || n < 0 || n > 65535) throw new ApparateError("env-invalid", `environment ${name}: ${JSON.stringify(v)} is not a port number`, v);
  return n;
}

export async function serve(argv: string[]): Promise<number> {
  const { values } = parseArgs({
    args: argv,
    options: {
      config: { type: "string" }, port: { type: "string" }, "metrics-port": { type: "string" }, host: { type: "string" },
      "tls-cert": { type: "string" }, "tls-key": { type: "string" }, "self-signed-ca-out": { type: "string" },
      kube: { type: "boolean", default: false },
      "tls-secret": { type: "string" }, service: { type: "string" }, "webhook-config": { type: "string" },
    },
  });
  const logger = createLogger();
  const configPath = values.config ?? process.env.APPARATE_CONFIG;
  const config = configPath ? loadConfigFile(configPath) : defaultConfig();
  // Read at start-up: a missing or broken CA bundle stops the webhook with the file named.
  const clientAuth = clientAuthFromConfig(config.admission.clientAuth);
  const port = values.port !== undefined ? Number(values.port) : envInt("PORT", 8443);
  const metricsPort = values["metrics-port"] !== undefined ? Number(values["metrics-port"]) : envInt("METRICS_PORT", 9090);
  const host = values.host ?? process.env.HOST ?? "0.0.0.0";
  if (!config.acceleration.anyRegistry && config.acceleration.registries.size === 0 && config.acceleration.enabled) {
    logger.warn("acceleration.registries is empty: no image will be tag-swapped");
  }

  const metrics = new Metrics({ defaults: true });
  const stack = createRegistryStack(config, metrics);

  // TLS: mounted files (self-managed Secret, cert-manager or bring-your-own), or a
  // throw-away CA for local runs (the demo).
  const certFile = values["tls-cert"] ?? process.env.TLS_CERT_FILE;
  const keyFile = values["tls-key"] ?? process.env.TLS_KEY_FILE;
  let tls: ServingMaterial;
  // Self-managed mode: the CA and serving certificate live in a Secret this process maintains.
  const tlsSecret = values["tls-secret"] ?? process.env.TLS_SECRET_NAME;
  let tlsManager: TlsManager | undefined;
  let onTls: ((m: ServingMaterial) => void) | undefined;
  if (tlsSecret) {
    const namespace = process.env.POD_NAMESPACE ?? config.releaseNamespace;
    tlsManager = new TlsManager(loadKubeConfig(), {
      namespace, secretName: tlsSecret,
      mode: process.env.TLS_SECRET_MODE === "external" ? "external" : "managed",
      serviceName: values.service ?? process.env.SERVICE_NAME ?? "apparate",
      webhookConfigName: values["webhook-config"] ?? process.env.WEBHOOK_CONFIG_NAME ?? "apparate",
      checkIntervalMs: 3_600_000,
      onChange: (m) => onTls?.(m),
    }, logger);
    await tlsManager.start();
    tls = tlsManager.material!;
  } else if (certFile && keyFile) {
    tls = { cert: readFileSync(certFile, "utf8"), key: readFileSync(keyFile, "utf8") };
  } else if (values["self-signed-ca-out"]) {
    const ca = createCA("apparate local CA", 30);
    tls = issueServing(ca, ["localhost"], 30, Date.now(), ["127.0.0.1"]);
    writeFileSync(values["self-signed-ca-out"], ca.cert);
  } else {
    throw new ApparateError("tls-missing", "no TLS material: set TLS_CERT_FILE and TLS_KEY_FILE (or --tls-cert/--tls-key), or --self-signed-ca-out for a local run");
  }

  let kube: KubeSources | undefined;
  let observer: ObserverService | undefined;
  if (values.kube || process.env.KUBERNETES_SERVICE_HOST) {
    kube = await startKubeSources(config, logger, metrics);
    if (config.observer.enabled) observer = startObserverService(loadKubeConfig(), config, logger, metrics, kube.namespaces.labels);
  }
  const deps: HandlerDeps = {
    config, lookup: stack.lookup, logger, metrics, planMemo: new PlanMemo(),
    ...(stack.keyring ? { configuredKeyring: stack.keyring } : {}),
    ...(kube ? { pullSecrets: kube.pullSecrets, namespaces: kube.namespaces, ...(kube.imageCaches ? { imageCaches: kube.imageCaches } : {}), ...(kube.labelledNodes ? { labelledNodes: kube.labelledNodes } : {}) } : {}),
  };
  let tlsReady = true;
  const readiness = {
    ready: () => {
      const reasons: string[] = [];
      if (!tlsReady) reasons.push("TLS material missing");
      if (kube) reasons.push(...kube.notReady());
      return { ready: reasons.length === 0, reasons, degraded: kube ? kube.degraded() : [] };
    },
  };
  const app = await buildAdmissionServer({ deps, tls, readiness, ...(clientAuth ? { clientAuth } : {}) });
  const ops = await buildOpsServer(deps, readiness, observer?.routes);
  onTls = (m) => { swapCertificate(app, m); tls = m; logger.info("serving certificate swapped in place"); };

  if (!tlsManager && certFile && keyFile) {
    // Mounted Secrets change by symlink swap; polling sees it where inotify may not.
    const reload = () => {
      try {
        const next = { cert: readFileSync(certFile, "utf8"), key: readFileSync(keyFile, "utf8") };
        if (next.cert !== tls.cert || next.key !== tls.key) {
          swapCertificate(app, next);
          tls = next;
          logger.info("serving certificate reloaded");
        }
        tlsReady = true;
      } catch (err) {
        logger.error({ err: (err as Error).message }, "cannot reload serving certificate; keeping the current one");
      }
    };
    watchFile(certFile, { interval: 2000 }, reload);
    watchFile(keyFile, { interval: 2000 }, reload);
  }

  await app.listen({ port, host });
  await ops.listen({ port: metricsPort, host });
  logger.info({ port, metricsPort, namespaces: [...config.namespaces] }, "apparate webhook listening");

  await new Promise<void>((resolve) => {
    const stop = async (signal: string) => {
      logger.info({ signal }, "draining in-flight reviews");
      // close() stops accepting and waits for in-flight requests to finish. Keep-alive
      // connections (the API server keeps them) are closed as soon as each turns idle,
      // and all of them after the drain budget, below Kubernetes' 30 s grace period.
      const idle = setInterval(() => { app.server.closeIdleConnections(); ops.server.closeIdleConnections(); }, 50);
      const hard = setTimeout(() => { app.server.closeAllConnections(); ops.server.closeAllConnections(); }, DRAIN_BUDGET_MS);
      await Promise.allSettled([app.close(), ops.close()]);
      clearInterval(idle);
      clearTimeout(hard);
      kube?.stop();
      await observer?.stop();
      tlsManager?.stop();
      // No review is left to answer: registry requests still open are abandoned
      // rather than waited for (a hung registry would hold the exit for its timeout).
      await stack.destroy();
      logger.info("drained; exiting");
      resolve();
    };
    process.once("SIGTERM", () => void stop("SIGTERM"));
    process.once("SIGINT", () => void stop("SIGINT"));
  });
  return 0;
}
