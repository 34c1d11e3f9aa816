// Registry lookups against a real registry (Debian docker-registry) on loopback.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { parseReference, type ImageReference } from "../../src/image/reference.js";
import { RegistryClient } from "../../src/registry/client.js";
import { TagResolver } from "../../src/registry/resolver.js";
import { Metrics } from "../../src/observability/metrics.js";
import { DialPolicy } from "../../src/registry/network.js";
import type { Credential } from "../../src/registry/credentials.js";
import { pushImage, registryAvailable, startRegistry, type RunningRegistry } from "../support/registry.js";
import { startTokenServer, type TokenServer } from "../support/token-server.js";
import { answer, hang, startFaultServer, type FaultServer } from "../support/faults.js";
import { freePort } from "../support/ports.js";
import { readFileSync } from "node:fs";
import { Agent, request } from "undici";

const PASSWORD = "s3cr3t-Test-Passw0rd";
const basic = (u: string, p: string) => ({ authorization: `Basic ${Buffer.from(`${u}:${p}`).toString("base64")}` });

// The test registries listen on 127.0.0.1: allowed by name, as an operator would list an
// in-cluster registry (the hostile-server tests use other 127.0.0.x addresses).
const LOOPBACK_TEST_RANGE = "127.0.0.1/32";

function makeResolver(plainHttp: string[], over: Partial<{ timeout: number; breaker: number; caFile: string; tokenRealms: string[] }> = {}) {
  const metrics = new Metrics();
  const client = new RegistryClient({
    requestTimeoutMs: over.timeout ?? 1000, plainHttp, metrics, dialPolicy: new DialPolicy({ allowPrivate: [LOOPBACK_TEST_RANGE] }),
    ...(over.caFile ? { caFile: over.caFile } : {}), ...(over.tokenRealms ? { tokenRealms: over.tokenRealms } : {}),
  });
  const resolver = new TagResolver(client, {
    positiveTtlMs: 600_000, negativeTtlMs: 30_000, unknownBackoffMs: 0, jitter: 0.1, maxEntries: 1000,
    breakerFailures: over.breaker ?? 3, breakerCooldownMs: 60_000, metrics,
  });
  return { metrics, client, resolver };
}

async function counter(m: Metrics, name: string, labels: Record<string, string> = {}): Promise<number> {
  const metric = (await m.registry.getMetricsAsJSON()).find((x) => x.name === name);
  return (metric?.values ?? []).filter((v) => Object.entries(labels).every(([k, val]) => (v.labels as Record<string, string>)[k] === val)).reduce((a, v) => a + v.value, 0);
}

const ref = (host: string, s: string): ImageReference => parseReference(`${host}/${s}`);
const never = () => new AbortController().signal;

describe.skipIf(!registryAvailable)("registry lookups against a real registry", () => {
  let anon: RunningRegistry;
  let basicReg: RunningRegistry;
  let token: TokenServer;
  let tokenReg: RunningRegistry;

  beforeAll(async () => {
    anon = await startRegistry();
    await pushImage(anon.url, "team/web", "1.0-apparate", "oci-manifest");
    await pushImage(anon.url, "team/web", "2.0-apparate", "oci-index");
    await pushImage(anon.url, "team/web", "3.0-apparate", "docker-v2");
    await pushImage(anon.url, "team/web", "4.0-apparate", "docker-list");
    basicReg = await startRegistry({ htpasswd: { user: "alice", password: PASSWORD } });
    await pushImage(basicReg.url, "private/app", "1.0-apparate", "oci-manifest", basic("alice", PASSWORD));
    token = await startTokenServer({ bob: PASSWORD }, { https: true });
    tokenReg = await startRegistry({ token });
    // Seed the token registry through a token obtained like any client would.
    const t = await (await request(`${token.realm}?service=${token.service}&scope=repository:tok/app:pull,push`, { headers: basic("bob", PASSWORD), dispatcher: new Agent({ connect: { ca: readFileSync(token.caFile!) } }) })).body.json() as { token: string };
    await pushImage(tokenReg.url, "tok/app", "1.0-apparate", "oci-index", { authorization: `Bearer ${t.token}` });
  }, 60_000);

  afterAll(async () => {
    await Promise.all([anon?.stop(), basicReg?.stop(), tokenReg?.stop(), token?.stop()]);
  });

  it.each([
    ["team/web:1.0-apparate", "exists", "application/vnd.oci.image.manifest.v1+json"],
    ["team/web:2.0-apparate", "exists", "application/vnd.oci.image.index.v1+json"],
    ["team/web:3.0-apparate", "absent", "not an OCI image"],
    ["team/web:4.0-apparate", "absent", "not an OCI image"],
    ["team/web:9.9-apparate", "absent", "does not exist"],
    ["team/nothing:1.0-apparate", "absent", "does not exist"],
  ])("anonymous %s is %s", async (image, kind, detail) => {
    const { resolver, client } = makeResolver([anon.host]);
    const r = await resolver.lookup(ref(anon.host, image), [], never());
    expect(r.kind).toBe(kind);
    expect(JSON.stringify(r)).toContain(detail);
    if (r.kind === "exists") expect(r.digest).toMatch(/^sha256:[0-9a-f]{64}$/);
    await client.close();
  });

  it("htpasswd: anonymous is unknown (unauthorized), the right credential finds it, a wrong one before it is skipped", async () => {
    const { resolver, client } = makeResolver([basicReg.host]);
    const r0 = await resolver.lookup(ref(basicReg.host, "private/app:1.0-apparate"), [], never());
    expect(r0).toMatchObject({ kind: "unknown" });
    expect((r0 as { reason: string }).reason).toMatch(/unauthorized/);
    const wrong: Credential = { username: "alice", password: "nope", source: "test" };
    const right: Credential = { username: "alice", password: PASSWORD, source: "test" };
    expect((await resolver.lookup(ref(basicReg.host, "private/app:1.0-apparate"), [wrong], never())).kind).toBe("unknown");
    expect((await resolver.lookup(ref(basicReg.host, "private/app:1.0-apparate"), [wrong, right], never())).kind).toBe("exists");
    expect((await resolver.lookup(ref(basicReg.host, "private/app:2.0-apparate"), [right], never())).kind).toBe("absent");
    await client.close();
  });

  it("token auth: real JWTs from an https token service listed in registry.tokenRealms; tokens are cached per scope", async () => {
    const { resolver, client } = makeResolver([tokenReg.host], { caFile: token.caFile!, tokenRealms: [token.host] });
    const bob: Credential = { username: "bob", password: PASSWORD, source: "test" };
    const before = token.requests;
    expect((await resolver.lookup(ref(tokenReg.host, "tok/app:1.0-apparate"), [bob], never())).kind).toBe("exists");
    expect((await resolver.lookup(ref(tokenReg.host, "tok/app:2.0-apparate"), [bob], never())).kind).toBe("absent");
    // One token for the repository, reused for the second tag.
    expect(token.requests - before).toBe(1);
    // Anonymous gets a token without access: the registry refuses, the answer is unknown.
    expect((await resolver.lookup(ref(tokenReg.host, "tok/app:1.0-apparate"), [], never())).kind).toBe("unknown");
    await client.close();
  });

  it("an answer obtained with a credential is never served to a request without it", async () => {
    const { resolver, client, metrics } = makeResolver([basicReg.host]);
    const right: Credential = { username: "alice", password: PASSWORD, source: "test" };
    expect((await resolver.lookup(ref(basicReg.host, "private/app:1.0-apparate"), [right], never())).kind).toBe("exists");
    expect((await resolver.lookup(ref(basicReg.host, "private/app:1.0-apparate"), [], never())).kind).toBe("unknown");
    expect(await counter(metrics, "apparate_registry_cache_total", { result: "hit" })).toBe(0);
    expect((await resolver.lookup(ref(basicReg.host, "private/app:1.0-apparate"), [right], never())).kind).toBe("exists");
    expect(await counter(metrics, "apparate_registry_cache_total", { result: "hit" })).toBe(1);
    await client.close();
  });

  it("a burst of 1,000 concurrent lookups of one new image makes exactly one registry request", async () => {
    const { resolver, client, metrics } = makeResolver([anon.host]);
    const r = ref(anon.host, "team/web:2.0-apparate");
    const answers = await Promise.all(Array.from({ length: 1000 }, () => resolver.lookup(r, [], never())));
    expect(answers.every((a) => a.kind === "exists")).toBe(true);
    expect(await counter(metrics, "apparate_registry_requests_total", { kind: "manifest" })).toBe(1);
    // And the cached answer serves the next burst with no request at all.
    await Promise.all(Array.from({ length: 100 }, () => resolver.lookup(r, [], never())));
    expect(await counter(metrics, "apparate_registry_requests_total", { kind: "manifest" })).toBe(1);
    await client.close();
  });

  describe("faults", () => {
    let fault: FaultServer;
    beforeAll(async () => { fault = await startFaultServer(answer(500)); });
    afterAll(async () => { await fault.stop(); });

    it.each([
      [403, /403/], [429, /rate limited/], [500, /answered 500/], [503, /answered 503/],
    ])("HTTP %i is unknown, with the reason", async (status, reason) => {
      fault.setHandler(answer(status, status === 429 ? { "retry-after": "7" } : {}));
      const { resolver, client } = makeResolver([fault.host]);
      const r = await resolver.lookup(ref(fault.host, "x/y:1-apparate"), [], never());
      expect(r.kind).toBe("unknown");
      expect((r as { reason: string }).reason).toMatch(reason);
      await client.close();
    });

    it("HEAD answered with 405 falls back to GET", async () => {
      fault.setHandler((req, res) => {
        if (req.method === "HEAD") { res.writeHead(405).end(); return; }
        res.writeHead(200, { "content-type": "application/vnd.oci.image.index.v1+json", "docker-content-digest": "sha256:" + "a".repeat(64) }).end("{}");
      });
      const { resolver, client } = makeResolver([fault.host]);
      expect(await resolver.lookup(ref(fault.host, "x/y:2-apparate"), [], never())).toMatchObject({ kind: "exists", digest: "sha256:" + "a".repeat(64) });
      await client.close();
    });

    it("a hanging registry costs at most the deadline; the breaker then answers at once", async () => {
      fault.setHandler(hang);
      const { resolver, client } = makeResolver([fault.host], { timeout: 300, breaker: 2 });
      const t0 = performance.now();
      const r = await resolver.lookup(ref(fault.host, "x/y:3-apparate"), [], AbortSignal.timeout(150));
      const spent = performance.now() - t0;
      expect(r).toMatchObject({ kind: "unknown", reason: "deadline exceeded" });
      expect(spent).toBeLessThan(1000);
      // The request itself times out at 300 ms and counts as a fault; two faults open the breaker.
      await new Promise((res) => setTimeout(res, 400));
      await resolver.lookup(ref(fault.host, "x/y:4-apparate"), [], never());
      expect(resolver.breakerState(fault.host)).toBe("open");
      const t1 = performance.now();
      const r2 = await resolver.lookup(ref(fault.host, "x/y:5-apparate"), [], never());
      expect(r2).toMatchObject({ kind: "unknown" });
      expect((r2 as { reason: string }).reason).toMatch(/circuit breaker open/);
      expect(performance.now() - t1).toBeLessThan(50);
      await client.close();
    });
  });

  it("a registry that is down is unknown quickly", async () => {
    const port = await freePort();
    const host = `127.0.0.1:${port}`;
    const { resolver, client } = makeResolver([host]);
    const t0 = performance.now();
    const r = await resolver.lookup(ref(host, "x/y:1-apparate"), [], never());
    expect(r.kind).toBe("unknown");
    expect((r as { reason: string }).reason).toMatch(/ECONNREFUSED/);
    expect(performance.now() - t0).toBeLessThan(1000);
    await client.close();
  });
});
