// Snapshotter health: its socket answers a snapshot listing (containerd's
// snapshots gRPC API, the same call containerd makes through the proxy plugin).
import { fileURLToPath } from "node:url";
import { dirname, join } from "node:path";
import { existsSync } from "node:fs";
import * as grpc from "@grpc/grpc-js";
import * as protoLoader from "@grpc/proto-loader";

const here = dirname(fileURLToPath(import.meta.url));
// The .proto ships next to the compiled file (dist/) and the source (src/).
const protoPath = [join(here, "snapshots.proto"), join(here, "../../src/nodeagent/snapshots.proto")].find(existsSync)!;
const def = protoLoader.loadSync(protoPath, { keepCase: true, defaults: true });
const pkg = grpc.loadPackageDefinition(def) as any;
const SnapshotsClient = pkg.containerd.services.snapshots.v1.Snapshots as typeof grpc.Client;

export interface Health { healthy: boolean; snapshots?: number; reason?: string }

export function checkSnapshotter(socket: string, timeoutMs = 2000): Promise<Health> {
  if (!existsSync(socket)) return Promise.resolve({ healthy: false, reason: `socket ${socket} does not exist` });
  return new Promise((resolve) => {
    const client = new SnapshotsClient(`unix:${socket}`, grpc.credentials.createInsecure());
    let count = 0;
    let settled = false;
    const done = (h: Health) => { if (!settled) { settled = true; client.close(); resolve(h); } };
    const call = (client as any).List({ snapshotter: "stargz", filters: [] }, { deadline: Date.now() + timeoutMs });
    call.on("data", (r: { info?: unknown[] }) => { count += r.info?.length ?? 0; });
    call.on("error", (e: grpc.ServiceError) => {
      // A fresh snapshotter has no metadata bucket yet and says so: that is an answer.
      if ((e.code === grpc.status.UNKNOWN || e.code === grpc.status.NOT_FOUND) && /bucket does not exist|not found/.test(e.details ?? e.message)) {
        done({ healthy: true, snapshots: 0 });
        return;
      }
      done({ healthy: false, reason: `snapshot listing failed: ${e.message}` });
    });
    call.on("end", () => done({ healthy: true, snapshots: count }));
  });
}
