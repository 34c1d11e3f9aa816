// The event receivers over HTTP (fastify inject): authentication, body bound,
// 400 with the reason, 202 once queued, 503 when the queue is full.
import { readFileSync } from "node:fs";
import { join } from "node:path";
import Fastify from "fastify";
import { afterEach, describe, expect, it } from "vitest";
import type { PushEvent } from "../../src/converter/events.js";
import { receiverRoutes, secretMatches, type ReceiverSource, type Submitted } from "../../src/converter/receivers.js";

const FIX = join(__dirname, "../fixtures/registry-events");
const fixture = (name: string) => readFileSync(join(FIX, name), "utf8");
const V1 = "application/vnd.docker.distribution.events.v1+json";

const sources: ReceiverSource[] = [
  { name: "local", kind: "distribution", header: "authorization", secret: "s3cret" },
  { name: "harbor", kind: "harbor", header: "authorization", secret: "h4rbor", registry: "harbor.example.com" },
];

let apps: Array<{ close(): Promise<unknown> }> = [];
afterEach(async () => { await Promise.all(apps.map((a) => a.close())); apps = []; });

async function server(submit: (p: PushEvent & { registry: string }) => Submitted = () => ({ outcome: "queued" }), maxBodyBytes = 64 * 1024) {
  const got: Array<PushEvent & { registry: string }> = [];
  const app = Fastify();
  await app.register(receiverRoutes({ sources, maxBodyBytes, submit: (p) => { got.push(p); return submit(p); } }));
  apps.push(app);
  return { app, got };
}

describe("receivers", () => {
  it("a real registry's push with the right secret is queued: 202", async () => {
    const { app, got } = await server();
    const r = await app.inject({ method: "POST", url: "/events/local", headers: { "content-type": V1, authorization: "Bearer s3cret" }, payload: fixture("distribution-2.8-manifest-push.json") });
    expect(r.statusCode).toBe(202);
    expect(r.json().results).toEqual([{ image: "127.0.0.1:5077/team/app:v1", outcome: "queued" }]);
    expect(got).toHaveLength(1);
  });

  it.each([
    ["no header", {}],
    ["a wrong secret", { authorization: "Bearer wrong" }],
    ["another source's secret", { authorization: "h4rbor" }],
  ])("%s: 401 and nothing queued", async (_name, headers) => {
    const { app, got } = await server();
    const r = await app.inject({ method: "POST", url: "/events/local", headers: { "content-type": V1, ...headers }, payload: fixture("distribution-2.8-manifest-push.json") });
    expect(r.statusCode).toBe(401);
    expect(got).toEqual([]);
  });

  it("an unknown source is 404", async () => {
    const { app } = await server();
    const r = await app.inject({ method: "POST", url: "/events/nope", headers: { authorization: "s3cret" }, payload: "{}" });
    expect(r.statusCode).toBe(404);
  });

  it.each([
    ["not JSON", "{not json", /the body is not JSON/],
    ["empty", "", /empty/],
    ["not an envelope", '{"event":[]}', /"events" must be an array/],
  ])("malformed (%s): 400 with the reason", async (_n, payload, message) => {
    const { app, got } = await server();
    const r = await app.inject({ method: "POST", url: "/events/local", headers: { "content-type": V1, authorization: "s3cret" }, payload });
    expect(r.statusCode).toBe(400);
    expect(r.json().message).toMatch(message);
    expect(got).toEqual([]);
  });

  it("a body over the bound is 413, before any parsing", async () => {
    const { app, got } = await server(undefined, 1024);
    const r = await app.inject({ method: "POST", url: "/events/local", headers: { "content-type": V1, authorization: "s3cret" }, payload: fixture("distribution-push-v2.json") });
    expect(r.statusCode).toBe(413);
    expect(got).toEqual([]);
  });

  it("Harbor, both formats: the configured registry wins over the resource URL's host", async () => {
    const { app, got } = await server();
    for (const [file, type] of [["harbor-default-push.json", "application/json"], ["harbor-cloudevents-push.json", "application/cloudevents+json"]] as const) {
      const r = await app.inject({ method: "POST", url: "/events/harbor", headers: { "content-type": type, authorization: "h4rbor" }, payload: fixture(file) });
      expect(r.statusCode).toBe(202);
    }
    const ce = JSON.parse(fixture("harbor-cloudevents-push.json"));
    const r = await app.inject({ method: "POST", url: "/events/harbor", headers: { "content-type": "application/json", authorization: "h4rbor", "ce-specversion": "1.0", "ce-type": "harbor.artifact.pushed", "ce-id": "x" }, payload: JSON.stringify(ce.data) });
    expect(r.statusCode).toBe(202);
    expect(got.map((p) => `${p.registry}/${p.repository}:${p.tag}`)).toEqual(Array(3).fill("harbor.example.com/test-webhook/debian:latest"));
  });

  it("ignored events still answer 202 (registries must not back up), listing why", async () => {
    const { app, got } = await server();
    const r = await app.inject({ method: "POST", url: "/events/local", headers: { "content-type": V1, authorization: "s3cret" }, payload: fixture("distribution-2.8-pull.json") });
    expect(r.statusCode).toBe(202);
    expect(r.json().ignored).toEqual(["events[0]: action pull"]);
    expect(got).toEqual([]);
  });

  it("a full queue is 503 with Retry-After, so that the registry keeps the event", async () => {
    const { app } = await server(() => ({ outcome: "full" }));
    const r = await app.inject({ method: "POST", url: "/events/local", headers: { "content-type": V1, authorization: "s3cret" }, payload: fixture("distribution-2.8-manifest-push.json") });
    expect(r.statusCode).toBe(503);
    expect(r.headers["retry-after"]).toBe("5");
  });

  it("secretMatches: exact value or Bearer + value; nothing else", () => {
    expect(secretMatches("s", "s")).toBe(true);
    expect(secretMatches("Bearer s", "s")).toBe(true);
    expect(secretMatches("Bearer s ", "s")).toBe(false);
    expect(secretMatches("", "s")).toBe(false);
    expect(secretMatches(undefined, "s")).toBe(false);
  });
});
