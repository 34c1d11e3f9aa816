// A CRI client for tests, calling containerd's CRI as the kubelet does: the config CRI
// really loaded (Status, verbose) and image pulls (PullImage), on a unix socket.
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import * as grpc from "@grpc/grpc-js";
import * as protoLoader from "@grpc/proto-loader";

const here = dirname(fileURLToPath(import.meta.url));
const pkg = grpc.loadPackageDefinition(protoLoader.loadSync(join(here, "cri-client.proto"), { keepCase: true, defaults: true })) as any;

function call<T>(service: "RuntimeService" | "ImageService", method: string, socket: string, req: object, timeoutMs: number): Promise<T> {
  const client = new pkg.runtime.v1[service](`unix:${socket}`, grpc.credentials.createInsecure()) as grpc.Client;
  return new Promise<T>((resolve, reject) => {
    (client as any)[method](req, { deadline: Date.now() + timeoutMs }, (err: grpc.ServiceError | null, res: T) => {
      client.close();
      if (err) reject(new Error(`CRI ${method}: ${err.details || err.message}`));
      else resolve(res);
    });
  });
}

/** containerd's CRI config as CRI loaded it (criconfig.Config as JSON). */
export async function criConfig(socket: string): Promise<any> {
  const res = await call<{ info: Record<string, string> }>("RuntimeService", "Status", socket, { verbose: true }, 5000);
  return JSON.parse(res.info.config ?? "{}");
}

export async function criPull(socket: string, image: string, timeoutMs = 60_000): Promise<string> {
  return (await call<{ image_ref: string }>("ImageService", "PullImage", socket, { image: { image } }, timeoutMs)).image_ref;
}

export async function criRemoveImage(socket: string, image: string): Promise<void> {
  await call("ImageService", "RemoveImage", socket, { image: { image } }, 10_000);
}
