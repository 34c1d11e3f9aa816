// Real test images: a root filesystem built with umoci (busybox, a small file and a
// large one that a quick command never reads), pushed with skopeo; its eStargz
// "-apparate" variant converted by ctr-remote against a containerd.
import { copyFileSync, mkdirSync, writeFileSync } from "node:fs";
import { randomBytes } from "node:crypto";
import { join } from "node:path";
import { run, type TestContainerd } from "./containerd.js";

export async function buildAndPushImage(dir: string, ref: string, bigBytes: number): Promise<void> {
  mkdirSync(dir, { recursive: true });
  const o = { cwd: dir };
  await run("umoci", ["init", "--layout", "img"], o);
  await run("umoci", ["new", "--image", "img:1"], o);
  await run("umoci", ["unpack", "--rootless", "--image", "img:1", "bundle"], o);
  const rootfs = join(dir, "bundle", "rootfs");
  mkdirSync(join(rootfs, "bin"), { recursive: true });
  mkdirSync(join(rootfs, "www"), { recursive: true });
  copyFileSync("/bin/busybox", join(rootfs, "bin", "busybox"));
  writeFileSync(join(rootfs, "www", "index.html"), "hello from apparate\n");
  writeFileSync(join(rootfs, "www", "big.bin"), randomBytes(bigBytes));
  await run("umoci", ["repack", "--image", "img:1", "bundle"], o);
  await run("umoci", ["config", "--image", "img:1", "--config.cmd", "/bin/busybox", "--config.cmd", "cat", "--config.cmd", "/www/index.html"], o);
  await run("skopeo", ["copy", "--quiet", "--dest-tls-verify=false", "oci:img:1", `docker://${ref}`], { ...o, timeout: 120_000 });
}

/** ref -> ref-apparate (eStargz, OCI), pushed; the converted image is removed from containerd afterwards. */
export async function convertAndPush(ctd: TestContainerd, ref: string, accelerated: string): Promise<void> {
  await ctd.ctr(["images", "pull", "--plain-http", ref]);
  await ctd.ctr(["images", "convert", "--estargz", "--oci", ref, accelerated]);
  await ctd.ctr(["images", "push", "--plain-http", accelerated]);
  await ctd.ctr(["images", "rm", ref, accelerated]);
  await ctd.ctr(["content", "prune", "references"]).catch(() => undefined);
}

/** Total compressed size of an image's layers, from its manifest in the registry. */
export async function layerBytes(registryUrl: string, name: string, tag: string): Promise<number> {
  const r = await fetch(`${registryUrl}/v2/${name}/manifests/${tag}`, { headers: { accept: "application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.v2+json" } });
  const m = (await r.json()) as { layers: Array<{ size: number }> };
  return m.layers.reduce((a, l) => a + l.size, 0);
}
