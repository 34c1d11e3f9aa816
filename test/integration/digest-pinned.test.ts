// Issue 27, the webhook's half, against Debian's docker-registry: a digest-pinned pod is
// rewritten to the digest of its converted image by following the link the converter
// recorded (referrers tag schema), only after that image was read and checked; a link to
// a manifest that is not eStargz, or that names another source, is refused with a
// warning; one lookup per digest per burst; a verified link is kept for the process
// lifetime while tag answers expire; a slow registry costs at most the deadline.
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { PassThrough, Writable } from "node:stream";
import { checkImage } from "../../src/cli/check-image.js";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { main } from "../../src/cli/main.js";
import { SOURCE_DIGEST_ANNOTATION } from "../../src/convert/image.js";
import { RegistryClient } from "../../src/registry/client.js";
import { DialPolicy } from "../../src/registry/network.js";
import { Repository } from "../../src/registry/push.js";
import { recordLink } from "../../src/registry/referrers.js";
import type { PodLike } from "../../src/mutate/pod.js";
import { startCountingProxy, type CountingProxy } from "../support/counting-proxy.js";
import { getManifest, pushTestImage, putManifest } from "../support/oci-images.js";
import { registryAvailable, startRegistry, type RunningRegistry } from "../support/registry.js";
import { gzipTar } from "../support/tarball.js";
import { decodePatch, review, startWebhook, type TestWebhook } from "../support/webhook.js";

const OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json";
const s = (digest: string | undefined) => `${digest!.slice(0, 19)}…`;
const layer = (name: string) => gzipTar([{ name: "etc/", type: "5" }, { name: `etc/${name}`, data: `${name}\n` }]);
const pod = (...images: string[]): PodLike => ({ apiVersion: "v1", kind: "Pod", metadata: { name: "p", namespace: "default" }, spec: { containers: images.map((image, i) => ({ name: `c${i}`, image })) } });

async function convert(ref: string): Promise<string> {
  let out = "", err = "";
  const sink = (f: (s: string) => void) => new Writable({ write(c, _e, cb) { f(c.toString()); cb(); } });
  const code = await main(["convert", ref, "--plain-http", "--json"], sink((s) => { out += s; }), sink((s) => { err += s; }));
  if (code !== 0) throw new Error(`convert ${ref}: ${code} ${err}`);
  return JSON.parse(out).digest;
}

/** The images the response patch writes (container index -> image), and the warnings. */
async function admit(hook: TestWebhook, p: PodLike): Promise<{ images: Record<number, string>; warnings: string[] }> {
  const r = await hook.post(review(p));
  expect(r.status).toBe(200);
  const images: Record<number, string> = {};
  for (const op of decodePatch(r.json)) {
    const m = /^\/spec\/containers\/(\d+)\/image$/.exec(op.path);
    if (m) images[Number(m[1])] = op.value;
  }
  return { images, warnings: r.json.response.warnings ?? [] };
}

describe.skipIf(!registryAvailable && process.env.CI !== "true")("digest-pinned pods follow the conversion link (acceleration.digestPinned)", () => {
  let reg: RunningRegistry;
  let proxy: CountingProxy;
  let host: string;
  const d: Record<string, string> = {};
  const hooks: TestWebhook[] = [];
  const webhook = async (over: { digestPinned?: boolean; registry?: Record<string, unknown>; admission?: Record<string, unknown> } = {}) => {
    const h = await startWebhook({
      namespaces: ["default"],
      acceleration: { registries: [host], digestPinned: over.digestPinned ?? true, placement: { mode: "none" } },
      registry: { plainHttp: [host], ...over.registry },
      ...(over.admission ? { admission: over.admission } : {}),
    });
    hooks.push(h);
    return h;
  };

  beforeAll(async () => {
    reg = await startRegistry();
    proxy = await startCountingProxy(reg.host);
    host = proxy.host;
    d.x1 = await pushTestImage(reg.url, "app", "1.0", [{ layers: [{ blob: layer("a") }, { blob: layer("b") }] }]);
    d.y1 = await convert(`${reg.host}/app:1.0`);
    d.x2 = await pushTestImage(reg.url, "multi", "2.0", [
      { layers: [{ blob: layer("base") }], architecture: "amd64" },
      { layers: [{ blob: layer("base") }, { blob: layer("arm") }], architecture: "arm64" },
    ]);
    d.y2 = await convert(`${reg.host}/multi:2.0`);
    d.never = await pushTestImage(reg.url, "app", "2.0", [{ layers: [{ blob: layer("never") }] }]);

    // Links nobody should follow, written as the converter writes its own.
    const client = new RegistryClient({ requestTimeoutMs: 10_000, plainHttp: [reg.host], dialPolicy: new DialPolicy({ anyAddress: true }) });
    try {
      // (a) to a plain gzip image that claims the right source.
      d.x3 = await pushTestImage(reg.url, "app", "3.0", [{ layers: [{ blob: layer("plain") }] }]);
      const plain = await getManifest(reg.url, "app", d.x3);
      const fake = Buffer.from(JSON.stringify({ ...plain.json, annotations: { [SOURCE_DIGEST_ANNOTATION]: d.x3 } }));
      d.fake = await putManifest(reg.url, "app", "fake", OCI_MANIFEST, fake);
      const repo = new Repository(client, { domain: reg.host, path: "app" }, undefined, true, AbortSignal.timeout(30_000));
      await recordLink(repo, { mediaType: OCI_MANIFEST, digest: d.x3, size: Buffer.from(JSON.stringify(plain.json)).length }, { mediaType: OCI_MANIFEST, digest: d.fake, size: fake.length });
      // (b) to a real eStargz image that was made from another source (app:1.0's).
      d.x4 = await pushTestImage(reg.url, "app", "4.0", [{ layers: [{ blob: layer("other") }] }]);
      const y1 = await getManifest(reg.url, "app", d.y1);
      await recordLink(repo, { mediaType: OCI_MANIFEST, digest: d.x4, size: 1 }, { mediaType: OCI_MANIFEST, digest: d.y1, size: Buffer.from(JSON.stringify(y1.json)).length });
    } finally { await client.destroy(); }
  }, 120_000);

  afterAll(async () => {
    for (const h of hooks) await h.stop();
    await proxy?.stop();
    await reg?.stop();
  });

  it("bare digest, tag plus digest, a multi-arch index and one of its platform manifests: each rewritten to the converted digest, which is the verified eStargz image of that source", async () => {
    const hook = await webhook();
    const multi = await getManifest(reg.url, "multi", d.x2!);
    const multiY = await getManifest(reg.url, "multi", d.y2!);
    const arm = multi.json.manifests[1].digest;
    const { images, warnings } = await admit(hook, pod(`${host}/app@${d.x1}`, `${host}/app:1.0@${d.x1}`, `${host}/multi@${d.x2}`, `${host}/multi:2.0@${arm}`));
    expect(warnings).toEqual([]);
    expect(images).toEqual({
      0: `${host}/app@${d.y1}`,
      1: `${host}/app:1.0-apparate@${d.y1}`,
      2: `${host}/multi@${d.y2}`,
      3: `${host}/multi:2.0-apparate@${multiY.json.manifests[1].digest}`,
    });
    // What the pod now names is what the converter made from what it named before.
    expect((await getManifest(reg.url, "app", d.y1!)).json.annotations[SOURCE_DIGEST_ANNOTATION]).toBe(d.x1);
    expect(multiY.json.annotations[SOURCE_DIGEST_ANNOTATION]).toBe(d.x2);
    expect((await getManifest(reg.url, "multi", multiY.json.manifests[1].digest)).json.annotations[SOURCE_DIGEST_ANNOTATION]).toBe(arm);
    // The tag is where the digest is pullable from too (tag + digest: the runtime pulls by digest).
    expect((await getManifest(reg.url, "app", "1.0-apparate")).digest).toBe(d.y1);
  });

  it("a link to a manifest that is not eStargz, or that names another source, is refused with a warning; no link at all stays digest-pinned", async () => {
    const hook = await webhook();
    const { images, warnings } = await admit(hook, pod(`${host}/app@${d.x3}`, `${host}/app@${d.x4}`, `${host}/app@${d.never}`));
    expect(images).toEqual({});
    expect(warnings).toHaveLength(3);
    expect(warnings[0]).toMatch(new RegExp(`container c0: digest-pinned, not accelerated: the recorded conversion ${s(d.fake)} was refused: 1 of its 1 layers are not eStargz`));
    expect(warnings[1]).toMatch(new RegExp(`container c1: digest-pinned, not accelerated: the recorded conversion ${s(d.y1)} was refused: it names ${s(d.x1)} as its source, not ${s(d.x4)}`));
    expect(warnings[2]).toMatch(new RegExp(`container c2: digest-pinned, not accelerated: no conversion of ${s(d.never)} is recorded`));
  });

  it("check-image --lookups registry shows the link followed, and the reason a refused one was not", async () => {
    const file = join(mkdtempSync(join(tmpdir(), "apparate-pinned-")), "config.json");
    writeFileSync(file, JSON.stringify({ acceleration: { registries: [host], digestPinned: true, placement: { mode: "none" } }, registry: { plainHttp: [host] } }));
    const ask = async (image: string) => {
      const out = new PassThrough();
      let text = "";
      out.on("data", (c: Buffer) => { text += c.toString(); });
      const code = await checkImage([image, "--config", file, "--lookups", "registry", "--json"], out);
      return { code, json: JSON.parse(text) };
    };
    const ok = await ask(`${host}/app@${d.x1}`);
    expect(ok.code).toBe(0);
    expect(ok.json.decision).toMatchObject({ outcome: "accelerated", image: `${host}/app@${d.y1}` });
    expect(ok.json.decision.reason).toContain(`${d.x1} was converted to ${d.y1}`);
    const refused = await ask(`${host}/app@${d.x3}`);
    expect(refused.json.decision.outcome).toBe("digest-pinned");
    expect(refused.json.decision.reason).toMatch(/refused: 1 of its 1 layers are not eStargz/);
  });

  it("off (the default): every digest-pinned image is left alone, as before (negative control)", async () => {
    const hook = await webhook({ digestPinned: false });
    const { images, warnings } = await admit(hook, pod(`${host}/app@${d.x1}`));
    expect(images).toEqual({});
    expect(warnings[0]).toMatch(/digest-pinned images are never tag-swapped.*acceleration.digestPinned is off/);
  });

  it("one lookup per digest per burst; a verified link is kept after the tag answers expired", async () => {
    const hook = await webhook({ registry: { positiveTtlSeconds: 1, negativeTtlSeconds: 1 } });
    proxy.reset();
    proxy.delayMs = 100;
    try {
      const burst = await Promise.all(Array.from({ length: 20 }, () => admit(hook, pod(`${host}/app@${d.x1}`))));
      expect(burst.every((b) => b.images[0] === `${host}/app@${d.y1}`)).toBe(true);
      // referrers API (404), the referrers tag, Y by digest: three requests for twenty pods.
      expect(proxy.requests).toBe(3);
      await admit(hook, pod(`${host}/app:1.0`));
      await new Promise((r) => setTimeout(r, 1500));
      proxy.reset();
      expect((await admit(hook, pod(`${host}/app@${d.x1}`))).images[0]).toBe(`${host}/app@${d.y1}`);
      expect(proxy.requests).toBe(0);
      // Negative control: the tag answer, past its TTL, is asked again.
      expect((await admit(hook, pod(`${host}/app:1.0`))).images[0]).toBe(`${host}/app:1.0-apparate`);
      expect(proxy.requests).toBe(1);
    } finally { proxy.delayMs = 0; }
  });

  it("a registry slower than the deadline: answered within it, the pod left pinned to X with the reason", async () => {
    const hook = await webhook({ admission: { deadlineMs: 300 } });
    proxy.delayMs = 2000;
    try {
      const t0 = performance.now();
      const { images, warnings } = await admit(hook, pod(`${host}/app@${d.x1}`));
      expect(performance.now() - t0).toBeLessThan(1500);
      expect(images).toEqual({});
      expect(warnings[0]).toMatch(/could not check .* in time/);
    } finally { proxy.delayMs = 0; }
  });
});
