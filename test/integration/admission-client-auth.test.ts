// admission.clientAuth: the admission port requires a client certificate signed by the
// configured CA, as an API server with kubeconfig client credentials for webhooks
// (--admission-control-config-file) presents one. Real TLS (node:tls on both sides),
// certificates made with node-forge; the server is the real admission server.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { connect as tlsConnect } from "node:tls";
import { Agent, request } from "undici";
import { compileConfig } from "../../src/config/config.js";
import { clientAuthFromConfig } from "../../src/tls/client-auth.js";
import { createCA, type KeyPairPem } from "../../src/tls/certificates.js";
import { review, startWebhook, type TestWebhook } from "../support/webhook.js";
import { webPod } from "../support/pods.js";
import { issueClient } from "../support/client-certs.js";

const body = () => JSON.stringify(review(webPod({ containers: [{ name: "app", image: "busybox:1.36" }], initContainers: [] })));

/** One review with the given client certificate (or none): the answer, or the error code. */
async function post(hook: TestWebhook, client?: KeyPairPem): Promise<{ status?: number; allowed?: boolean; error?: string }> {
  const dispatcher = new Agent({ connect: { ca: hook.ca, ...(client ? { cert: client.cert, key: client.key } : {}) } });
  try {
    const res = await request(`${hook.url}/mutate`, { method: "POST", dispatcher, headers: { "content-type": "application/json" }, body: body() });
    const json = await res.body.json() as any;
    return { status: res.statusCode, allowed: json?.response?.allowed };
  } catch (err) {
    const e = err as { code?: string; cause?: { code?: string } };
    return { error: e.code ?? e.cause?.code ?? String(err) };
  } finally {
    await dispatcher.destroy();
  }
}

/** The TLS handshake alone, pinned to TLS 1.2 (where the server's verdict is part of the handshake). */
function handshake(hook: TestWebhook, client?: KeyPairPem): Promise<string> {
  const { port } = new URL(hook.url);
  return new Promise((resolve) => {
    const s = tlsConnect({ host: "127.0.0.1", port: Number(port), ca: hook.ca, servername: "localhost", maxVersion: "TLSv1.2", ...(client ?? {}) });
    s.once("secureConnect", () => { s.destroy(); resolve("established"); });
    s.once("error", (err: Error & { code?: string }) => { s.destroy(); resolve(err.code ?? err.message); });
  });
}

describe("admission.clientAuth: only a client certificate from the configured CA gets a review answered", () => {
  const apiCa = createCA("cluster client CA", 1);
  const otherCa = createCA("some other CA", 1);
  const apiserver = issueClient(apiCa, "kube-apiserver-webhook-client");
  const sameCaOtherName = issueClient(apiCa, "some-pod");
  const wrongCa = issueClient(otherCa, "kube-apiserver-webhook-client");
  let dir: string;
  let hook: TestWebhook;
  let narrowed: TestWebhook;
  let open: TestWebhook;
  const reviews = async (h: TestWebhook) => (await h.metrics.registry.getSingleMetric("apparate_admission_reviews_total")!.get()).values.reduce((n, v) => n + v.value, 0);

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), "apparate-client-ca-"));
    writeFileSync(join(dir, "ca.crt"), apiCa.cert);
    hook = await startWebhook({ acceleration: { registries: [] }, admission: { clientAuth: { enabled: true, caFile: join(dir, "ca.crt") } } });
    narrowed = await startWebhook({ acceleration: { registries: [] }, admission: { clientAuth: { enabled: true, caFile: join(dir, "ca.crt"), allowedNames: ["kube-apiserver-webhook-client"] } } });
    open = await startWebhook({ acceleration: { registries: [] } });
  });
  afterAll(async () => { await Promise.all([hook?.stop(), narrowed?.stop(), open?.stop()]); });

  it("no client certificate: refused in the TLS handshake, no review is worked on", async () => {
    expect(await handshake(hook)).toMatch(/HANDSHAKE_FAILURE|CERTIFICATE_REQUIRED|ECONNRESET/);
    const r = await post(hook);
    expect(r.status).toBeUndefined();
    expect(r.error).toMatch(/CERTIFICATE_REQUIRED|HANDSHAKE_FAILURE|ECONNRESET|UND_ERR_SOCKET/);
    expect(await reviews(hook)).toBe(0);
  });

  it("a certificate from another CA: refused in the TLS handshake", async () => {
    expect(await handshake(hook, wrongCa)).toMatch(/UNKNOWN_CA|HANDSHAKE_FAILURE|ECONNRESET/);
    const r = await post(hook, wrongCa);
    expect(r.status).toBeUndefined();
    expect(await reviews(hook)).toBe(0);
  });

  it("the API server's certificate: the review is answered", async () => {
    expect(await handshake(hook, apiserver)).toBe("established");
    expect(await post(hook, apiserver)).toEqual({ status: 200, allowed: true });
  });

  it("allowedNames: the same CA's certificate for another name is closed before any HTTP; the listed name is answered", async () => {
    const other = await post(narrowed, sameCaOtherName);
    expect(other.status).toBeUndefined();
    expect(await reviews(narrowed)).toBe(0);
    expect(await post(narrowed, apiserver)).toEqual({ status: 200, allowed: true });
  });

  it("negative control: without admission.clientAuth, a client with no certificate is answered (off by default)", async () => {
    expect(compileConfig({}).admission.clientAuth).toEqual({ enabled: false, allowedNames: [] });
    expect(await post(open)).toEqual({ status: 200, allowed: true });
  });

  it.each<[Record<string, unknown>, string]>([
    [{ enabled: true }, "admission.clientAuth.caFile: required when admission.clientAuth.enabled is true"],
    [{ enabled: true, caFile: "/nonexistent/ca.crt" }, "admission.clientAuth.caFile: cannot read /nonexistent/ca.crt"],
    [{ enabled: true, caFile: "NOT-PEM" }, "holds no PEM certificate"],
  ])("a bad setting %j stops start-up naming the key", (clientAuth, expected) => {
    if (clientAuth.caFile === "NOT-PEM") { writeFileSync(join(dir, "bad.crt"), "hello"); clientAuth = { ...clientAuth, caFile: join(dir, "bad.crt") }; }
    expect(() => clientAuthFromConfig(compileConfig({ admission: { clientAuth } }).admission.clientAuth)).toThrow(expected);
  });
});
