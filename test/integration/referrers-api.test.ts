// The referrers API path of the digest links, tested against the OCI distribution spec's
// text only: no registry with the referrers API is packaged for these machines (Debian's
// docker-registry is distribution 2.8). The server below does what the spec says
// (opencontainers/distribution-spec spec.md, v1.1: "Pushing Manifests with Subject" — a
// registry that processes `subject` answers the PUT with `OCI-Subject: <digest>`;
// "Listing Referrers" — GET /v2/<name>/referrers/<digest>[?artifactType=] answers an image
// index of descriptors carrying artifactType and the manifest's annotations, with
// `OCI-Filters-Applied: artifactType` when it filtered) and nothing else, and records what
// it was asked: apparate must use the API and never write or read the referrers tag there.
import { createHash } from "node:crypto";
import { createServer, type IncomingMessage, type Server } from "node:http";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { TOC_DIGEST_ANNOTATION } from "../../src/convert/estargz.js";
import { SOURCE_DIGEST_ANNOTATION } from "../../src/convert/image.js";
import { RegistryClient } from "../../src/registry/client.js";
import { DigestLinkResolver } from "../../src/registry/link-resolver.js";
import { DialPolicy } from "../../src/registry/network.js";
import { Repository } from "../../src/registry/push.js";
import { EMPTY_DESCRIPTOR, LINK_ARTIFACT_TYPE, recordLink, referrersTag } from "../../src/registry/referrers.js";
import { TagResolver } from "../../src/registry/resolver.js";

const OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json";
const OCI_INDEX = "application/vnd.oci.image.index.v1+json";
const sha = (b: Buffer) => "sha256:" + createHash("sha256").update(b).digest("hex");

/** A registry that follows the spec's referrers API text (manifests in memory, one repository). */
function specRegistry() {
  const manifests = new Map<string, { mediaType: string; body: Buffer }>();
  const tags = new Map<string, string>();
  const asked: string[] = [];
  const read = (req: IncomingMessage) => new Promise<Buffer>((r) => { const c: Buffer[] = []; req.on("data", (d) => c.push(d)); req.on("end", () => r(Buffer.concat(c))); });
  const server: Server = createServer(async (req, res) => {
    const url = new URL(req.url!, "http://x");
    asked.push(`${req.method} ${url.pathname}`);
    const body = await read(req);
    let m = /^\/v2\/app\/manifests\/(.+)$/.exec(url.pathname);
    if (m) {
      const ref = decodeURIComponent(m[1]!);
      if (req.method === "PUT") {
        const digest = sha(body);
        manifests.set(digest, { mediaType: String(req.headers["content-type"]), body });
        if (!ref.startsWith("sha256:")) tags.set(ref, digest);
        const subject = (JSON.parse(body.toString()) as { subject?: { digest: string } }).subject;
        res.writeHead(201, { location: `/v2/app/manifests/${digest}`, "docker-content-digest": digest, ...(subject ? { "oci-subject": subject.digest } : {}) });
        return res.end();
      }
      const got = manifests.get(tags.get(ref) ?? ref);
      if (!got) { res.writeHead(404); return res.end(); }
      res.writeHead(200, { "content-type": got.mediaType, "docker-content-digest": sha(got.body) });
      return res.end(req.method === "HEAD" ? undefined : got.body);
    }
    m = /^\/v2\/app\/referrers\/(sha256:[0-9a-f]{64})$/.exec(url.pathname);
    if (m && req.method === "GET") {
      const filter = url.searchParams.get("artifactType");
      const list = [...manifests.entries()].flatMap(([digest, v]) => {
        const doc = JSON.parse(v.body.toString()) as { subject?: { digest: string }; artifactType?: string; config?: { mediaType: string }; annotations?: Record<string, string> };
        if (doc.subject?.digest !== m![1]) return [];
        const artifactType = doc.artifactType ?? doc.config?.mediaType;
        if (filter && artifactType !== filter) return [];
        return [{ mediaType: v.mediaType, digest, size: v.body.length, artifactType, annotations: doc.annotations }];
      });
      res.writeHead(200, { "content-type": OCI_INDEX, ...(filter ? { "oci-filters-applied": "artifactType" } : {}) });
      return res.end(JSON.stringify({ schemaVersion: 2, mediaType: OCI_INDEX, manifests: list }));
    }
    m = /^\/v2\/app\/blobs\/(sha256:[0-9a-f]{64})$/.exec(url.pathname);
    if (m) {
      // Only the empty blob is ever asked for here: it is present.
      res.writeHead(m[1] === EMPTY_DESCRIPTOR.digest ? 200 : 404, { "content-length": "2" });
      return res.end();
    }
    res.writeHead(404);
    res.end();
  });
  return { server, manifests, asked };
}

describe("digest links on a registry with the referrers API (against the spec's text)", () => {
  const reg = specRegistry();
  let host: string;
  let client: RegistryClient;
  beforeAll(async () => {
    await new Promise<void>((r) => reg.server.listen(0, "127.0.0.1", r));
    host = `127.0.0.1:${(reg.server.address() as { port: number }).port}`;
    client = new RegistryClient({ requestTimeoutMs: 5000, plainHttp: [host], dialPolicy: new DialPolicy({ anyAddress: true }) });
  });
  afterAll(async () => { await client.destroy(); reg.server.close(); });

  const X = "sha256:" + "a".repeat(64);
  it("recording uses the API: the registry answers OCI-Subject, so no referrers tag is read or written; the webhook's lookup lists it through the API and follows it", async () => {
    // Y: an eStargz image naming X, as apparate convert pushes it.
    const y = Buffer.from(JSON.stringify({ schemaVersion: 2, mediaType: OCI_MANIFEST, config: EMPTY_DESCRIPTOR, layers: [{ mediaType: "application/vnd.oci.image.layer.v1.tar+gzip", digest: "sha256:" + "c".repeat(64), size: 5, annotations: { [TOC_DIGEST_ANNOTATION]: "sha256:" + "d".repeat(64) } }], annotations: { [SOURCE_DIGEST_ANNOTATION]: X } }));
    reg.manifests.set(sha(y), { mediaType: OCI_MANIFEST, body: y });
    const repo = new Repository(client, { domain: host, path: "app" }, undefined, true, AbortSignal.timeout(10_000));
    const r = await recordLink(repo, { mediaType: OCI_MANIFEST, digest: X, size: 10 }, { mediaType: OCI_MANIFEST, digest: sha(y), size: y.length });
    expect(r.via).toBe("referrers-api");
    expect(reg.asked.filter((a) => a.includes(referrersTag(X)))).toEqual([]);

    reg.asked.length = 0;
    const links = new DigestLinkResolver(client, new TagResolver(client, { positiveTtlMs: 1000, negativeTtlMs: 1000, unknownBackoffMs: 1000, jitter: 0, maxEntries: 10, breakerFailures: 3, breakerCooldownMs: 1000 }), { maxEntries: 10, negativeTtlMs: 1000, unknownBackoffMs: 1000 });
    const answer = await links.lookup({ domain: host, path: "app", digest: X }, [], AbortSignal.timeout(5000));
    expect(answer).toEqual({ kind: "exists", mediaType: OCI_MANIFEST, digest: sha(y) });
    expect(reg.asked).toEqual([`GET /v2/app/referrers/${X}`, `GET /v2/app/manifests/${sha(y)}`]);
    // The listing the API gave: the link artifact, by type, with Y in its annotations.
    const listed = JSON.parse((await (await fetch(`http://${host}/v2/app/referrers/${X}?artifactType=${encodeURIComponent(LINK_ARTIFACT_TYPE)}`)).text()));
    expect(listed.manifests).toHaveLength(1);
    expect(listed.manifests[0]).toMatchObject({ artifactType: LINK_ARTIFACT_TYPE, digest: r.link });
  });
});
