// `apparate converter` from the command line: options, the engine, the Kubernetes
// client for failure Events, and SIGTERM.
import { KubeConfig } from "@kubernetes/client-node";
import { parseCommandArgs, UsageError } from "../cli/command.js";
import { loadCliConfig } from "../cli/config.js";
import { converterSpec } from "./spec.js";
import { createLogger } from "../observability/logger.js";
import { startConverter } from "./main.js";

export async function converterMain(argv: readonly string[]): Promise<number> {
  const { values } = parseCommandArgs(converterSpec, argv);
  const config = loadCliConfig(values.config as string | undefined);
  const portText = (values.port as string | undefined) ?? process.env.PORT ?? "8080";
  const port = Number(portText);
  if (!Number.isInteger(port) || port < 0 || port > 65535) throw new UsageError("converter", `--port ${JSON.stringify(portText)} is not a port number`);
  if (config.converter.mode === "job" && !(process.env.KUBERNETES_SERVICE_HOST && process.env.POD_NAME)) {
    throw new UsageError("converter", "converter.mode job creates Kubernetes Jobs: run it in a cluster (KUBERNETES_SERVICE_HOST and POD_NAME set), or use inprocess");
  }
  const logger = createLogger({ name: "apparate-converter" });
  let kube: { kc: KubeConfig; namespace: string; podName: string } | undefined;
  if (process.env.KUBERNETES_SERVICE_HOST && process.env.POD_NAME) {
    const kc = new KubeConfig();
    kc.loadFromDefault();
    kube = { kc, namespace: process.env.POD_NAMESPACE ?? config.releaseNamespace, podName: process.env.POD_NAME };
  }
  const handle = await startConverter({
    config, logger, port, host: (values.host as string | undefined) ?? process.env.HOST ?? "0.0.0.0",
    scanOnStart: !values["no-scan"], ...(kube ? { kube } : {}),
  });
  await new Promise<void>((resolve) => {
    const stop = (signal: string) => {
      logger.info({ signal }, "stopping: no new work, running conversions aborted");
      void handle.close().finally(resolve);
    };
    process.once("SIGTERM", () => stop("SIGTERM"));
    process.once("SIGINT", () => stop("SIGINT"));
  });
  return 0;
}
