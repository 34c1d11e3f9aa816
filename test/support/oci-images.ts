// Pushes test images made of given layer blobs straight through the registry API:
// OCI or Docker schema 2 manifests, one platform or an index of several, with a
// config that lists the layers' diffIDs and a history. Also reads images back.
import { createHash } from "node:crypto";
import { gunzipSync } from "node:zlib";

const sha = (b: Buffer) => "sha256:" + createHash("sha256").update(b).digest("hex");

export async function putBlob(url: string, name: string, data: Buffer): Promise<string> {
  const digest = sha(data);
  const start = await fetch(`${url}/v2/${name}/blobs/uploads/`, { method: "POST" });
  if (start.status !== 202) throw new Error(`blob upload start: ${start.status} ${await start.text()}`);
  const loc = new URL(start.headers.get("location")!, url);
  loc.searchParams.set("digest", digest);
  const put = await fetch(loc, { method: "PUT", headers: { "content-type": "application/octet-stream" }, body: data });
  if (put.status !== 201) throw new Error(`blob upload: ${put.status} ${await put.text()}`);
  return digest;
}

export async function putManifest(url: string, name: string, ref: string, mediaType: string, body: Buffer): Promise<string> {
  const r = await fetch(`${url}/v2/${name}/manifests/${ref}`, { method: "PUT", headers: { "content-type": mediaType }, body });
  if (r.status !== 201) throw new Error(`manifest put ${name}:${ref}: ${r.status} ${await r.text()}`);
  return sha(body);
}

export interface TestLayer { blob: Buffer; annotations?: Record<string, string>; diffID?: string }
export interface PlatformImage { layers: TestLayer[]; architecture?: string; os?: string }

const OCI = { manifest: "application/vnd.oci.image.manifest.v1+json", index: "application/vnd.oci.image.index.v1+json", config: "application/vnd.oci.image.config.v1+json", layer: "application/vnd.oci.image.layer.v1.tar+gzip" };
const DOCKER = { manifest: "application/vnd.docker.distribution.manifest.v2+json", index: "application/vnd.docker.distribution.manifest.list.v2+json", config: "application/vnd.docker.container.image.v1+json", layer: "application/vnd.docker.image.rootfs.diff.tar.gzip" };

async function pushPlatform(url: string, name: string, img: PlatformImage, kind: "oci" | "docker"): Promise<{ body: Buffer; digest: string }> {
  const t = kind === "oci" ? OCI : DOCKER;
  const descs = [];
  for (const l of img.layers) {
    const digest = await putBlob(url, name, l.blob);
    descs.push({ mediaType: t.layer, digest, size: l.blob.length, ...(l.annotations && kind === "oci" ? { annotations: l.annotations } : {}) });
  }
  const config = Buffer.from(JSON.stringify({
    architecture: img.architecture ?? "amd64", os: img.os ?? "linux",
    config: { Cmd: ["/bin/sh"], Env: ["PATH=/usr/bin:/bin"] },
    rootfs: { type: "layers", diff_ids: img.layers.map((l) => l.diffID ?? sha(gunzipSync(l.blob))) },
    history: img.layers.map((_, i) => ({ created: "2024-01-01T00:00:00Z", created_by: `layer ${i + 1}` })),
  }));
  const cfgDigest = await putBlob(url, name, config);
  const body = Buffer.from(JSON.stringify({ schemaVersion: 2, mediaType: t.manifest, config: { mediaType: t.config, digest: cfgDigest, size: config.length }, layers: descs }));
  return { body, digest: sha(body) };
}

/** Pushes one platform (a manifest) or several (an index) under `tag`; returns the tag's digest. */
export async function pushTestImage(url: string, name: string, tag: string, platforms: PlatformImage[], kind: "oci" | "docker" = "oci"): Promise<string> {
  const t = kind === "oci" ? OCI : DOCKER;
  if (platforms.length === 1) {
    const m = await pushPlatform(url, name, platforms[0]!, kind);
    return putManifest(url, name, tag, t.manifest, m.body);
  }
  const manifests = [];
  for (const p of platforms) {
    const m = await pushPlatform(url, name, p, kind);
    await putManifest(url, name, m.digest, t.manifest, m.body);
    manifests.push({ mediaType: t.manifest, digest: m.digest, size: m.body.length, platform: { architecture: p.architecture ?? "amd64", os: p.os ?? "linux" } });
  }
  return putManifest(url, name, tag, t.index, Buffer.from(JSON.stringify({ schemaVersion: 2, mediaType: t.index, manifests })));
}

const ACCEPT = [OCI.index, OCI.manifest, DOCKER.index, DOCKER.manifest].join(", ");

export async function getManifest(url: string, name: string, ref: string): Promise<{ status: number; mediaType: string; digest: string; json: any }> {
  const r = await fetch(`${url}/v2/${name}/manifests/${ref}`, { headers: { accept: ACCEPT } });
  const body = Buffer.from(await r.arrayBuffer());
  return { status: r.status, mediaType: r.headers.get("content-type") ?? "", digest: sha(body), json: r.status === 200 ? JSON.parse(body.toString()) : undefined };
}

export async function getBlob(url: string, name: string, digest: string): Promise<Buffer> {
  const r = await fetch(`${url}/v2/${name}/blobs/${digest}`);
  if (r.status !== 200) throw new Error(`blob ${digest}: ${r.status}`);
  return Buffer.from(await r.arrayBuffer());
}
