// Starts the real admission server (fastify, HTTPS with a fresh CA) for tests.
import { Writable } from "node:stream";
import { Agent, request } from "undici";
import type { FastifyInstance } from "fastify";
import type { Server as HttpsServer } from "node:https";
import { compileConfig, type Config } from "../../src/config/config.js";
import { buildAdmissionServer } from "../../src/admission/server.js";
import type { HandlerDeps } from "../../src/admission/handler.js";
import { createLogger } from "../../src/observability/logger.js";
import { Metrics } from "../../src/observability/metrics.js";
import { createRegistryStack, type RegistryStack } from "../../src/registry/stack.js";
import { createCA, issueServing } from "../../src/tls/certificates.js";
import { clientAuthFromConfig } from "../../src/tls/client-auth.js";
import type { PodLike } from "../../src/mutate/pod.js";

export interface TestWebhook {
  url: string;
  app: FastifyInstance<HttpsServer>;
  ca: string;
  logs: string[];
  metrics: Metrics;
  stack: RegistryStack;
  post(body: unknown, raw?: string, headers?: Record<string, string>): Promise<{ status: number; json: any }>;
  stop(): Promise<void>;
}

export async function startWebhook(configDoc: unknown, extra: Partial<HandlerDeps> = {}): Promise<TestWebhook> {
  const config: Config = compileConfig(configDoc);
  const logs: string[] = [];
  const sink = new Writable({ write(chunk, _enc, cb) { logs.push(chunk.toString()); cb(); } });
  const logger = createLogger({ destination: sink, level: "debug" });
  const metrics = new Metrics();
  const stack = createRegistryStack(config, metrics);
  const ca = createCA("apparate test CA", 1);
  const tls = issueServing(ca, ["localhost"], 1, Date.now(), ["127.0.0.1"]);
  const deps: HandlerDeps = { config, lookup: stack.lookup, logger, metrics, ...(stack.keyring ? { configuredKeyring: stack.keyring } : {}), ...extra };
  const clientAuth = clientAuthFromConfig(config.admission.clientAuth);
  const app = await buildAdmissionServer({ deps, tls, readiness: { ready: () => ({ ready: true, reasons: [] }) }, ...(clientAuth ? { clientAuth } : {}) });
  await app.listen({ port: 0, host: "127.0.0.1" });
  const addr = app.server.address();
  const port = typeof addr === "object" && addr ? addr.port : 0;
  const url = `https://127.0.0.1:${port}`;
  const dispatcher = new Agent({ connect: { ca: ca.cert } });
  return {
    url, app, ca: ca.cert, logs, metrics, stack,
    post: async (body, raw, headers = {}) => {
      const res = await request(`${url}/mutate`, {
        method: "POST", dispatcher, headers: { "content-type": "application/json", ...headers },
        body: raw ?? JSON.stringify(body),
      });
      const text = await res.body.text();
      let json: unknown;
      try { json = JSON.parse(text); } catch { json = text; }
      return { status: res.statusCode, json };
    },
    stop: async () => { await app.close(); await stack.close(); await dispatcher.close(); },
  };
}

let seq = 0;
export function review(pod: PodLike, over: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    apiVersion: "admission.k8s.io/v1", kind: "AdmissionReview",
    request: {
      uid: `00000000-0000-4000-8000-${String(++seq).padStart(12, "0")}`,
      kind: { group: "", version: "v1", kind: "Pod" }, resource: { group: "", version: "v1", resource: "pods" },
      requestKind: { group: "", version: "v1", kind: "Pod" },
      namespace: pod.metadata?.namespace ?? "default", operation: "CREATE",
      userInfo: { username: "system:serviceaccount:kube-system:replicaset-controller" },
      object: pod, oldObject: null, dryRun: false, options: { apiVersion: "meta.k8s.io/v1", kind: "CreateOptions" },
      ...over,
    },
  };
}

export function decodePatch(json: any): any[] {
  const p = json?.response?.patch;
  return p ? JSON.parse(Buffer.from(p, "base64").toString("utf8")) : [];
}
