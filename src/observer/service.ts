// The observer inside `apparate serve`: recorder, watches and Lease, and the ops
// route `apparate report` reads (GET /observer/starts on the metrics port).
import { hostname } from "node:os";
import type { KubeConfig } from "@kubernetes/client-node";
import type { FastifyPluginAsync } from "fastify";
import type { Config } from "../config/config.js";
import type { Logger } from "../observability/logger.js";
import type { Metrics } from "../observability/metrics.js";
import { StartLatencyMetrics, StartRecorder } from "./recorder.js";
import { STARTS_PATH, type StartsWindow } from "./report.js";
import { startStartObserver, type StartObserver } from "./watcher.js";

export interface ObserverService {
  observer: StartObserver;
  recorder: StartRecorder;
  routes: FastifyPluginAsync;
  stop(): Promise<void>;
}

export function startObserverService(kc: KubeConfig, config: Config, logger: Logger, metrics: Metrics,
  namespaceLabels: (name: string) => Readonly<Record<string, string>> | undefined): ObserverService {
  const recorder = new StartRecorder(new StartLatencyMetrics(metrics.registry), config.observer.windowSize);
  const identity = process.env.POD_NAME ?? hostname();
  const observer = startStartObserver(kc, config, logger, recorder, {
    identity,
    namespace: process.env.POD_NAMESPACE ?? config.releaseNamespace,
    leaseName: config.observer.leaseName,
    leaseDurationSeconds: config.observer.leaseDurationSeconds,
    graceMs: config.observer.graceSeconds * 1000,
    tickMs: Math.max(1000, Math.floor((config.observer.leaseDurationSeconds * 1000) / 3)),
    enabledNamespace: (ns) => config.namespaces.has(ns) || namespaceLabels(ns)?.[config.namespaceLabelKey] === config.namespaceLabelValue,
  });
  const routes: FastifyPluginAsync = async (app) => {
    app.get(STARTS_PATH, async (): Promise<StartsWindow> => {
      const holder = observer.holder();
      return { identity, leader: observer.leader(), ...(holder ? { holder } : {}), starts: recorder.window() };
    });
  };
  return { observer, recorder, routes, stop: () => observer.stop() };
}
