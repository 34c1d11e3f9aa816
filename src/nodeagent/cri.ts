// What containerd's CRI really runs with: the CRI Status call (verbose) on
// containerd's socket. Unimplemented means the CRI plugin did not load; the verbose
// info carries the config CRI loaded (snapshotter, registry config_path), which is
// what the kubelet gets — unlike the file on disk, which may not be applied yet.
// containerd 2.x moved the image config out of Status: there the CRI snapshotter is read
// from ImageFsInfo (its image filesystem is root/io.containerd.snapshotter.v1.<name>),
// and config_path is not reported by the daemon at all (undefined).
import { existsSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import * as grpc from "@grpc/grpc-js";
import * as protoLoader from "@grpc/proto-loader";

const here = dirname(fileURLToPath(import.meta.url));
const protoPath = [join(here, "cri.proto"), join(here, "../../src/nodeagent/cri.proto")].find(existsSync)!;
// biome-ignore lint/suspicious/noExplicitAny: generated at run time from the .proto
const pkg = grpc.loadPackageDefinition(protoLoader.loadSync(protoPath, { keepCase: true, defaults: true })) as any;
const RuntimeService = pkg.runtime.v1.RuntimeService as typeof grpc.Client;
const ImageService = pkg.runtime.v1.ImageService as typeof grpc.Client;

export type CriStatus =
  | {
    loaded: true; snapshotter: string; ready: boolean;
    /** The registry config_path CRI runs with; undefined where the daemon does not report it (containerd 2.x). */
    configPath: string | undefined;
    /** The daemon's CRI config as Status reports it (1.x: the whole CRI config; 2.x: the runtime part). */
    // biome-ignore lint/suspicious/noExplicitAny: containerd's criconfig as JSON
    config: any;
  }
  | { loaded: false; reason: string; /** the socket did not answer at all */ unreachable?: boolean };

export function criStatus(socket: string, timeoutMs = 3000): Promise<CriStatus> {
  if (!existsSync(socket)) return Promise.resolve({ loaded: false, reason: `containerd socket ${socket} does not exist`, unreachable: true });
  return new Promise((resolve) => {
    const client = new RuntimeService(`unix:${socket}`, grpc.credentials.createInsecure());
    // biome-ignore lint/suspicious/noExplicitAny: dynamic client
    (client as any).Status({ verbose: true }, { deadline: Date.now() + timeoutMs }, (err: grpc.ServiceError | null, res: { status?: { conditions?: { type: string; status: boolean }[] }; info?: Record<string, string> }) => {
      client.close();
      if (err) {
        if (err.code === grpc.status.UNIMPLEMENTED) return resolve({ loaded: false, reason: "containerd runs without its CRI plugin (the plugin failed to load or is disabled)" });
        return resolve({ loaded: false, reason: `CRI status failed: ${err.details || err.message}`, unreachable: err.code === grpc.status.UNAVAILABLE || err.code === grpc.status.DEADLINE_EXCEEDED });
      }
      // biome-ignore lint/suspicious/noExplicitAny: containerd's criconfig.Config as JSON
      let cfg: any = {};
      try { cfg = JSON.parse(res.info?.config ?? "{}"); } catch { /* older containerd: no config in info */ }
      const ready = (res.status?.conditions ?? []).find((c) => c.type === "RuntimeReady")?.status ?? false;
      if (typeof cfg.containerd?.snapshotter === "string") {
        return resolve({ loaded: true, snapshotter: cfg.containerd.snapshotter, configPath: cfg.registry?.configPath ?? "", ready, config: cfg });
      }
      imageFsSnapshotter(socket, timeoutMs).then((snapshotter) => resolve({ loaded: true, snapshotter, configPath: undefined, ready, config: cfg }));
    });
  });
}

/** containerd 2.x: the CRI image service's snapshotter, from the path of its image filesystem ("" if not reported). */
function imageFsSnapshotter(socket: string, timeoutMs: number): Promise<string> {
  return new Promise((resolve) => {
    const client = new ImageService(`unix:${socket}`, grpc.credentials.createInsecure());
    // biome-ignore lint/suspicious/noExplicitAny: dynamic client
    (client as any).ImageFsInfo({}, { deadline: Date.now() + timeoutMs }, (err: grpc.ServiceError | null, res: { image_filesystems?: { fs_id?: { mountpoint?: string } }[] }) => {
      client.close();
      if (err) return resolve("");
      const m = (res.image_filesystems ?? []).map((f) => /io\.containerd\.snapshotter\.v1\.([^/]+)$/.exec(f.fs_id?.mountpoint ?? "")?.[1]).find((x) => x !== undefined);
      resolve(m ?? "");
    });
  });
}

/** Polls until CRI answers (loaded or not) or the deadline passes; "not initialized yet" is retried. */
export async function waitForCri(socket: string, deadlineMs: number, alive: () => boolean = () => true): Promise<CriStatus> {
  const end = Date.now() + deadlineMs;
  let last: CriStatus = { loaded: false, reason: "no answer", unreachable: true };
  while (Date.now() < end && alive()) {
    last = await criStatus(socket, Math.min(2000, Math.max(200, end - Date.now())));
    if (last.loaded || (!last.unreachable && !/not initialized/.test(last.reason))) return last;
    await new Promise((r) => setTimeout(r, 100));
  }
  return last;
}
