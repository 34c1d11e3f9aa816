// The address check in every dial path (issue 25 item 3). With HTTPS_PROXY set, names
// in NO_PROXY and plain-http registries (when only HTTPS_PROXY is set) are dialled
// directly: they must be resolved and checked like any other. Through the proxy, the
// proxy resolves names and is the boundary; IP literals and "localhost" are refused
// before they reach it. A real loopback proxy (CONNECT tunnels) and the real webhook
// with undici; the private services are loopback servers that answer "exists" with a
// marker, so a dial that should not happen shows as a swap, a request or a connection.
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { createServer as createTcpServer, type Server as TcpServer } from "node:net";
import type { IncomingMessage, ServerResponse } from "node:http";
import { startFaultServer, type FaultServer } from "../support/faults.js";
import { startConnectProxy, type ConnectProxy } from "../support/connect-proxy.js";
import { freePort } from "../support/ports.js";
import { decodePatch, review, startWebhook, type TestWebhook } from "../support/webhook.js";
import { webPod } from "../support/pods.js";
import { RegistryClient } from "../../src/registry/client.js";
import { DialPolicy } from "../../src/registry/network.js";
import { Repository } from "../../src/registry/push.js";

const MARK = "INSIDE-5c1e";
const OCI = "application/vnd.oci.image.manifest.v1+json";
const exists = (_q: IncomingMessage, r: ServerResponse) => { r.writeHead(200, { "content-type": OCI, "x-secret": MARK }).end(MARK); };
const PROXY_ENV = ["HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy", "NO_PROXY", "no_proxy"] as const;

function pod(image: string) {
  return webPod({ initContainers: [], containers: [{ name: "app", image }] });
}

/** The swapped image, or undefined; and the warnings. */
async function admit(hook: TestWebhook, image: string): Promise<{ swapped?: string; warnings: string }> {
  const { status, json } = await hook.post(review(pod(image)));
  expect(status).toBe(200);
  const swapped = decodePatch(json).find((op: any) => op.path.endsWith("/image"))?.value as string | undefined;
  return { ...(swapped ? { swapped } : {}), warnings: (json?.response?.warnings ?? []).join("\n") };
}

/** A TCP port that counts connections and says nothing: an https "registry" on loopback. */
async function silentPort(): Promise<{ port: number; connections: () => number; stop(): Promise<void> }> {
  let n = 0;
  const server: TcpServer = createTcpServer((s) => { n++; s.destroy(); });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", () => r()));
  return { port: (server.address() as { port: number }).port, connections: () => n, stop: () => new Promise((r) => server.close(() => r())) };
}

describe("the address check in every dial path, with a proxy configured", () => {
  let proxy: ConnectProxy;
  let inside: FaultServer;   // a private service on loopback (127.0.0.1): reached as "localhost"
  let publicReg: FaultServer; // a registry the proxy reaches as registry.public.test:5000
  let tls: Awaited<ReturnType<typeof silentPort>>;
  let hook: TestWebhook | undefined;
  const saved: Record<string, string | undefined> = {};

  beforeAll(async () => {
    for (const k of PROXY_ENV) saved[k] = process.env[k];
    proxy = await startConnectProxy();
    inside = await startFaultServer(exists);
    publicReg = await startFaultServer(exists, { address: "127.0.0.6" });
    proxy.routes.set("registry.public.test:5000", publicReg.host);
    proxy.routes.set("registry.down.test:5000", `127.0.0.1:${await freePort()}`);
    tls = await silentPort();
  });
  afterAll(async () => {
    for (const k of PROXY_ENV) if (saved[k] === undefined) delete process.env[k]; else process.env[k] = saved[k];
    await Promise.all([proxy?.stop(), inside?.stop(), publicReg?.stop(), tls?.stop()]);
  });
  afterEach(async () => {
    await hook?.stop();
    hook = undefined;
    proxy.tunnels.length = 0;
    inside.received.length = 0;
  });

  /** The env is read when the registry client is made: set it first. */
  async function webhookWith(env: Partial<Record<(typeof PROXY_ENV)[number], string>>, registry: Record<string, unknown> = {}): Promise<TestWebhook> {
    for (const k of PROXY_ENV) delete process.env[k];
    Object.assign(process.env, env);
    const insidePort = inside.host.split(":")[1];
    hook = await startWebhook({
      acceleration: { registries: ["*"] },
      registry: { plainHttp: [`localhost:${insidePort}`, "registry.public.test:5000", "registry.down.test:5000"], unknownBackoffSeconds: 0, ...registry },
      admission: { deadlineMs: 1500 },
    });
    return hook;
  }
  const localhostImage = () => `localhost:${inside.host.split(":")[1]}/kubelet/pods:1`;

  describe("only HTTPS_PROXY set, NO_PROXY=localhost: direct dials are checked", () => {
    it("a plain-http registry named localhost (dialled directly, not through the proxy) gets no request; the warning says refused", async () => {
      const h = await webhookWith({ HTTPS_PROXY: proxy.url, NO_PROXY: "localhost" });
      const r = await admit(h, localhostImage());
      expect(r.swapped).toBeUndefined();
      expect(r.warnings).toContain("address refused: localhost is on a loopback address");
      expect(r.warnings).not.toContain(MARK);
      expect(inside.received).toEqual([]);
      expect(proxy.tunnels).toEqual([]);
    });

    it("an https registry whose name is in NO_PROXY and resolves to loopback: no connection is opened", async () => {
      const h = await webhookWith({ HTTPS_PROXY: proxy.url, NO_PROXY: "localhost" });
      const r = await admit(h, `localhost:${tls.port}/x/y:1`);
      expect(r.swapped).toBeUndefined();
      expect(r.warnings).toContain("address refused: localhost is on a loopback address");
      expect(tls.connections()).toBe(0);
      expect(proxy.tunnels).toEqual([]);
    });

    it("negative control: a range in registry.allowPrivateNetworks is still dialled directly (and swapped)", async () => {
      const h = await webhookWith({ HTTPS_PROXY: proxy.url, NO_PROXY: "localhost" }, { allowPrivateNetworks: ["127.0.0.1/32"] });
      const r = await admit(h, localhostImage());
      expect(r.swapped).toBe(`${localhostImage()}-apparate`);
      expect(inside.received.length).toBeGreaterThan(0);
      expect(proxy.tunnels).toEqual([]);
    });
  });

  describe("HTTP_PROXY and HTTPS_PROXY set: the proxy resolves names; literals and localhost never reach it", () => {
    const env = () => ({ HTTPS_PROXY: proxy.url, HTTP_PROXY: proxy.url });

    it.each([
      ["localhost", () => localhostImage(), "localhost is on a loopback address"],
      ["a loopback literal", () => `127.0.0.1:${inside.host.split(":")[1]}/x/y:1`, "127.0.0.1 is on a loopback address"],
      ["a decimal IP literal (2130706433 = 127.0.0.1)", () => `2130706433:${inside.host.split(":")[1]}/x/y:1`, "127.0.0.1 is on a loopback address"],
      ["a metadata-service literal", () => "169.254.169.254/latest/meta-data:1", "169.254.169.254 is on a link-local address"],
    ])("%s: refused before the proxy (no tunnel asked for), the warning says refused", async (_name, image, why) => {
      const h = await webhookWith(env());
      const r = await admit(h, image());
      expect(r.swapped).toBeUndefined();
      expect(r.warnings).toContain(`address refused: ${why}`);
      expect(r.warnings).not.toContain(MARK);
      expect(proxy.tunnels).toEqual([]);
      expect(inside.received).toEqual([]);
    });

    it("negative control: a public-looking name goes through the proxy (which resolves it) and is swapped", async () => {
      const h = await webhookWith(env());
      const r = await admit(h, "registry.public.test:5000/team/web:1");
      expect(r.swapped).toBe("registry.public.test:5000/team/web:1-apparate");
      expect(proxy.tunnels).toEqual(["registry.public.test:5000"]);
    });

    it("negative control: localhost allowed by registry.allowPrivateNetworks is handed to the proxy", async () => {
      const h = await webhookWith(env(), { allowPrivateNetworks: ["127.0.0.1/32"] });
      const r = await admit(h, localhostImage());
      expect(r.swapped).toBe(`${localhostImage()}-apparate`);
      expect(proxy.tunnels).toEqual([`localhost:${inside.host.split(":")[1]}`]);
    });

    it("a target the proxy cannot reach: the warning says unreachable, not what the proxy answered", async () => {
      const h = await webhookWith(env());
      const r = await admit(h, "registry.down.test:5000/team/web:1");
      expect(r.swapped).toBeUndefined();
      expect(proxy.tunnels).toEqual(["registry.down.test:5000"]);
      expect(r.warnings).toContain("unreachable through the proxy");
      expect(r.warnings).not.toMatch(/502|Proxy response/);
    });
  });
});

describe("a registry's redirect to blob storage goes through the same address check (the converter's blob reads)", () => {
  const DIGEST = `sha256:${"ab".repeat(32)}`;
  let registry: FaultServer;  // the converter's configured registry (named by the operator)
  let storage: FaultServer;   // where it redirects: an internal service on 127.0.0.9
  beforeAll(async () => {
    storage = await startFaultServer((_q, r) => { r.writeHead(200).end(MARK); }, { address: "127.0.0.9" });
    registry = await startFaultServer((_q, r) => { r.writeHead(307, { location: `${storage.url}/latest/meta-data` }).end(); });
  });
  afterAll(async () => { await Promise.all([registry?.stop(), storage?.stop()]); });

  async function readBlob(allowPrivate: string[]): Promise<string> {
    const client = new RegistryClient({ requestTimeoutMs: 2000, plainHttp: [registry.host], dialPolicy: new DialPolicy({ namedHosts: [registry.host], allowPrivate }) });
    try {
      const repo = new Repository(client, { domain: registry.host, path: "team/web" }, undefined, false, AbortSignal.timeout(5000));
      const chunks: Buffer[] = [];
      for await (const c of await repo.blobStream(DIGEST)) chunks.push(c);
      return Buffer.concat(chunks).toString();
    } finally {
      await client.close();
    }
  }

  it("a redirect to a loopback address the operator did not allow is refused before it is dialled", async () => {
    storage.received.length = 0;
    await expect(readBlob([])).rejects.toThrow("address refused: 127.0.0.9 is on a loopback address");
    expect(registry.received.map((r) => r.url)).toContain(`/v2/team/web/blobs/${DIGEST}`);
    expect(storage.received).toEqual([]);
  });

  it("negative control: storage in registry.allowPrivateNetworks is read through the same path", async () => {
    storage.received.length = 0;
    expect(await readBlob(["127.0.0.9/32"])).toBe(MARK);
    expect(storage.received).toEqual([{ method: "GET", url: "/latest/meta-data" }]);
  });
});
