// Issue 27, the converter's half: every conversion records X -> Y in the registry as an
// OCI referrer of X. Debian's docker-registry (distribution 2.8) has no referrers API, so
// the link goes through the OCI referrers tag schema (the `sha256-<hex>` index tag of
// the distribution spec, "Unavailable Referrers API"), and a real client nobody here
// wrote, Debian unstable's `oras` 1.3, must list it with `oras discover`.
import { Writable } from "node:stream";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { main } from "../../src/cli/main.js";
import { compileConfig } from "../../src/config/config.js";
import { EXIT_UP_TO_DATE } from "../../src/convert/command.js";
import { engineFor } from "../../src/converter/engine.js";
import { Metrics } from "../../src/observability/metrics.js";
import { LINK_ARTIFACT_TYPE, LINK_TARGET_ANNOTATION, referrersTag } from "../../src/registry/referrers.js";
import { createRegistryStack, type RegistryStack } from "../../src/registry/stack.js";
import { getManifest, pushTestImage, putManifest } from "../support/oci-images.js";
import { orasAvailable, orasDiscover } from "../support/oras.js";
import { registryAvailable, startRegistry, type RunningRegistry } from "../support/registry.js";
import { gzipTar } from "../support/tarball.js";

async function convert(...args: string[]): Promise<{ code: number; out: string; err: string }> {
  let out = "", err = "";
  const sink = (f: (s: string) => void) => new Writable({ write(c, _e, cb) { f(c.toString()); cb(); } });
  const code = await main(["convert", ...args], sink((s) => { out += s; }), sink((s) => { err += s; }));
  return { code, out, err };
}

const layer = (name: string) => gzipTar([{ name: "etc/", type: "5" }, { name: `etc/${name}`, data: `${name}\n` }]);

/** The apparate links `oras discover` lists for an image (either JSON shape oras 1.x prints). */
async function discovered(ref: string, ...extra: string[]): Promise<Array<{ digest: string; target: string }>> {
  const out = await orasDiscover(ref, ...extra);
  const list = out.referrers ?? out.manifests ?? [];
  return list.filter((m) => m.artifactType === LINK_ARTIFACT_TYPE).map((m) => ({ digest: m.digest, target: m.annotations?.[LINK_TARGET_ANNOTATION] ?? "" }));
}

describe.skipIf((!registryAvailable || !orasAvailable) && process.env.CI !== "true")("conversion links through the referrers tag schema, read by oras", () => {
  let reg: RunningRegistry;
  beforeAll(async () => { reg = await startRegistry(); }, 60_000);
  afterAll(async () => { await reg?.stop(); });

  it("apparate convert records X -> Y as a referrer of X; oras discover lists it, by the tag schema and by its own fallback; converting again adds nothing", async () => {
    const x = await pushTestImage(reg.url, "app", "1.0", [{ layers: [{ blob: layer("a") }, { blob: layer("b") }] }]);
    const r = await convert(`${reg.host}/app:1.0`, "--plain-http", "--json");
    expect(r.code, r.err).toBe(0);
    const result = JSON.parse(r.out);
    const y: string = result.digest;
    expect(result.links).toEqual([{ source: x, target: y, via: "tag-schema" }]);

    // The fallback index itself, as the spec defines it.
    const idx = await getManifest(reg.url, "app", referrersTag(x));
    expect(idx.status).toBe(200);
    expect(idx.mediaType).toBe("application/vnd.oci.image.index.v1+json");
    expect(idx.json.manifests).toHaveLength(1);
    const link = await getManifest(reg.url, "app", idx.json.manifests[0].digest);
    expect(link.json).toMatchObject({ artifactType: LINK_ARTIFACT_TYPE, subject: { digest: x }, annotations: { [LINK_TARGET_ANNOTATION]: y } });

    // oras: its default discovery (referrers API, 404, then the tag) and the tag schema forced.
    expect(await discovered(`${reg.host}/app@${x}`)).toEqual([{ digest: idx.json.manifests[0].digest, target: y }]);
    expect(await discovered(`${reg.host}/app@${x}`, "--distribution-spec", "v1.1-referrers-tag")).toEqual([{ digest: idx.json.manifests[0].digest, target: y }]);

    // Idempotent: up to date, the link recorded again is the same artifact, listed once.
    const again = await convert(`${reg.host}/app:1.0`, "--plain-http");
    expect(again.code, again.err).toBe(EXIT_UP_TO_DATE);
    expect((await getManifest(reg.url, "app", referrersTag(x))).json.manifests).toHaveLength(1);

    // Negative control: an image never converted has no link.
    const other = await pushTestImage(reg.url, "app", "2.0", [{ layers: [{ blob: layer("c") }] }]);
    expect(await discovered(`${reg.host}/app@${other}`)).toEqual([]);
  }, 120_000);

  it("a multi-arch index: X index -> Y index, and each platform manifest -> its converted manifest", async () => {
    const x = await pushTestImage(reg.url, "multi", "2.0", [
      { layers: [{ blob: layer("base") }], architecture: "amd64" },
      { layers: [{ blob: layer("base") }, { blob: layer("arm") }], architecture: "arm64" },
    ]);
    const r = await convert(`${reg.host}/multi:2.0`, "--plain-http", "--json");
    expect(r.code, r.err).toBe(0);
    const y: string = JSON.parse(r.out).digest;
    const src = await getManifest(reg.url, "multi", x);
    const dst = await getManifest(reg.url, "multi", y);
    expect(await discovered(`${reg.host}/multi@${x}`)).toMatchObject([{ target: y }]);
    for (const [i, child] of src.json.manifests.entries()) {
      expect(await discovered(`${reg.host}/multi@${child.digest}`)).toMatchObject([{ target: dst.json.manifests[i].digest }]);
    }
  }, 120_000);

  it("the push-triggered converter's engine records the link too", async () => {
    const config = compileConfig({ acceleration: { registries: [reg.host] }, registry: { plainHttp: [reg.host] } });
    const stack: RegistryStack = createRegistryStack(config, new Metrics());
    try {
      const x = await pushTestImage(reg.url, "pushed", "v1", [{ layers: [{ blob: layer("p") }] }]);
      const out = await engineFor(stack, config)({ registry: reg.host, repository: "pushed", tag: "v1", digest: x, targetTag: "v1-apparate" }, AbortSignal.timeout(60_000));
      expect(await discovered(`${reg.host}/pushed@${x}`)).toMatchObject([{ target: out.digest }]);
    } finally { await stack.destroy(); }
  }, 120_000);

  it("a referrers tag that holds something else is reported, never overwritten", async () => {
    const x = await pushTestImage(reg.url, "taken", "v1", [{ layers: [{ blob: layer("t") }] }]);
    const squatter = await getManifest(reg.url, "taken", x);
    const body = Buffer.from(JSON.stringify(squatter.json));
    await putManifest(reg.url, "taken", referrersTag(x), squatter.mediaType, body);
    const r = await convert(`${reg.host}/taken:v1`, "--plain-http");
    expect(r.code).toBe(1);
    expect(r.err).toMatch(/not a referrers index/);
    expect((await getManifest(reg.url, "taken", referrersTag(x))).digest).toBe(x);
  }, 120_000);
});
