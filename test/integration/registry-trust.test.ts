// A hostile registry and token service, attacked as an adversary would: each on its
// own loopback address (127.0.0.2, .3, …: other hosts as far as apparate can tell).
// Each test asserts what every server received (no credential, no request) and that
// the pod's warnings carry only words apparate wrote, never bytes a server sent.
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { IncomingMessage, ServerResponse } from "node:http";
import { decideRealm } from "../../src/registry/realm.js";
import { DialPolicy, specialAddressKind } from "../../src/registry/network.js";
import { startFaultServer, type FaultServer } from "../support/faults.js";
import { decodePatch, review, startWebhook, type TestWebhook } from "../support/webhook.js";
import { webPod } from "../support/pods.js";

const USER = "ci-robot";
const PASSWORD = "Trust-Test-Passw0rd-51";
const BASIC = `Basic ${Buffer.from(`${USER}:${PASSWORD}`).toString("base64")}`;
// Every byte a hostile server sends carries this marker; no warning may contain it.
const MARK = "EVIL-7f3a";
const OCI = "application/vnd.oci.image.manifest.v1+json";

const challenge = (realm: string) => (_req: IncomingMessage, res: ServerResponse) => {
  res.writeHead(401, { "www-authenticate": `Bearer realm="${realm}",service="${MARK}",error="${MARK}"`, "content-type": `text/${MARK}` }).end(`{"errors":"${MARK}"}`);
};

const hostileText = (_req: IncomingMessage, res: ServerResponse) => { res.writeHead(200, { "content-type": "application/json" }).end(`ami-0abcd1 ${MARK}`); };

function pod(images: string[]) {
  return webPod({ initContainers: [], containers: images.map((image, i) => ({ name: `c${i}`, image })) });
}

function warningsOf(json: any): string[] { return json?.response?.warnings ?? []; }

describe("token realms: credentials go only where the operator allowed", () => {
  let registry: FaultServer; // the hostile registry, 127.0.0.2
  let other: FaultServer;    // another host, 127.0.0.3
  let samePortElse: FaultServer; // the registry's host, another port
  let hook: TestWebhook;
  let n = 0;
  const image = () => `${registry.host}/team/app${++n}:1.0`;

  beforeAll(async () => {
    registry = await startFaultServer(() => undefined, { address: "127.0.0.2" });
    other = await startFaultServer(hostileText, { address: "127.0.0.3" });
    samePortElse = await startFaultServer(hostileText, { address: "127.0.0.2" });
    const dir = mkdtempSync(join(tmpdir(), "apparate-trust-"));
    const dockerConfig = join(dir, "config.json");
    writeFileSync(dockerConfig, JSON.stringify({ auths: { [registry.host]: { username: USER, password: PASSWORD } } }));
    hook = await startWebhook({
      acceleration: { registries: [registry.host] },
      registry: { plainHttp: [registry.host], dockerConfigFile: dockerConfig, unknownBackoffSeconds: 0, requestTimeoutMs: 1000, breakerFailures: 1000 },
      admission: { deadlineMs: 1500 },
    });
  });
  afterAll(async () => { await hook?.stop(); await Promise.all([registry?.stop(), other?.stop(), samePortElse?.stop()]); });
  afterEach(() => { registry.received.length = 0; other.received.length = 0; samePortElse.received.length = 0; });

  it.each([
    ["another host over https", () => `https://${other.host}/token`, () => other],
    ["another host over plain http", () => `http://${other.host}/token`, () => other],
    ["another port of the registry's host", () => `http://${samePortElse.host}/token`, () => samePortElse],
    ["another port over https", () => `https://${samePortElse.host}/token`, () => samePortElse],
    ["a URL with user information", () => `http://${MARK}:x@${registry.host}/token`, () => registry],
  ])("a realm on %s is never contacted; the reason names the refused host and no server bytes", async (_name, realm, target) => {
    registry.setHandler(challenge(realm()));
    const { status, json } = await hook.post(review(pod([image()])));
    expect(status).toBe(200);
    expect(decodePatch(json).filter((op: any) => op.path.endsWith("/image"))).toEqual([]);
    const w = warningsOf(json).join("\n");
    expect(w).toMatch(/token realm refused/);
    expect(w).not.toContain(MARK);
    const t = target();
    if (t !== registry) {
      expect(w).toContain(t.host);
      expect(t.received).toEqual([]);
    } else {
      // Only the manifest requests reached the registry, none on the realm's path.
      expect(registry.received.every((r) => r.url.startsWith("/v2/"))).toBe(true);
    }
  });

  it("a realm on the registry's own host and port over plain http (registry.plainHttp) gets the credential: the positive control", async () => {
    registry.setHandler((req, res) => {
      if (req.url?.startsWith("/token")) { res.writeHead(200, { "content-type": "application/json" }).end(JSON.stringify({ token: "good.token.value" })); return; }
      if (req.headers.authorization === "Bearer good.token.value") { res.writeHead(200, { "content-type": OCI, "docker-content-digest": `sha256:${"b".repeat(64)}` }).end(); return; }
      challenge(`http://${registry.host}/token`)(req, res);
    });
    const img = image();
    const { json } = await hook.post(review(pod([img])));
    expect(decodePatch(json).find((op: any) => op.path.endsWith("/image"))?.value).toBe(img.replace(":1.0", ":1.0-apparate"));
    const tokenReq = registry.received.find((r) => r.url.startsWith("/token"));
    expect(tokenReq?.authorization).toBe(BASIC);
  });

  it.each([
    ["internal text", hostileText],
    ["JSON whose token would inject a header", (_q: IncomingMessage, r: ServerResponse) => { r.writeHead(200, { "content-type": "application/json" }).end(JSON.stringify({ token: `a\r\nX-${MARK}: 1` })); }],
    ["JSON with a non-string token", (_q: IncomingMessage, r: ServerResponse) => { r.writeHead(200).end(JSON.stringify({ access_token: { v: MARK } })); }],
    ["an error page", (_q: IncomingMessage, r: ServerResponse) => { r.writeHead(404, { "content-type": "text/html" }).end(`<h1>${MARK}</h1>`); }],
    ["a redirect to another host", (_q: IncomingMessage, r: ServerResponse) => { r.writeHead(302, { location: `http://${other.host}/latest/meta-data/${MARK}` }).end(); }],
  ])("an allowed realm answering with %s: unknown with apparate's own words, nothing followed", async (_name, tokenHandler) => {
    registry.setHandler((req, res) => {
      if (req.url?.startsWith("/token")) { tokenHandler(req, res); return; }
      challenge(`http://${registry.host}/token`)(req, res);
    });
    const { json } = await hook.post(review(pod([image()])));
    const w = warningsOf(json).join("\n");
    expect(w).toMatch(/token service (sent no usable token|answered \d{3})/);
    expect(w).not.toContain(MARK);
    expect(w).not.toContain("ami-0abcd1");
    expect(other.received).toEqual([]);
  });

  it("manifest answers: a redirect is not followed, a foreign media type and bad headers are not echoed", async () => {
    registry.setHandler((req, res) => {
      if (req.url?.includes("redirect")) { res.writeHead(307, { location: `http://${other.host}/v2/${MARK}` }).end(); return; }
      res.writeHead(200, { "content-type": `application/${MARK}+json`, "docker-content-digest": MARK }).end(MARK);
    });
    const { json } = await hook.post(review(pod([`${registry.host}/team/redirect:1.0`, `${registry.host}/team/odd:1.0`])));
    const w = warningsOf(json).join("\n");
    expect(w).toContain("registry answered 307");
    expect(w).toContain("not an OCI image (another media type)");
    expect(w).not.toContain(MARK);
    expect(other.received).toEqual([]);
  });
});

describe('where the webhook may connect: "*" never reaches loopback, link-local or private addresses', () => {
  let inside: FaultServer;   // a service on 127.0.0.4: the kubelet, the API server, a metadata endpoint
  let named: FaultServer;    // the same kind of service, listed in registry.allowPrivateNetworks
  let onLocalhost: FaultServer; // reached through the name "localhost"
  let hook: TestWebhook;

  const ok = (_q: IncomingMessage, r: ServerResponse) => { r.writeHead(200, { "content-type": OCI, "x-secret": MARK }).end(MARK); };

  beforeAll(async () => {
    inside = await startFaultServer(ok, { address: "127.0.0.4" });
    named = await startFaultServer(ok, { address: "127.0.0.5" });
    onLocalhost = await startFaultServer(ok);
    hook = await startWebhook({
      acceleration: { registries: ["*"] },
      registry: { plainHttp: [inside.host, named.host, `localhost:${onLocalhost.host.split(":")[1]}`, "169.254.169.254", "10.0.0.1:6443"], allowPrivateNetworks: [named.host], unknownBackoffSeconds: 0 },
      admission: { deadlineMs: 1500 },
    });
  });
  afterAll(async () => { await hook?.stop(); await Promise.all([inside?.stop(), named?.stop(), onLocalhost?.stop()]); });

  it.each([
    ["a loopback address", () => `${inside.host}/kubelet/pods:1`, "loopback"],
    ["a name that resolves to loopback", () => `localhost:${onLocalhost.host.split(":")[1]}/x/y:1`, "loopback"],
    ["the link-local metadata address", () => "169.254.169.254/latest/meta-data:1", "link-local"],
    ["a private address (an API server)", () => "10.0.0.1:6443/api/v1:1", "private"],
  ])("an image host on %s gets no request; the warning says why in apparate's words", async (_name, img, kind) => {
    const t0 = performance.now();
    const { status, json } = await hook.post(review(pod([img()])));
    expect(status).toBe(200);
    expect(performance.now() - t0).toBeLessThan(1000);
    const w = warningsOf(json).join("\n");
    expect(w).toContain(`on a ${kind} address`);
    expect(w).toContain("registry.allowPrivateNetworks");
    expect(w).not.toContain(MARK);
    expect(inside.received).toEqual([]);
    expect(onLocalhost.received).toEqual([]);
  });

  it("a private host listed by name in registry.allowPrivateNetworks is reached: the positive control", async () => {
    const { json } = await hook.post(review(pod([`${named.host}/team/web:1`])));
    expect(named.received.length).toBeGreaterThan(0);
    expect(decodePatch(json).find((op: any) => op.path.endsWith("/image"))?.value).toBe(`${named.host}/team/web:1-apparate`);
  });
});

describe("the realm and dial decisions (pure)", () => {
  const policy = { plainHttp: new Set(["r.example.com:5000"]), tokenRealms: new Set(["auth.example.com"]) };
  it.each([
    ["https://r.example.com/token", "r.example.com", "https://r.example.com", true],
    ["https://auth.docker.io/token", "docker.io", "https://registry-1.docker.io", true],
    ["https://auth.docker.io/token", "quay.io", "https://quay.io", false],
    ["https://auth.example.com:8443/t", "quay.io", "https://quay.io", true],
    ["http://r.example.com:5000/token", "r.example.com:5000", "http://r.example.com:5000", true],
    ["http://r.example.com:5001/token", "r.example.com:5000", "http://r.example.com:5000", false],
    ["http://r.example.com/token", "r.example.com", "https://r.example.com", false],
    ["https://r.example.com:444/token", "r.example.com", "https://r.example.com", false],
    ["ftp://r.example.com/token", "r.example.com", "https://r.example.com", false],
    ["https://u:p@r.example.com/token", "r.example.com", "https://r.example.com", false],
    ["not a url", "r.example.com", "https://r.example.com", false],
  ])("realm %s for %s (%s): allowed=%s", (realm, domain, origin, allowed) => {
    expect(decideRealm(realm, domain, origin, policy).ok).toBe(allowed);
  });

  it.each([
    ["127.0.0.1", "loopback"], ["::1", "loopback"], ["::ffff:127.0.0.1", "loopback"], ["::ffff:7f00:1", "loopback"],
    ["169.254.169.254", "link-local"], ["fe80::1", "link-local"], ["10.96.0.1", "private"], ["172.16.5.4", "private"],
    ["192.168.1.1", "private"], ["100.64.0.10", "shared (CGNAT)"], ["fd00::1", "private (ULA)"], ["0.0.0.0", "unspecified"],
    ["64:ff9b::a9fe:a9fe", "link-local"], ["8.8.8.8", undefined], ["2001:4860:4860::8888", undefined],
  ])("%s is %s", (address, kind) => {
    expect(specialAddressKind(address)).toBe(kind);
  });

  it("names and ranges in allowPrivateNetworks allow exactly what they name", () => {
    const p = new DialPolicy({ allowPrivate: ["harbor.internal", "reg.internal:5000", "10.1.0.0/16"], namedHosts: ["listed.example.com"] });
    expect(p.check("harbor.internal", 443, "10.0.0.5")).toBeUndefined();
    expect(p.check("reg.internal", 5000, "10.0.0.5")).toBeUndefined();
    expect(p.check("reg.internal", 5001, "10.0.0.5")).toMatch(/private address/);
    expect(p.check("any.example.com", 443, "10.1.2.3")).toBeUndefined();
    expect(p.check("any.example.com", 443, "10.2.2.3")).toMatch(/private address/);
    expect(p.check("listed.example.com", 443, "127.0.0.1")).toBeUndefined();
    expect(p.check("any.example.com", 443, "93.184.216.34")).toBeUndefined();
  });
});
