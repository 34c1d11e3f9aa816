// A node that pulls lazily, for the tests that prove an apparate image loads on demand: the
// test stargz snapshotter (built from Debian's stargz-snapshotter library) serving a proxy
// plugin, and a real containerd of the given release using it, with CRI on (stargz as the CRI
// snapshotter, snapshot annotations on, hosts.toml for the registries) or off (ctr only).
import { execFileSync, spawn, type ChildProcess } from "node:child_process";
import { existsSync, mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { SYSTEM_CONTAINERD, TestContainerd, type ContainerdBinary } from "./containerd.js";
import { waitFor } from "./ports.js";

export const TEST_SNAPSHOTTER = ".tmp/bin/apparate-test-snapshotter";

export interface LazyNodeOptions {
  release?: ContainerdBinary;
  /** Registry hosts the snapshotter and containerd reach over plain HTTP (each gets a hosts.toml). */
  plainHttp: string[];
  /** CRI on (the kubelet's path) or disabled (ctr-remote only). */
  cri: boolean;
}

export interface LazyNode {
  ctd: TestContainerd;
  /** Stops containerd and the snapshotter and detaches every mount under the node's folder. */
  stop(): Promise<void>;
}

/** The CRI image settings where each major reads them: 1.x in a version-2 file, 2.x in a version-3 file. */
export function lazyNodeConfig(release: ContainerdBinary, dir: string, sock: string, certs: string, cri: boolean): string {
  const head = `root = "${dir}/ctd/root"\nstate = "${dir}/ctd/state"\n[grpc]\naddress = "${dir}/ctd/containerd.sock"\n[proxy_plugins.stargz]\ntype = "snapshot"\naddress = "${sock}"\n`;
  if (!cri) return `version = 2\ndisabled_plugins = ["io.containerd.grpc.v1.cri"]\n${head}`;
  if (release.version.startsWith("2")) {
    return `version = 3\n${head}[plugins."io.containerd.cri.v1.images"]\nsnapshotter = "stargz"\ndisable_snapshot_annotations = false\n[plugins."io.containerd.cri.v1.images".registry]\nconfig_path = "${certs}"\n`;
  }
  return `version = 2\n${head}[plugins."io.containerd.grpc.v1.cri".containerd]\nsnapshotter = "stargz"\ndisable_snapshot_annotations = false\n[plugins."io.containerd.grpc.v1.cri".registry]\nconfig_path = "${certs}"\n`;
}

/** Starts the snapshotter and containerd in `dir` (which must exist and be the node's alone). */
export async function startLazyNode(dir: string, o: LazyNodeOptions): Promise<LazyNode> {
  const release = o.release ?? SYSTEM_CONTAINERD;
  execFileSync("bash", ["test/support/build-snapshotter.sh"], { stdio: "inherit" });
  const sock = join(dir, "sn", "stargz.sock");
  const sn: ChildProcess = spawn(TEST_SNAPSHOTTER, ["--address", sock, "--root", join(dir, "sn", "root"), "--plain-http", o.plainHttp.join(",")], { stdio: "ignore" });
  const certs = join(dir, "certs.d");
  let ctd: TestContainerd | undefined;
  const stop = async () => {
    await ctd?.stop();
    sn.kill("SIGTERM");
    await new Promise((r) => setTimeout(r, 500));
    try { execFileSync("bash", ["-c", `grep -o '${dir}[^ ]*' /proc/mounts | sort -r | xargs -r -n1 umount -l`]); } catch { /* none mounted */ }
  };
  try {
    await waitFor(async () => existsSync(sock), 30_000, "the snapshotter socket");
    for (const host of o.plainHttp) {
      mkdirSync(join(certs, host), { recursive: true });
      writeFileSync(join(certs, host, "hosts.toml"), `server = "http://${host}"\n[host."http://${host}"]\ncapabilities = ["pull", "resolve"]\n`);
    }
    const configPath = join(dir, "containerd.toml");
    writeFileSync(configPath, lazyNodeConfig(release, dir, sock, certs, o.cri));
    ctd = new TestContainerd(join(dir, "ctd"), configPath, release);
    await ctd.start();
  } catch (err) {
    await stop();
    throw err;
  }
  return { ctd, stop };
}
