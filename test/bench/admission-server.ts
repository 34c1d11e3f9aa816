// One server of the admission cost benchmark, in its own process so that its CPU time
// (process.cpuUsage) is its own: the webhook as `apparate serve` builds it, or the
// same-response baseline (the same fastify options, the same request parsed, the same
// response bytes sent, no work). Driven over IPC by test/bench/admission-cost.ts.
import { readFileSync } from "node:fs";
import type { Server as HttpsServer } from "node:https";
import Fastify, { type FastifyInstance } from "fastify";
import { pino } from "pino";
import type { HandlerDeps } from "../../src/admission/handler.js";
import { PlanMemo } from "../../src/admission/plan-memo.js";
import { buildAdmissionServer } from "../../src/admission/server.js";
import { compileConfig } from "../../src/config/config.js";
import { createLogger } from "../../src/observability/logger.js";
import { Metrics } from "../../src/observability/metrics.js";
import { createRegistryStack } from "../../src/registry/stack.js";
import { secureContextOptions, type ServingMaterial } from "../../src/tls/settings.js";

export interface ServerArgs {
  kind: "webhook" | "same-response";
  tls: ServingMaterial;
  /** webhook: the config document. */
  config?: unknown;
  /** webhook: false turns the plan memo off (to show what it saves). */
  planMemo?: boolean;
  /** same-response: the webhook's response to the benchmark review, as it sent it. */
  responseFile?: string;
}

export type ServerMessage = { cmd: "cpu" } | { cmd: "stop" };
export interface CpuReply { user: number; system: number }

async function webhook(args: ServerArgs): Promise<FastifyInstance<HttpsServer>> {
  const config = compileConfig(args.config);
  const metrics = new Metrics();
  const stack = createRegistryStack(config, metrics);
  // As in production (pino's synchronous sonic-boom at info level), into /dev/null.
  const logger = createLogger({ destination: pino.destination({ dest: "/dev/null", sync: true }) });
  const deps: HandlerDeps = { config, lookup: stack.resolver, logger, metrics, ...(args.planMemo === false ? {} : { planMemo: new PlanMemo() }) };
  return buildAdmissionServer({ deps, tls: args.tls, readiness: { ready: () => ({ ready: true, reasons: [] }) } });
}

async function sameResponse(args: ServerArgs): Promise<FastifyInstance<HttpsServer>> {
  const config = compileConfig({});
  // The object fastify serializes, as the webhook's handler returns one: the same
  // serializer turns it into the same bytes (the driver checks they are identical).
  const response = JSON.parse(readFileSync(args.responseFile!, "utf8")) as unknown;
  const app = Fastify({
    https: secureContextOptions(args.tls),
    bodyLimit: config.admission.maxBodyBytes,
    logger: false,
    keepAliveTimeout: 75_000,
    return503OnClosing: true,
  }) as unknown as FastifyInstance<HttpsServer>;
  app.post("/mutate", async (_req, reply) => reply.code(200).send(response));
  return app;
}

async function main(): Promise<void> {
  const args = JSON.parse(process.argv[2]!) as ServerArgs;
  const app = args.kind === "webhook" ? await webhook(args) : await sameResponse(args);
  await app.listen({ port: 0, host: "127.0.0.1" });
  const port = (app.server.address() as { port: number }).port;
  process.on("message", (m: ServerMessage) => {
    if (m.cmd === "cpu") process.send!({ cpu: process.cpuUsage() satisfies CpuReply });
    else if (m.cmd === "stop") void app.close().then(() => process.exit(0));
  });
  process.send!({ port });
}

void main();
