// `apparate convert` against Debian's docker-registry on loopback: what it pushes
// (OCI manifest/index, annotated eStargz layers that oracle 1 verifies, diffIDs of
// the new layers, history, source annotations, subject), idempotency, and bad inputs:
// missing source, a tag with the suffix, a corrupt layer, a registry refusing the
// push, an upload cut off midway (no tag written, session cancelled).
import { createHash, randomBytes } from "node:crypto";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { request as httpRequest, type IncomingMessage, type ServerResponse } from "node:http";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Writable } from "node:stream";
import { gunzipSync, gzipSync } from "node:zlib";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { main } from "../../src/cli/main.js";
import { EXIT_UNCONVERTIBLE, EXIT_UP_TO_DATE } from "../../src/convert/command.js";
import { convertLayer, TOC_DIGEST_ANNOTATION, UNCOMPRESSED_SIZE_ANNOTATION } from "../../src/convert/estargz.js";
import { SOURCE_DIGEST_ANNOTATION, SOURCE_REF_ANNOTATION } from "../../src/convert/image.js";
import { buildOracle, oracleBuildable, verifyWithOracle } from "../support/estargz-oracle.js";
import { startFaultServer, type FaultServer } from "../support/faults.js";
import { getBlob, getManifest, pushTestImage, putBlob } from "../support/oci-images.js";
import { registryAvailable, startRegistry, type RunningRegistry } from "../support/registry.js";
import { gzipTar, type TarSpec } from "../support/tarball.js";

const sha = (b: Buffer | string) => "sha256:" + createHash("sha256").update(b).digest("hex");
const MiB = 1 << 20;

async function cli(...args: string[]): Promise<{ code: number; out: string; err: string }> {
  let out = "", err = "";
  const sink = (f: (s: string) => void) => new Writable({ write(c, _e, cb) { f(c.toString()); cb(); } });
  const code = await main(["convert", ...args], sink((s) => { out += s; }), sink((s) => { err += s; }));
  return { code, out, err };
}

const base: TarSpec[] = [
  { name: "etc/", type: "5" }, { name: "etc/os-release", data: "ID=test\n" },
  { name: "usr/", type: "5" }, { name: "usr/lib/", type: "5" }, { name: "usr/lib/big", data: randomBytes(9 * MiB) },
  { name: "usr/lib/empty", data: "" }, { name: "usr/lib/link", type: "2", linkname: "big" },
  { name: "tmp/", type: "5", mode: 0o1777 }, { name: "tmp/fifo", type: "6" },
];
const upper: TarSpec[] = [
  { name: "etc/", type: "5" }, { name: "etc/.wh.os-release", data: "" },
  { name: "usr/", type: "5" }, { name: "usr/lib/", type: "5" }, { name: "usr/lib/.wh..wh..opq", data: "" },
  { name: "usr/lib/new", data: "new file\n", pax: { "SCHILY.xattr.user.k": "v" } },
  { name: "usr/lib/new", data: "new file, second version\n" },
];

describe.skipIf((!registryAvailable || !oracleBuildable) && process.env.CI !== "true")("apparate convert against a real registry", () => {
  let reg: RunningRegistry;
  let dir: string;
  const layers = [gzipTar(base), gzipTar(upper)];

  beforeAll(async () => {
    buildOracle();
    reg = await startRegistry();
    dir = mkdtempSync(join(tmpdir(), "apparate-convert-"));
  }, 300_000);
  afterAll(async () => { await reg?.stop(); if (dir) rmSync(dir, { recursive: true, force: true }); });

  /** Every layer of an OCI manifest: eStargz that oracle 1 verifies, with diffID and size right. */
  async function checkConverted(name: string, manifest: any): Promise<any> {
    expect(manifest.mediaType).toBe("application/vnd.oci.image.manifest.v1+json");
    const config = JSON.parse((await getBlob(reg.url, name, manifest.config.digest)).toString());
    expect(manifest.config.mediaType).toBe("application/vnd.oci.image.config.v1+json");
    for (const [i, l] of manifest.layers.entries()) {
      expect(l.mediaType).toBe("application/vnd.oci.image.layer.v1.tar+gzip");
      const blob = await getBlob(reg.url, name, l.digest);
      const path = join(dir, `${l.digest.slice(7, 19)}.blob`);
      writeFileSync(path, blob);
      await verifyWithOracle(path, l.annotations[TOC_DIGEST_ANNOTATION]);
      const plain = gunzipSync(blob);
      expect(config.rootfs.diff_ids[i]).toBe(sha(plain));
      expect(l.annotations[UNCOMPRESSED_SIZE_ANNOTATION]).toBe(String(plain.length));
    }
    return config;
  }

  it("converts an OCI image: annotated eStargz layers, new diffIDs, history kept, source recorded; then up to date; then again after the source moves", async () => {
    const src = await pushTestImage(reg.url, "app", "1.0", [{ layers: layers.map((blob) => ({ blob })) }]);
    const r = await cli(`${reg.host}/app:1.0`, "--plain-http", "--json");
    expect(r.code, r.err).toBe(0);
    const result = JSON.parse(r.out);
    expect(result).toMatchObject({ result: "converted", sourceDigest: src, target: `${reg.host}/app:1.0-apparate` });
    const dst = await getManifest(reg.url, "app", "1.0-apparate");
    expect(dst.digest).toBe(result.digest);
    expect(dst.json.annotations).toMatchObject({ [SOURCE_DIGEST_ANNOTATION]: src, [SOURCE_REF_ANNOTATION]: `${reg.host}/app:1.0` });
    expect(dst.json.subject).toMatchObject({ digest: src, mediaType: "application/vnd.oci.image.manifest.v1+json" });
    const config = await checkConverted("app", dst.json);
    expect(config.history.map((h: any) => h.created_by)).toEqual(["layer 1", "layer 2"]);
    expect(config.config.Cmd).toEqual(["/bin/sh"]);

    const again = await cli(`${reg.host}/app:1.0`, "--plain-http");
    expect(again.code).toBe(EXIT_UP_TO_DATE);
    expect(again.out).toMatch(/is up to date/);
    expect((await getManifest(reg.url, "app", "1.0-apparate")).digest).toBe(dst.digest);

    const moved = await pushTestImage(reg.url, "app", "1.0", [{ layers: [{ blob: layers[0]! }] }]);
    const third = await cli(`${reg.host}/app:1.0`, "--plain-http", "--json");
    expect(third.code, third.err).toBe(0);
    const after = await getManifest(reg.url, "app", "1.0-apparate");
    expect(after.json.annotations[SOURCE_DIGEST_ANNOTATION]).toBe(moved);
    expect(after.json.layers).toHaveLength(1);
  });

  it("converts a Docker schema 2 image into an OCI one (annotations kept), to an explicit DST", async () => {
    await pushTestImage(reg.url, "docker-app", "v1", [{ layers: layers.map((blob) => ({ blob })) }], "docker");
    const r = await cli(`${reg.host}/docker-app:v1`, `${reg.host}/docker-app:lazy`, "--plain-http");
    expect(r.code, r.err).toBe(0);
    const dst = await getManifest(reg.url, "docker-app", "lazy");
    expect(dst.mediaType).toBe("application/vnd.oci.image.manifest.v1+json");
    expect(dst.json.subject.mediaType).toBe("application/vnd.docker.distribution.manifest.v2+json");
    await checkConverted("docker-app", dst.json);
  });

  it("converts a two-platform index into an OCI index, each platform's layers converted, shared layers once", async () => {
    const src = await pushTestImage(reg.url, "multi", "2.0", [
      { layers: layers.map((blob) => ({ blob })), architecture: "amd64" },
      { layers: [{ blob: layers[0]! }, { blob: gzipTar([{ name: "arm-only", data: "arm64\n" }]) }], architecture: "arm64" },
    ]);
    const r = await cli(`${reg.host}/multi:2.0`, "--plain-http", "--json");
    expect(r.code, r.err).toBe(0);
    const result = JSON.parse(r.out);
    expect(result.platforms).toEqual(["linux/amd64", "linux/arm64"]);
    // The shared base layer is read once: bytes in = the three distinct source layers.
    expect(result.bytesIn).toBe(layers[0]!.length + layers[1]!.length + gzipTar([{ name: "arm-only", data: "arm64\n" }]).length);
    const idx = await getManifest(reg.url, "multi", "2.0-apparate");
    expect(idx.mediaType).toBe("application/vnd.oci.image.index.v1+json");
    expect(idx.json.annotations[SOURCE_DIGEST_ANNOTATION]).toBe(src);
    expect(idx.json.manifests.map((m: any) => m.platform.architecture)).toEqual(["amd64", "arm64"]);
    for (const m of idx.json.manifests) await checkConverted("multi", (await getManifest(reg.url, "multi", m.digest)).json);
  });

  it("copies a layer that already is eStargz instead of re-encoding it", async () => {
    const parts: Buffer[] = [];
    const conv = await convertLayer((async function* () { yield layers[0]!; })(), { write: async (b) => { parts.push(b); } });
    const esgz = Buffer.concat(parts);
    await pushTestImage(reg.url, "pre", "1", [{ layers: [
      { blob: esgz, diffID: conv.diffID, annotations: { [TOC_DIGEST_ANNOTATION]: conv.tocDigest, [UNCOMPRESSED_SIZE_ANNOTATION]: String(conv.uncompressedSize) } },
      { blob: layers[1]! },
    ] }]);
    const r = await cli(`${reg.host}/pre:1`, "--plain-http", "--json");
    expect(r.code, r.err).toBe(0);
    const result = JSON.parse(r.out);
    expect(result.layers[0]).toMatchObject({ copied: true, digest: conv.digest });
    expect(result.layers[1].copied).toBe(false);
    expect(result.bytesIn).toBe(layers[1]!.length);
    await checkConverted("pre", (await getManifest(reg.url, "pre", "1-apparate")).json);
  });

  it("a layer that only carries a toc.digest annotation (plain gzip, or eStargz with another TOC) is converted, not copied", async () => {
    const parts: Buffer[] = [];
    const conv = await convertLayer((async function* () { yield layers[1]!; })(), { write: async (b) => { parts.push(b); } });
    const esgz = Buffer.concat(parts);
    const plain = gunzipSync(layers[0]!);
    await pushTestImage(reg.url, "claims", "1", [{ layers: [
      // Plain gzip whose descriptor says eStargz: copying it would give an image that is not eStargz.
      { blob: layers[0]!, diffID: sha(plain), annotations: { [TOC_DIGEST_ANNOTATION]: sha("any toc"), [UNCOMPRESSED_SIZE_ANNOTATION]: String(plain.length) } },
      // A real eStargz blob annotated with a TOC digest that is not its own.
      { blob: esgz, diffID: conv.diffID, annotations: { [TOC_DIGEST_ANNOTATION]: sha("another toc"), [UNCOMPRESSED_SIZE_ANNOTATION]: String(conv.uncompressedSize) } },
    ] }]);
    const r = await cli(`${reg.host}/claims:1`, "--plain-http", "--json");
    expect(r.code, r.err).toBe(0);
    const result = JSON.parse(r.out);
    expect(result.layers.map((l: any) => l.copied)).toEqual([false, false]);
    const m = (await getManifest(reg.url, "claims", "1-apparate")).json;
    expect(m.layers[0].digest).not.toBe(sha(layers[0]!));
    await checkConverted("claims", m);
  });

  it("--dry-run says what would be converted and pushes nothing", async () => {
    await pushTestImage(reg.url, "dry", "1", [{ layers: layers.map((blob) => ({ blob })) }]);
    const r = await cli(`${reg.host}/dry:1`, "--plain-http", "--dry-run");
    expect(r.code, r.err).toBe(0);
    expect(r.out).toMatch(/would convert .*dry:1/);
    expect((await getManifest(reg.url, "dry", "1-apparate")).status).toBe(404);
  });

  it("bad inputs: a missing source, a tag that already has the suffix, bad flags: clear errors and exit codes", async () => {
    // A source that does not exist cannot be converted by retrying: the permanent status.
    const missing = await cli(`${reg.host}/nothing:here`, "--plain-http");
    expect(missing.code).toBe(EXIT_UNCONVERTIBLE);
    expect(missing.err).toMatch(/nothing:here does not exist/);
    const loop = await cli(`${reg.host}/app:1.0-apparate`, "--plain-http");
    expect(loop.code).toBe(1);
    expect(loop.err).toMatch(/already ends with "-apparate"/);
    expect((await cli(`${reg.host}/app:1.0`, "--chunk-size", "lots")).code).toBe(2);
    expect((await cli(`${reg.host}/app:1.0`, "--compression-level", "11")).err).toMatch(/--compression-level must be an integer from 1 to 9/);
    expect((await cli()).code).toBe(2);
  });

  it("a corrupt gzip layer fails for good (exit 11, not 1) naming the layer, and no tag is written", async () => {
    const bad = Buffer.from(layers[1]!);
    bad[bad.length - 6]! ^= 0xff;
    await pushTestImage(reg.url, "corrupt", "1", [{ layers: [{ blob: layers[0]! }, { blob: bad, diffID: sha("x") }] }]);
    const r = await cli(`${reg.host}/corrupt:1`, "--plain-http");
    expect(r.code).toBe(EXIT_UNCONVERTIBLE);
    expect(r.err).toMatch(new RegExp(`layer 2/2 \\(${sha(bad)}\\).*not valid gzip`));
    expect((await getManifest(reg.url, "corrupt", "1-apparate")).status).toBe(404);
  });

  describe("through a proxy that misbehaves", () => {
    let proxy: FaultServer;
    const seen: string[] = [];
    let mode: "refuse-manifest" | "cut-second-patch" | "pass" = "pass";
    let patches = 0;

    beforeAll(async () => {
      proxy = await startFaultServer((req: IncomingMessage, res: ServerResponse) => {
        seen.push(`${req.method} ${req.url?.split("?")[0]}`);
        if (mode === "refuse-manifest" && req.method === "PUT" && req.url?.includes("/manifests/")) {
          res.writeHead(403, { "content-type": "application/json" }).end(JSON.stringify({ errors: [{ code: "DENIED", message: "push refused by policy" }] }));
          return;
        }
        if (mode === "cut-second-patch" && req.method === "PATCH" && ++patches === 2) { req.socket.destroy(); return; }
        // Forward with the proxy's own Host, so that upload Locations point back here.
        const up = httpRequest({ host: "127.0.0.1", port: Number(reg.host.split(":")[1]), path: req.url, method: req.method, headers: req.headers }, (ur) => {
          res.writeHead(ur.statusCode ?? 502, ur.headers);
          ur.pipe(res);
        });
        up.on("error", () => res.destroy());
        req.pipe(up);
      });
      // A layer large enough for several 8 MiB PATCH requests.
      await pushTestImage(proxy.url, "big", "1", [{ layers: [{ blob: gzipTar([{ name: "random", data: randomBytes(24 * MiB) }]) }] }]);
    });
    afterAll(async () => { await proxy?.stop(); });

    it("a registry refusing the push: exit 1 with the registry's reason, no tag", async () => {
      mode = "refuse-manifest";
      const r = await cli(`${proxy.host}/big:1`, "--plain-http");
      expect(r.code).toBe(1);
      expect(r.err).toMatch(/refused the manifest: 403 \(DENIED: push refused by policy\)/);
      expect((await getManifest(reg.url, "big", "1-apparate")).status).toBe(404);
    });

    it("an upload cut off midway: exit 1, the upload session cancelled (DELETE), no tag", async () => {
      mode = "cut-second-patch";
      seen.length = 0;
      const r = await cli(`${proxy.host}/big:1`, "--plain-http");
      expect(r.code).toBe(1);
      expect(seen.some((s) => s.startsWith("DELETE /v2/big/blobs/uploads/"))).toBe(true);
      expect(seen.some((s) => s.startsWith("PUT /v2/big/manifests/"))).toBe(false);
      expect((await getManifest(reg.url, "big", "1-apparate")).status).toBe(404);
      // Negative control: the same conversion through a well-behaved proxy succeeds with chunked PATCHes.
      mode = "pass";
      seen.length = 0;
      const ok = await cli(`${proxy.host}/big:1`, "--plain-http");
      expect(ok.code, ok.err).toBe(0);
      expect(seen.filter((s) => s.startsWith("PATCH")).length).toBeGreaterThanOrEqual(3);
      await checkConverted("big", (await getManifest(reg.url, "big", "1-apparate")).json);
    });
  });

  it("putBlob helper sanity: the registry stores what is pushed", async () => {
    const d = await putBlob(reg.url, "sanity", Buffer.from("abc"));
    expect((await getBlob(reg.url, "sanity", d)).toString()).toBe("abc");
    expect(gzipSync(Buffer.alloc(0)).length).toBeGreaterThan(0);
  });
});
