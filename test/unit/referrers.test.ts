// The pure half of the digest links (src/registry/referrers.ts): the referrers tag name
// (rows from the distribution spec's "Referrers Tag Schema" text), the link artifact, the
// list kept under the tag, and the trust check the webhook runs before following a link.
import { describe, expect, it } from "vitest";
import { compileConfig } from "../../src/config/config.js";
import { TOC_DIGEST_ANNOTATION } from "../../src/convert/estargz.js";
import { conversionDecision } from "../../src/mutate/rules.js";
import { SOURCE_DIGEST_ANNOTATION } from "../../src/convert/image.js";
import {
  isReferrersTag, LINK_ARTIFACT_TYPE, LINK_TARGET_ANNOTATION, LINK_TARGET_MEDIA_TYPE_ANNOTATION, linkManifest, linksIn,
  parseReferrersList, referrerDescriptor, referrersTag, verifyTarget, withReferrer,
} from "../../src/registry/referrers.js";

const OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json";
const OCI_INDEX = "application/vnd.oci.image.index.v1+json";
const X = "sha256:" + "a".repeat(64);
const Y = "sha256:" + "b".repeat(64);
const Z = "sha256:" + "c".repeat(64);
const C1 = "sha256:" + "1".repeat(64);
const C2 = "sha256:" + "2".repeat(64);
const json = (o: unknown) => Buffer.from(JSON.stringify(o));
const estargzLayer = (d: string) => ({ mediaType: "application/vnd.oci.image.layer.v1.tar+gzip", digest: d, size: 10, annotations: { [TOC_DIGEST_ANNOTATION]: Z } });
const plainLayer = (d: string) => ({ mediaType: "application/vnd.oci.image.layer.v1.tar+gzip", digest: d, size: 10 });
const image = (source: string, layers: unknown[], extra: Record<string, unknown> = {}) =>
  ({ mediaType: OCI_MANIFEST, body: json({ schemaVersion: 2, mediaType: OCI_MANIFEST, config: { digest: Z }, layers, annotations: { [SOURCE_DIGEST_ANNOTATION]: source }, ...extra }) });

describe("referrers tag schema", () => {
  // distribution-spec spec.md, "Referrers Tag Schema": <alg>-<ref>, ref limited to 64
  // characters; the example maps sha256:aaa… to sha256-aaa….
  it.each([
    [X, "sha256-" + "a".repeat(64)],
    ["sha512:" + "f".repeat(128), "sha512-" + "f".repeat(64)],
    ["a+b.c_d:" + "0".repeat(10), "a-b.c_d-" + "0".repeat(10)],
  ])("%s -> %s", (digest, tag) => { expect(referrersTag(digest)).toBe(tag); });

  it("a string that is not a digest is refused with its code", () => {
    expect(() => referrersTag("latest")).toThrow(expect.objectContaining({ code: "digest-invalid" }));
  });

  it.each([
    ["sha256-" + "a".repeat(64), true], ["sha256-" + "a".repeat(64) + ".sig", true],
    ["1.0", false], ["sha256-abc", false], ["sha256-" + "a".repeat(64) + "-apparate", false],
  ])("isReferrersTag(%s) = %s", (tag, want) => { expect(isReferrersTag(tag)).toBe(want); });
});

describe("the link artifact and the list under the tag", () => {
  const body = linkManifest({ mediaType: OCI_MANIFEST, digest: X, size: 100 }, { mediaType: OCI_INDEX, digest: Y, size: 200 });

  it("is an OCI artifact manifest: artifactType, empty config and layer, subject X, Y in annotations; the same bytes every time", () => {
    const doc = JSON.parse(body.toString());
    expect(doc).toMatchObject({
      mediaType: OCI_MANIFEST, artifactType: LINK_ARTIFACT_TYPE, subject: { digest: X, size: 100 },
      config: { mediaType: "application/vnd.oci.empty.v1+json", size: 2 },
      annotations: { [LINK_TARGET_ANNOTATION]: Y, [LINK_TARGET_MEDIA_TYPE_ANNOTATION]: OCI_INDEX },
    });
    expect(linkManifest({ mediaType: OCI_MANIFEST, digest: X, size: 100 }, { mediaType: OCI_INDEX, digest: Y, size: 200 })).toEqual(body);
  });

  it("its descriptor carries artifactType and annotations (spec, Listing Referrers); adding it twice lists it once", () => {
    const d = referrerDescriptor(body);
    expect(d).toMatchObject({ mediaType: OCI_MANIFEST, artifactType: LINK_ARTIFACT_TYPE, size: body.length, annotations: { [LINK_TARGET_ANNOTATION]: Y } });
    const once = withReferrer(undefined, d);
    expect(withReferrer(once, d)).toBe(once);
    expect(once.manifests).toHaveLength(1);
    const other = { mediaType: OCI_MANIFEST, digest: Z, size: 5, artifactType: "application/vnd.example.sbom.v1" };
    expect(withReferrer(once, other).manifests).toEqual([d, other]);
  });

  it("linksIn keeps well-formed links only, the newest first", () => {
    const d = referrerDescriptor(body);
    const newer = referrerDescriptor(linkManifest({ mediaType: OCI_MANIFEST, digest: X, size: 100 }, { mediaType: OCI_MANIFEST, digest: Z, size: 9 }));
    const list = { schemaVersion: 2 as const, mediaType: OCI_INDEX, manifests: [
      d,
      { mediaType: OCI_MANIFEST, digest: C1, size: 1, artifactType: "application/vnd.example.sbom.v1", annotations: { [LINK_TARGET_ANNOTATION]: Y, [LINK_TARGET_MEDIA_TYPE_ANNOTATION]: OCI_MANIFEST } },
      { mediaType: OCI_MANIFEST, digest: C2, size: 1, artifactType: LINK_ARTIFACT_TYPE, annotations: { [LINK_TARGET_ANNOTATION]: "sha256:short", [LINK_TARGET_MEDIA_TYPE_ANNOTATION]: OCI_MANIFEST } },
      { mediaType: OCI_MANIFEST, digest: C2, size: 1, artifactType: LINK_ARTIFACT_TYPE, annotations: { [LINK_TARGET_ANNOTATION]: Y, [LINK_TARGET_MEDIA_TYPE_ANNOTATION]: "application/vnd.docker.distribution.manifest.v2+json" } },
      newer,
    ] };
    expect(linksIn(list, X)).toEqual([
      { source: X, target: Z, targetMediaType: OCI_MANIFEST, via: newer.digest },
      { source: X, target: Y, targetMediaType: OCI_INDEX, via: d.digest },
    ]);
  });

  it.each([
    ["an image manifest", OCI_MANIFEST, { schemaVersion: 2, mediaType: OCI_MANIFEST, config: {}, layers: [] }],
    ["an index of another media type header", "application/vnd.docker.distribution.manifest.list.v2+json", { schemaVersion: 2, manifests: [] }],
    ["not JSON", OCI_INDEX, "nope"],
  ])("a tag holding %s is not a referrers list", (_n, mt, doc) => {
    expect(parseReferrersList(typeof doc === "string" ? Buffer.from(doc) : json(doc), mt)).toBeUndefined();
  });
});

describe("verifyTarget: the check before a link is followed", () => {
  const children = (m: Record<string, { mediaType: string; body: Buffer }>) => new Map(Object.entries(m));
  const index = (source: string, ds: string[]) => ({ mediaType: OCI_INDEX, body: json({ schemaVersion: 2, mediaType: OCI_INDEX, manifests: ds.map((digest) => ({ mediaType: OCI_MANIFEST, digest, size: 1, platform: { os: "linux", architecture: "amd64" } })), annotations: { [SOURCE_DIGEST_ANNOTATION]: source } }) });

  it.each([
    ["an OCI manifest of eStargz layers naming X", image(X, [estargzLayer(C1), estargzLayer(C2)]), undefined, undefined],
    ["the same with subject X", image(X, [estargzLayer(C1)], { subject: { digest: X } }), undefined, undefined],
    ["an OCI index of eStargz manifests naming X", index(X, [C1, C2]), children({ [C1]: image(C1, [estargzLayer(Z)]), [C2]: image(C2, [estargzLayer(Z)]) }), undefined],
    ["a manifest with a plain gzip layer", image(X, [estargzLayer(C1), plainLayer(C2)]), undefined, /1 of its 2 layers are not eStargz/],
    ["a manifest naming another source", image(Z, [estargzLayer(C1)]), undefined, new RegExp(`names ${Z.slice(0, 19)}… as its source, not ${X.slice(0, 19)}…`)],
    ["a manifest naming no source", { mediaType: OCI_MANIFEST, body: json({ schemaVersion: 2, layers: [estargzLayer(C1)] }) }, undefined, /names no source/],
    ["a manifest whose subject is another image", image(X, [estargzLayer(C1)], { subject: { digest: Z } }), undefined, /its subject is/],
    ["a Docker manifest", { ...image(X, [estargzLayer(C1)]), mediaType: "application/vnd.docker.distribution.manifest.v2+json" }, undefined, /neither an OCI image manifest nor an OCI image index/],
    ["a manifest without layers", image(X, []), undefined, /no layers/],
    ["an index with a plain platform manifest", index(X, [C1, C2]), children({ [C1]: image(C1, [estargzLayer(Z)]), [C2]: image(C2, [plainLayer(Z)]) }), new RegExp(`platform manifest ${C2.slice(0, 19)}…: 1 of its 1 layers are not eStargz`)],
    ["an index whose platform manifest could not be read", index(X, [C1]), children({}), /could not be read/],
    ["an index naming another source", index(Z, [C1]), children({ [C1]: image(C1, [estargzLayer(Z)]) }), /as its source/],
    ["not JSON", { mediaType: OCI_MANIFEST, body: Buffer.from("{") }, undefined, /not JSON/],
  ])("%s", (_name, target, kids, refused) => {
    const v = verifyTarget(X, target, kids);
    if (refused === undefined) expect(v).toEqual({ ok: true });
    else { expect(v.ok).toBe(false); expect((v as { reason: string }).reason).toMatch(refused); }
  });
});

describe("the converter never converts a referrers tag", () => {
  const config = compileConfig({ acceleration: { registries: ["registry.test"] } });
  it.each([
    ["sha256-" + "a".repeat(64), false],
    ["sha256-" + "a".repeat(64) + ".sig", false],
    ["1.0", true],
  ])("conversionDecision(app:%s).convert = %s", (tag, convert) => {
    const d = conversionDecision({ domain: "registry.test", path: "app", tag }, config);
    expect(d.convert).toBe(convert);
    if (!d.convert) expect(d.reason).toMatch(/referrers tag/);
  });
});
