// A real OCI registry for tests: Debian's docker-registry (CNCF distribution 2.8)
// on loopback, with its own storage, optionally behind htpasswd or token auth.
import { spawn, execFileSync, type ChildProcess } from "node:child_process";
import { createHash } from "node:crypto";
import { mkdtempSync, rmSync, writeFileSync, existsSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { freePort, waitFor } from "./ports.js";

export const REGISTRY_BIN = process.env.REGISTRY_BIN ?? "/usr/bin/docker-registry";
export const registryAvailable = existsSync(REGISTRY_BIN);

export interface TokenAuth { realm: string; service: string; issuer: string; rootCertBundle: string }

export interface RegistryOptions {
  htpasswd?: { user: string; password: string };
  token?: TokenAuth;
  storageDir?: string;
  /** notifications.endpoints: the registry POSTs its events here (distribution's in-memory queue). */
  notify?: { url: string; headers?: Record<string, string> };
  /** A fixed port (to restart a registry on the same address). */
  port?: number;
}

export interface RunningRegistry {
  host: string; // 127.0.0.1:port
  url: string;
  storageDir: string;
  stop(): Promise<void>;
}

function notifications(n: NonNullable<RegistryOptions["notify"]>): string {
  const headers = Object.entries(n.headers ?? {}).map(([k, v]) => `        ${k}: [${JSON.stringify(v)}]\n`).join("");
  // A short timeout and backoff: tests see delivery within a second of the push.
  return `notifications:\n  endpoints:\n    - name: apparate\n      url: ${n.url}\n      timeout: 2s\n      threshold: 3\n      backoff: 200ms\n${headers ? `      headers:\n${headers}` : ""}`;
}

export async function startRegistry(opts: RegistryOptions = {}): Promise<RunningRegistry> {
  const dir = mkdtempSync(join(tmpdir(), "apparate-registry-"));
  const storageDir = opts.storageDir ?? join(dir, "storage");
  const port = opts.port ?? await freePort();
  let auth = "";
  if (opts.htpasswd) {
    const line = execFileSync("htpasswd", ["-Bbn", opts.htpasswd.user, opts.htpasswd.password]).toString().trim();
    writeFileSync(join(dir, "htpasswd"), line + "\n");
    auth = `auth:\n  htpasswd:\n    realm: apparate-test\n    path: ${join(dir, "htpasswd")}\n`;
  } else if (opts.token) {
    auth = `auth:\n  token:\n    realm: ${opts.token.realm}\n    service: ${opts.token.service}\n    issuer: ${opts.token.issuer}\n    rootcertbundle: ${opts.token.rootCertBundle}\n`;
  }
  const cfg = `version: 0.1
log:
  level: error
  accesslog:
    disabled: true
storage:
  filesystem:
    rootdirectory: ${storageDir}
  delete:
    enabled: true
http:
  addr: 127.0.0.1:${port}
  secret: apparate-test-secret
${auth}${opts.notify ? notifications(opts.notify) : ""}`;
  writeFileSync(join(dir, "config.yml"), cfg);
  const child: ChildProcess = spawn(REGISTRY_BIN, ["serve", join(dir, "config.yml")], { stdio: ["ignore", "ignore", "pipe"] });
  let stderr = "";
  child.stderr?.on("data", (d: Buffer) => { stderr += d.toString(); });
  const url = `http://127.0.0.1:${port}`;
  try {
    await waitFor(async () => {
      if (child.exitCode !== null) throw new Error(`registry exited: ${stderr}`);
      const r = await fetch(`${url}/v2/`);
      return r.status === 200 || r.status === 401;
    }, 15_000, "the registry");
  } catch (err) {
    child.kill("SIGKILL");
    throw new Error(`registry did not start: ${(err as Error).message}\n${stderr}`);
  }
  return {
    host: `127.0.0.1:${port}`, url, storageDir,
    stop: async () => {
      if (child.exitCode === null) {
        const done = new Promise((r) => child.once("exit", r));
        child.kill("SIGTERM");
        await Promise.race([done, new Promise((r) => setTimeout(r, 3000))]);
        if (child.exitCode === null) child.kill("SIGKILL");
      }
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

const sha = (b: Buffer) => "sha256:" + createHash("sha256").update(b).digest("hex");

async function putBlob(url: string, name: string, data: Buffer, headers: Record<string, string>): Promise<string> {
  const digest = sha(data);
  const start = await fetch(`${url}/v2/${name}/blobs/uploads/`, { method: "POST", headers });
  if (start.status !== 202) throw new Error(`blob upload start: ${start.status} ${await start.text()}`);
  let loc = start.headers.get("location")!;
  if (loc.startsWith("/")) loc = url + loc;
  const sep = loc.includes("?") ? "&" : "?";
  const put = await fetch(`${loc}${sep}digest=${encodeURIComponent(digest)}`, {
    method: "PUT", headers: { ...headers, "content-type": "application/octet-stream" }, body: data,
  });
  if (put.status !== 201) throw new Error(`blob upload: ${put.status} ${await put.text()}`);
  return digest;
}

export type ManifestKind = "oci-manifest" | "oci-index" | "docker-v2" | "docker-list";

/**
 * Pushes a tiny but real image (config + one layer) through the registry's HTTP API,
 * with the manifest media type asked for. Returns the manifest digest.
 */
export async function pushImage(url: string, name: string, tag: string, kind: ManifestKind = "oci-manifest", headers: Record<string, string> = {}): Promise<string> {
  const isOci = kind.startsWith("oci");
  const config = Buffer.from(JSON.stringify({ architecture: "amd64", os: "linux", rootfs: { type: "layers", diff_ids: [] }, config: {} }));
  const layer = Buffer.from(`layer of ${name}:${tag}`);
  const cfgDigest = await putBlob(url, name, config, headers);
  const layerDigest = await putBlob(url, name, layer, headers);
  const manifestType = isOci ? "application/vnd.oci.image.manifest.v1+json" : "application/vnd.docker.distribution.manifest.v2+json";
  const manifest = Buffer.from(JSON.stringify({
    schemaVersion: 2, mediaType: manifestType,
    config: { mediaType: isOci ? "application/vnd.oci.image.config.v1+json" : "application/vnd.docker.container.image.v1+json", digest: cfgDigest, size: config.length },
    layers: [{ mediaType: isOci ? "application/vnd.oci.image.layer.v1.tar+gzip" : "application/vnd.docker.image.rootfs.diff.tar.gzip", digest: layerDigest, size: layer.length }],
  }));
  let body = manifest;
  let type = manifestType;
  if (kind === "oci-index" || kind === "docker-list") {
    const mDigest = sha(manifest);
    const r = await fetch(`${url}/v2/${name}/manifests/${mDigest}`, { method: "PUT", headers: { ...headers, "content-type": manifestType }, body: manifest });
    if (r.status !== 201) throw new Error(`manifest put: ${r.status} ${await r.text()}`);
    type = kind === "oci-index" ? "application/vnd.oci.image.index.v1+json" : "application/vnd.docker.distribution.manifest.list.v2+json";
    body = Buffer.from(JSON.stringify({ schemaVersion: 2, mediaType: type, manifests: [{ mediaType: manifestType, digest: mDigest, size: manifest.length, platform: { architecture: "amd64", os: "linux" } }] }));
  }
  const r = await fetch(`${url}/v2/${name}/manifests/${tag}`, { method: "PUT", headers: { ...headers, "content-type": type }, body });
  if (r.status !== 201) throw new Error(`manifest put ${name}:${tag}: ${r.status} ${await r.text()}`);
  return sha(body);
}
