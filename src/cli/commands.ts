// Every subcommand of the `apparate` binary: its help and how it runs. Commands whose
// module parses its own arguments ("delegated") are listed with the options that
// module accepts, so `apparate <cmd> --help` documents them too.
import { checkImage, checkImageSpec } from "./check-image.js";
import type { CommandSpec } from "./command.js";
import { CONFIG_ENV, CONFIG_OPTION } from "./config.js";
import { explain, explainSpec } from "./explain.js";
import { report, reportSpec } from "./report.js";
import { convertCommand, convertSpec } from "../convert/command.js";
import { converterSpec } from "../converter/spec.js";
import { recordPrefetchSpec } from "../nodeagent/record-prefetch-spec.js";

export interface Command {
  spec: CommandSpec;
  /** Hidden commands are run by the chart, not by people: listed last. */
  internal?: boolean;
  run(argv: readonly string[], out: NodeJS.WritableStream): Promise<number>;
}

const LOG_ENV = { LOG_LEVEL: "log level: fatal, error, warn, info (default), debug, trace, silent" };

const serveSpec: CommandSpec = {
  name: "serve",
  summary: "Run the admission webhook (HTTPS) and its metrics and health endpoints.",
  usage: "[options]",
  options: {
    config: CONFIG_OPTION,
    port: { type: "string", value: "PORT", description: "HTTPS port of the webhook (default: $PORT, else 8443)" },
    "metrics-port": { type: "string", value: "PORT", description: "HTTP port of /metrics, /healthz, /readyz (default: $METRICS_PORT, else 9090)" },
    host: { type: "string", value: "ADDR", description: "address to listen on (default: $HOST, else 0.0.0.0)" },
    "tls-cert": { type: "string", value: "FILE", description: "serving certificate, PEM (default: $TLS_CERT_FILE)" },
    "tls-key": { type: "string", value: "FILE", description: "serving key, PEM (default: $TLS_KEY_FILE)" },
    "self-signed-ca-out": { type: "string", value: "FILE", description: "local runs: make a throw-away CA and write its certificate here" },
    kube: { type: "boolean", default: false, description: "watch the Kubernetes API (namespaces, pull secrets, image caches); on by itself in a cluster" },
    "tls-secret": { type: "string", value: "NAME", description: "keep the CA and serving certificate in this Secret (default: $TLS_SECRET_NAME)" },
    service: { type: "string", value: "NAME", description: "the webhook's Service, for the certificate's names (default: $SERVICE_NAME, else apparate)" },
    "webhook-config": { type: "string", value: "NAME", description: "MutatingWebhookConfiguration whose caBundle is kept current (default: $WEBHOOK_CONFIG_NAME, else apparate)" },
  },
  env: {
    [CONFIG_ENV]: "configuration file when --config is not given",
    PORT: "see --port", METRICS_PORT: "see --metrics-port", HOST: "see --host",
    TLS_CERT_FILE: "see --tls-cert", TLS_KEY_FILE: "see --tls-key", TLS_SECRET_NAME: "see --tls-secret",
    TLS_SECRET_MODE: "managed (default: this process issues and rotates) or external (read only)",
    SERVICE_NAME: "see --service", WEBHOOK_CONFIG_NAME: "see --webhook-config",
    POD_NAMESPACE: "namespace of the TLS Secret (default: releaseNamespace of the configuration)",
    POD_NAME: "this replica's name, for Events",
    KUBERNETES_SERVICE_HOST: "set inside a cluster: turns on --kube",
    "HTTPS_PROXY, NO_PROXY": "proxy for registry lookups",
    ...LOG_ENV,
  },
};

const nodeAgentSpec: CommandSpec = {
  name: "node-agent",
  summary: "Configure containerd and the lazy-loading snapshotter on this node, label it while healthy (the DaemonSet).",
  usage: "[options]",
  options: {
    config: { type: "string", value: "FILE", description: "node agent configuration (YAML)" },
    uninstall: { type: "boolean", default: false, description: "give back what was found on the node: containerd config, hosts.toml, service, label" },
    check: { type: "boolean", default: false, description: "exit 0 when the snapshotter answers, 1 otherwise" },
    "then-wait": { type: "boolean", default: false, description: "after --uninstall, stay up (a pre-delete DaemonSet's pod)" },
  },
  env: { NODE_NAME: "this node's name (label, events)", APPARATE_HOST_ROOT: "where the host's / is mounted (default: /)", ...LOG_ENV },
};

const cleanupSpec: CommandSpec = {
  name: "cleanup",
  summary: "Uninstall hooks: remove the webhook configuration, move the node agent off the nodes, wait for every Ready node to be restored.",
  usage: "[options]",
  options: {
    "webhook-config": { type: "string", value: "NAME", description: "MutatingWebhookConfiguration to delete first" },
    "stop-daemonset": { type: "string", value: "NS/NAME", description: "the node agent DaemonSet to move off every node, waiting for its pods to go" },
    "wait-daemonset": { type: "string", value: "NS/NAME", description: "the node-cleanup DaemonSet to wait for (NotReady nodes are skipped and named)" },
    "timeout-seconds": { type: "string", value: "N", default: "240", description: "give up on each wait after this long" },
  },
};

const selftestSpec: CommandSpec = {
  name: "selftest",
  summary: "helm test: readiness, then one review over HTTPS trusting only the webhook configuration's caBundle.",
  usage: "[options]",
  options: {
    url: { type: "string", value: "URL", description: "the webhook's /mutate URL" },
    "ready-url": { type: "string", value: "URL", description: "the webhook's /readyz URL" },
    "webhook-config": { type: "string", value: "NAME", description: "MutatingWebhookConfiguration holding the caBundle" },
  },
};

export const COMMANDS: readonly Command[] = [
  { spec: serveSpec, run: async (argv) => (await import("../serve.js")).serve([...argv]) },
  { spec: explainSpec, run: explain },
  { spec: checkImageSpec, run: checkImage },
  { spec: reportSpec, run: report },
  { spec: convertSpec, run: convertCommand },
  { spec: converterSpec, run: async (argv) => (await import("../converter/command.js")).converterMain(argv) },
  { spec: nodeAgentSpec, run: async (argv) => (await import("../nodeagent/main.js")).nodeAgentMain([...argv]) },
  { spec: recordPrefetchSpec, run: async (argv, out) => (await import("../nodeagent/record-prefetch.js")).recordPrefetchCommand(argv, out) },
  { spec: cleanupSpec, internal: true, run: async (argv) => (await import("../ops.js")).cleanup([...argv]) },
  { spec: selftestSpec, internal: true, run: async (argv) => (await import("../ops.js")).selftest([...argv]) },
];

export function findCommand(name: string): Command | undefined {
  return COMMANDS.find((c) => c.spec.name === name);
}
