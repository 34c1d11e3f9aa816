// The HTTPS server (fastify). Two encapsulated plugins: the admission route on
// the TLS port, and the operational routes (/healthz, /readyz, /metrics), served
// both there and on a plain-HTTP port for probes and Prometheus.
import type { Server as HttpsServer } from "node:https";
import Fastify, { type FastifyError, type FastifyInstance, type FastifyPluginAsync } from "fastify";
import type { TLSSocket } from "node:tls";
import { peerNameAllowed, type ClientAuth } from "../tls/client-auth.js";
import { secureContextOptions, type ServingMaterial } from "../tls/settings.js";
import { handleReview, type HandlerDeps } from "./handler.js";
import { LargeReviewLane, sourceLimitsFor, type SourceLimits } from "./fairness.js";
import { allowResponse, BadReviewError, parseReview } from "./review.js";

/**
 * Ready once the caches have synced. A lost API connection afterwards does not make a
 * replica unready (its cached data still serves, and unready replicas would only let
 * pods through unaccelerated); it is reported as `degraded`.
 */
export interface Readiness { ready(): { ready: boolean; reasons: string[]; degraded?: string[] } }

export interface ServerOptions {
  deps: HandlerDeps;
  tls: ServingMaterial;
  readiness: Readiness;
  /** admission.clientAuth: client certificates are required and verified at the handshake. */
  clientAuth?: ClientAuth;
}

// The client CA of each server, kept for certificate swaps (a new secure context replaces the whole one).
const clientCas = new WeakMap<object, string>();

const opsRoutes = (deps: HandlerDeps, readiness: Readiness): FastifyPluginAsync => async (app) => {
  app.get("/healthz", async () => ({ status: "ok" }));
  app.get("/readyz", async (_req, reply) => {
    const r = readiness.ready();
    return reply.code(r.ready ? 200 : 503).send({ ready: r.ready, reasons: r.reasons, degraded: r.degraded ?? [] });
  });
  app.get("/metrics", async (_req, reply) => {
    reply.header("content-type", deps.metrics.registry.contentType);
    return deps.metrics.registry.metrics();
  });
};

// When a request's headers were read: the review's deadline counts from here, so reading
// and parsing the body are inside it.
const arrivals = new WeakMap<object, number>();

/** The answer to a review that is not worked on (its source is over its limit, or the lane's wait outlived the deadline): allowed, unchanged. */
function notWorkedOn(body: unknown, why: string): { status: number; body: unknown } {
  try {
    return { status: 200, body: allowResponse(parseReview(body).uid, undefined, [`apparate: ${why}; pod left unchanged`]) };
  } catch (err) {
    if (err instanceof BadReviewError) return { status: 400, body: { error: err.code, message: err.message } };
    throw err;
  }
}

const admissionRoutes = (deps: HandlerDeps, limits: SourceLimits): FastifyPluginAsync => async (app) => {
  const lane = new LargeReviewLane();
  app.addHook("onRequest", async (req) => { arrivals.set(req.raw, performance.now()); });
  app.post("/mutate", async (req, reply) => {
    const startedAt = arrivals.get(req.raw) ?? performance.now();
    const source = req.socket.remoteAddress ?? "";
    if (!limits.beginReview(source)) {
      const r = notWorkedOn(req.body, "too many reviews in flight from this client");
      return reply.code(r.status).send(r.body);
    }
    let release: (() => void) | undefined;
    try {
      // Large reviews one at a time, small ones never behind them.
      if (Number(req.headers["content-length"] ?? 0) > deps.config.admission.largeReviewBytes) {
        release = await lane.acquire(startedAt + deps.config.admission.deadlineMs, limits.isTrusted(source));
        if (!release) {
          const r = notWorkedOn(req.body, "the review's deadline ran out while other large reviews were worked on");
          return reply.code(r.status).send(r.body);
        }
      }
      const r = await handleReview(req.body, deps, startedAt);
      return reply.code(r.status).send(r.body);
    } finally {
      release?.();
      limits.endReview(source);
    }
  });
};

function errorHandler(this: FastifyInstance, err: FastifyError, _req: unknown, reply: { code(n: number): { send(b: unknown): unknown } }) {
  const status = err.statusCode && err.statusCode >= 400 && err.statusCode < 500 ? err.statusCode : 500;
  if (status === 500) this.log.error({ err }, "request failed");
  return reply.code(status).send({ error: err.code ?? "error", message: status === 500 ? "internal error" : err.message });
}

export async function buildAdmissionServer(opts: ServerOptions): Promise<FastifyInstance<HttpsServer>> {
  const a = opts.deps.config.admission;
  const app = Fastify({
    https: {
      ...secureContextOptions(opts.tls, opts.clientAuth?.ca),
      // With client authentication, a client without a certificate the CA signed is refused in the handshake.
      ...(opts.clientAuth ? { requestCert: true, rejectUnauthorized: true } : {}),
      // A TLS handshake that never finishes, headers sent a byte at a time, a body at
      // 1 byte per 2 s: each would hold a connection for minutes with Node's defaults.
      handshakeTimeout: a.idleTimeoutMs,
      headersTimeout: Math.min(a.requestTimeoutMs, 60_000),
      // Node checks requestTimeout/headersTimeout on this interval (30 s by default).
      connectionsCheckingInterval: Math.min(1000, a.requestTimeoutMs),
    } as never,
    bodyLimit: a.maxBodyBytes,
    logger: false,
    // Idle before or during a request (server.setTimeout); between requests the
    // keep-alive timeout applies instead, longer than the API server's own idle timeout
    // so that the API server closes first and never sends on a connection we closed.
    connectionTimeout: a.idleTimeoutMs,
    keepAliveTimeout: a.keepAliveTimeoutMs,
    requestTimeout: a.requestTimeoutMs,
    return503OnClosing: true,
  }) as unknown as FastifyInstance<HttpsServer>;
  // Per client address: a connection over its source's limit is closed at once, before TLS.
  const limits = sourceLimitsFor(a);
  app.server.maxConnections = limits.serverMaxConnections;
  app.server.on("connection", (socket: import("node:net").Socket) => {
    const source = socket.remoteAddress ?? "";
    if (!limits.openConnection(source)) { socket.destroy(); return; }
    socket.once("close", () => limits.closeConnection(source));
  });
  if (opts.clientAuth) {
    const { ca, allowedNames } = opts.clientAuth;
    clientCas.set(app, ca);
    // Verified, but not a name the operator listed: closed before the HTTP server sees the socket.
    app.server.prependListener("secureConnection", (s: TLSSocket) => { if (!peerNameAllowed(s.getPeerCertificate(), allowedNames)) s.destroy(); });
  }
  app.setErrorHandler(errorHandler);
  await app.register(admissionRoutes(opts.deps, limits));
  await app.register(opsRoutes(opts.deps, opts.readiness));
  return app;
}

/** `extra`: more read-only routes on the plain-HTTP port (the observer's window). */
export async function buildOpsServer(deps: HandlerDeps, readiness: Readiness, extra?: FastifyPluginAsync): Promise<FastifyInstance> {
  const app = Fastify({ logger: false });
  app.setErrorHandler(errorHandler);
  await app.register(opsRoutes(deps, readiness));
  if (extra) await app.register(extra);
  return app;
}

/** Swaps the serving certificate in place: new handshakes use it, open connections continue. */
export function swapCertificate(app: FastifyInstance<HttpsServer>, tls: ServingMaterial): void {
  app.server.setSecureContext(secureContextOptions(tls, clientCas.get(app)));
}
