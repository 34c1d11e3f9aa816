// apparate's real admission server, serving the certificate a Service would need: the API
// server's webhook client dials the resolved endpoint and verifies <service>.<namespace>.svc
// against the configuration's caBundle.
import { Writable } from "node:stream";
import type { FastifyInstance } from "fastify";
import type { Server as HttpsServer } from "node:https";
import { compileConfig } from "../../src/config/config.js";
import { buildAdmissionServer } from "../../src/admission/server.js";
import type { NamespaceSource } from "../../src/admission/handler.js";
import type { LabelledNodeSource } from "../../src/kube/labelled-nodes.js";
import { createLogger } from "../../src/observability/logger.js";
import { Metrics } from "../../src/observability/metrics.js";
import { createRegistryStack, type RegistryStack } from "../../src/registry/stack.js";
import { createCA, issueServing } from "../../src/tls/certificates.js";
import { clientAuthFromConfig } from "../../src/tls/client-auth.js";

export interface ServiceWebhook {
  url: string;
  caBundle: string;
  /** AdmissionReview requests received on /mutate. */
  requests: number;
  logs: string[];
  app: FastifyInstance<HttpsServer>;
  stack: RegistryStack;
  stop(): Promise<void>;
}

export async function startServiceWebhook(configDoc: unknown, serverName: string, namespaces: NamespaceSource, labelledNodes?: LabelledNodeSource): Promise<ServiceWebhook> {
  const config = compileConfig(configDoc);
  const logs: string[] = [];
  const logger = createLogger({ destination: new Writable({ write(c, _e, cb) { logs.push(c.toString()); cb(); } }), level: "info" });
  const metrics = new Metrics();
  const stack = createRegistryStack(config, metrics);
  const clientAuth = clientAuthFromConfig(config.admission.clientAuth);
  const ca = createCA("apparate apiserver-test CA", 1);
  const tls = issueServing(ca, [serverName], 1, Date.now());
  const app = await buildAdmissionServer({
    deps: { config, lookup: stack.resolver, logger, metrics, namespaces, ...(labelledNodes ? { labelledNodes } : {}), ...(stack.keyring ? { configuredKeyring: stack.keyring } : {}) },
    tls, readiness: { ready: () => ({ ready: true, reasons: [] }) },
    ...(clientAuth ? { clientAuth } : {}),
  });
  const state = { requests: 0 };
  app.addHook("onRequest", async (req) => { if (req.url.startsWith("/mutate")) state.requests++; });
  await app.listen({ port: 0, host: "127.0.0.1" });
  const addr = app.server.address();
  const port = typeof addr === "object" && addr ? addr.port : 0;
  return {
    url: `https://127.0.0.1:${port}`, caBundle: ca.cert, logs, app, stack,
    get requests() { return state.requests; },
    stop: async () => { await app.close(); await stack.close(); },
  };
}
