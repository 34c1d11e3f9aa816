// The HTTP side of registry events: one route per configured source
// (POST /events/<name>), a shared secret per source checked before the body is read,
// a body bound, and a fast answer: 202 once the pushes are queued, 400 with the reason
// for a payload that is not one, 503 when the queue is full (registries retry).
import { createHash, timingSafeEqual } from "node:crypto";
import type { FastifyPluginAsync, FastifyReply, FastifyRequest } from "fastify";
import { EventPayloadError, parseDistributionEnvelope, parseHarborWebhook, type EventSourceKind, type Headers, type ParsedEvents, type PushEvent } from "./events.js";

export interface ReceiverSource {
  name: string;
  kind: EventSourceKind;
  /** Header carrying the secret (lower case); distribution and Harbor both send Authorization. */
  header: string;
  /** Never logged. */
  secret: string;
  /** The registry host images are pulled by; overrides the host the event names. */
  registry?: string;
}

/** What became of one push. */
export type SubmitOutcome = "queued" | "duplicate" | "skipped" | "full";

export interface Submitted { outcome: SubmitOutcome; reason?: string }

export interface ReceiverDeps {
  sources: readonly ReceiverSource[];
  maxBodyBytes: number;
  /** Hands one push (with its registry resolved) to the queue. */
  submit(push: PushEvent & { registry: string }, source: ReceiverSource): Submitted;
  onReceived?(source: string, result: "accepted" | "unauthorized" | "bad_request" | "full"): void;
}

const digestOf = (s: string) => createHash("sha256").update(s).digest();

/** Constant-time comparison: hashing first makes the lengths equal. */
export function secretMatches(given: string | undefined, secret: string): boolean {
  if (given === undefined) return false;
  const g = digestOf(given);
  // Registries send the header value configured on their side: the bare secret, or "Bearer <secret>".
  return timingSafeEqual(g, digestOf(secret)) || timingSafeEqual(g, digestOf(`Bearer ${secret}`));
}

function headerValue(req: FastifyRequest, name: string): string | undefined {
  const v = req.headers[name];
  return Array.isArray(v) ? v[0] : v;
}

export function parseFor(kind: EventSourceKind, body: unknown, headers: Headers): ParsedEvents {
  return kind === "distribution" ? parseDistributionEnvelope(body) : parseHarborWebhook(body, headers);
}

export const receiverRoutes = (deps: ReceiverDeps): FastifyPluginAsync => async (app) => {
  const byName = new Map(deps.sources.map((s) => [s.name, s]));
  // Bodies are read as bytes and parsed here: the distribution media types and
  // CloudEvents are JSON under other names, and a parse error must be a 400 with its reason.
  app.removeAllContentTypeParsers();
  app.addContentTypeParser("*", { parseAs: "buffer", bodyLimit: deps.maxBodyBytes }, (_req, body, done) => done(null, body));

  app.addHook("onRequest", async (req: FastifyRequest<{ Params: { source: string } }>, reply: FastifyReply) => {
    const source = byName.get((req.params as { source?: string }).source ?? "");
    if (!source) return reply.code(404).send({ error: "unknown-source", message: "no event source of that name" });
    if (!secretMatches(headerValue(req, source.header), source.secret)) {
      deps.onReceived?.(source.name, "unauthorized");
      return reply.code(401).send({ error: "unauthorized", message: `the ${source.header} header does not carry this source's secret` });
    }
  });

  app.post<{ Params: { source: string } }>("/events/:source", async (req, reply) => {
    const source = byName.get(req.params.source)!;
    let parsed: ParsedEvents;
    try {
      const raw = req.body;
      if (!Buffer.isBuffer(raw) || raw.length === 0) throw new EventPayloadError("event-invalid", "the body is empty");
      let doc: unknown;
      try { doc = JSON.parse(raw.toString("utf8")); } catch (err) {
        throw new EventPayloadError("event-json", `the body is not JSON: ${(err as Error).message}`);
      }
      parsed = parseFor(source.kind, doc, req.headers);
    } catch (err) {
      if (!(err instanceof EventPayloadError)) throw err;
      deps.onReceived?.(source.name, "bad_request");
      return reply.code(400).send({ error: err.code, message: err.message });
    }
    const results: Array<{ image: string; outcome: SubmitOutcome; reason?: string }> = [];
    for (const p of parsed.pushes) {
      const registry = source.registry ?? p.registry;
      if (!registry) {
        results.push({ image: `${p.repository}:${p.tag}`, outcome: "skipped", reason: "the event names no registry host: set the source's registry" });
        continue;
      }
      const r = deps.submit({ ...p, registry }, source);
      results.push({ image: `${registry}/${p.repository}:${p.tag}`, outcome: r.outcome, ...(r.reason ? { reason: r.reason } : {}) });
    }
    if (results.some((r) => r.outcome === "full")) {
      deps.onReceived?.(source.name, "full");
      // The registry keeps the event and retries; the next scan also finds what is missing.
      return reply.code(503).header("retry-after", "5").send({ error: "queue-full", message: "the conversion queue is full", results });
    }
    deps.onReceived?.(source.name, "accepted");
    return reply.code(202).send({ results, ignored: parsed.ignored });
  });
};
