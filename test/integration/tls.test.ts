// Self-managed TLS over real HTTPS, with the Kubernetes API stand-in holding the
// Secret and the MutatingWebhookConfiguration: the client trusts only the caBundle
// it reads from the webhook configuration, as the API server does.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { request as httpsRequest } from "node:https";
import { createHash, X509Certificate } from "node:crypto";
import { Writable } from "node:stream";
import { KubeApiStandIn } from "../support/kube-api-standin.js";
import { TlsManager } from "../../src/tls/manager.js";
import { buildAdmissionServer, swapCertificate } from "../../src/admission/server.js";
import { compileConfig } from "../../src/config/config.js";
import { createLogger } from "../../src/observability/logger.js";
import { Metrics } from "../../src/observability/metrics.js";
import type { HandlerDeps } from "../../src/admission/handler.js";
import { waitFor } from "../support/ports.js";

const NS = "apparate";
const MWC = "apparate";
const logger = createLogger({ destination: new Writable({ write(c, _e, cb) { if (process.env.DEBUG_TLS) process.stderr.write(c); cb(); } }) });

function mwc() {
  return { metadata: { name: MWC }, webhooks: [
    { name: "pods.apparate.io", clientConfig: { service: { name: "apparate", namespace: NS, path: "/mutate" }, caBundle: "" }, admissionReviewVersions: ["v1"], sideEffects: "None" },
    { name: "ephemeral.apparate.io", clientConfig: { service: { name: "apparate", namespace: NS, path: "/mutate" }, caBundle: "" }, admissionReviewVersions: ["v1"], sideEffects: "None" },
  ] };
}

const fp = (pem: string) => createHash("sha256").update(new X509Certificate(pem).raw).digest("hex").slice(0, 12);

describe("self-managed TLS", () => {
  const api = new KubeApiStandIn();
  let fake = Date.now();
  const now = () => fake;
  const opts = (onChange: (m: { cert: string; key: string }) => void) => ({
    namespace: NS, secretName: "apparate-tls", serviceName: "apparate", webhookConfigName: MWC,
    caValidityMs: 240_000, certValidityMs: 90_000, overlapMs: 10_000, now, onChange,
  });

  beforeAll(async () => { await api.start(); api.put("mutatingwebhookconfigurations", mwc(), "admissionregistration.k8s.io"); });
  afterAll(async () => { await api.stop(); });

  const bundleFromMwc = () => {
    const w = api.get("mutatingwebhookconfigurations", MWC, undefined, "admissionregistration.k8s.io")!.webhooks;
    return w.map((x: any) => Buffer.from(x.clientConfig.caBundle, "base64").toString());
  };

  /** A TlsManager, the admission server it swaps certificates into, and continuous requests to it. */
  const managedServerUnderLoad = async () => {
    let server: Awaited<ReturnType<typeof buildAdmissionServer>> | undefined;
    const mgr = new TlsManager(api.kubeConfig(), opts((m) => { if (server) swapCertificate(server, m); }), logger);
    await mgr.start();
    const deps: HandlerDeps = { config: compileConfig({}), lookup: { lookup: async () => ({ kind: "unknown", reason: "x" }) }, logger, metrics: new Metrics() };
    server = await buildAdmissionServer({ deps, tls: mgr.material!, readiness: { ready: () => ({ ready: true, reasons: [] }) } });
    await server.listen({ port: 0, host: "127.0.0.1" });
    const load = continuousRequests((server.server.address() as { port: number }).port);
    return { mgr, server, load };
  };

  /** Requests in a loop, each on a new connection (a new handshake) trusting only the caBundle the API server would use now. */
  const continuousRequests = (port: number) => {
    const state = { ok: 0, failures: [] as string[], servedBy: new Set<string>(), running: true, done: Promise.resolve() };
    const one = () => new Promise<void>((resolve) => {
      const req = httpsRequest({ host: "127.0.0.1", port, path: "/healthz", servername: "apparate.apparate.svc", ca: bundleFromMwc()[0], agent: false }, (res) => {
        const peer = (res.socket as import("node:tls").TLSSocket).getPeerCertificate();
        if (peer?.fingerprint256) state.servedBy.add(peer.fingerprint256);
        res.resume();
        res.on("end", () => { if (res.statusCode === 200) state.ok++; else state.failures.push(`HTTP ${res.statusCode}`); resolve(); });
      });
      req.on("error", (e) => { state.failures.push(e.message); resolve(); });
      req.end();
    });
    state.done = (async () => { while (state.running) await one(); })();
    return state;
  };

  it("two replicas started at the same moment end with one CA, and the caBundle is patched", async () => {
    const seen: string[] = [];
    const a = new TlsManager(api.kubeConfig(), opts((m) => seen.push(m.cert)), logger);
    const b = new TlsManager(api.kubeConfig(), opts((m) => seen.push(m.cert)), logger);
    await Promise.all([a.reconcile(), b.reconcile()]);
    expect(a.caCert).toBeDefined();
    expect(a.caCert).toBe(b.caCert);
    expect(a.material!.cert).toBe(b.material!.cert);
    const secret = api.get("secrets", "apparate-tls", NS)!;
    expect(Buffer.from(secret.data["ca.crt"], "base64").toString()).toBe(a.caCert);
    expect(bundleFromMwc()).toEqual([a.caBundle, a.caBundle]);
    // The serving certificate names the Service.
    const san = new X509Certificate(a.material!.cert).subjectAltName!;
    expect(san).toContain("DNS:apparate.apparate.svc");
    expect(san).toContain("DNS:apparate.apparate.svc.cluster.local");
    // CA valid 240 s here; defaults are 5 years and 1 year.
    const ca = new X509Certificate(a.caCert!);
    expect(Date.parse(ca.validTo) - Date.parse(ca.validFrom)).toBeGreaterThanOrEqual(240_000);
  });

  it("continuous requests trusting only the caBundle survive a serving-certificate rotation and a CA rollover", async () => {
    const { mgr, server, load } = await managedServerUnderLoad();
    const step = async (advanceMs: number) => {
      fake += advanceMs;
      await mgr.reconcile();
      const before = load.ok;
      await waitFor(async () => load.ok >= before + 20, 10_000, `requests after a step (failures: ${load.failures.slice(0, 3).join("; ")})`);
    };

    const serving0 = fp(mgr.material!.cert);
    const ca0 = mgr.caCert!;
    await step(0);
    await step(61_000); // < 1/3 of the 90 s serving life left: renewed, same CA
    const serving1 = fp(mgr.material!.cert);
    expect(serving1).not.toBe(serving0);
    expect(mgr.caCert).toBe(ca0);
    await step(100_000); // CA < 1/3 of 240 s left: rollover starts, bundle holds both CAs
    expect(mgr.caCert).not.toBe(ca0);
    expect(bundleFromMwc()[0]).toContain(ca0.trim());
    expect(bundleFromMwc()[0]).toContain(mgr.caCert!.trim());
    expect(fp(mgr.material!.cert)).toBe(serving1); // still served from the old CA
    await step(10_000); // overlap passed: serving certificate from the new CA
    expect(fp(mgr.material!.cert)).not.toBe(serving1);
    await step(10_000); // second overlap: the old CA leaves the bundle
    expect(bundleFromMwc()[0]).not.toContain(ca0.trim());
    load.running = false;
    await load.done;
    mgr.stop();
    await server.close();
    expect(load.failures).toEqual([]);
    expect(load.ok).toBeGreaterThan(100);
    expect(load.servedBy.size).toBe(3);
  }, 60_000);

  it("a Secret deleted under load is written back from memory with no failed handshake; a caBundle reset by someone else is restored", async () => {
    const { mgr, server, load } = await managedServerUnderLoad();

    const ca1 = mgr.caCert!;
    const served1 = mgr.material!.cert;
    await waitFor(async () => load.ok > 20, 10_000, "requests before the deletion");
    api.remove("secrets", "apparate-tls", NS);
    await waitFor(async () => api.get("secrets", "apparate-tls", NS) !== undefined, 10_000, "Secret written back");
    const before = load.ok;
    await waitFor(async () => load.ok >= before + 50, 10_000, "requests after the deletion");
    const back = api.get("secrets", "apparate-tls", NS)!;
    expect(Buffer.from(back.data["ca.crt"], "base64").toString()).toBe(ca1);
    expect(mgr.material!.cert).toBe(served1);
    expect(bundleFromMwc().every((b: string) => b === mgr.caBundle)).toBe(true);

    const reset = api.get("mutatingwebhookconfigurations", MWC, undefined, "admissionregistration.k8s.io")!;
    reset.webhooks[1].clientConfig.caBundle = Buffer.from("someone else's CA").toString("base64");
    api.put("mutatingwebhookconfigurations", reset, "admissionregistration.k8s.io");
    await waitFor(async () => bundleFromMwc().every((b: string) => b === mgr.caBundle), 5000, "caBundle restored");
    load.running = false;
    await load.done;
    mgr.stop();
    await server.close();
    expect(load.failures).toEqual([]);
  }, 30_000);

  it("with no material in memory, a missing Secret gets a new CA and the caBundle follows", async () => {
    api.remove("secrets", "apparate-tls", NS);
    const mgr = new TlsManager(api.kubeConfig(), opts(() => {}), logger);
    await mgr.start();
    const back = api.get("secrets", "apparate-tls", NS)!;
    expect(Buffer.from(back.data["ca.crt"], "base64").toString()).toBe(mgr.caCert);
    await waitFor(async () => bundleFromMwc().every((b: string) => b === mgr.caBundle), 5000, "caBundle follows");
    mgr.stop();
  }, 30_000);

  it("refuses TLS below 1.2", async () => {
    const { createCA, issueServing } = await import("../../src/tls/certificates.js");
    const ca = createCA("t", 1);
    const deps: HandlerDeps = { config: compileConfig({}), lookup: { lookup: async () => ({ kind: "unknown", reason: "x" }) }, logger, metrics: new Metrics() };
    const server = await buildAdmissionServer({ deps, tls: issueServing(ca, ["localhost"], 1), readiness: { ready: () => ({ ready: true, reasons: [] }) } });
    await server.listen({ port: 0, host: "127.0.0.1" });
    const port = (server.server.address() as { port: number }).port;
    const attempt = (maxVersion: "TLSv1.1" | "TLSv1.2" | "TLSv1.3") => new Promise<string>((resolve) => {
      const req = httpsRequest({ host: "127.0.0.1", port, path: "/healthz", ca: ca.cert, servername: "localhost", agent: false, minVersion: "TLSv1", maxVersion }, (res) => { res.resume(); resolve(`ok ${res.statusCode}`); });
      req.on("error", (e) => resolve(`error ${e.message}`));
      req.end();
    });
    expect(await attempt("TLSv1.1")).toMatch(/^error/);
    expect(await attempt("TLSv1.2")).toBe("ok 200");
    expect(await attempt("TLSv1.3")).toBe("ok 200");
    await server.close();
  });
});
