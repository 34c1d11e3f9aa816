// `apparate converter --help`: kept apart from the command so that the CLI loads it cheaply.
import type { CommandSpec } from "../cli/command.js";
import { CONFIG_ENV, CONFIG_OPTION } from "../cli/config.js";

export const converterSpec: CommandSpec = {
  name: "converter",
  summary: "Convert every pushed image the acceleration rules select to its -apparate variant: registry events, rescans, a work queue.",
  usage: "[options]",
  details: `Registries send events to POST /events/<source> (converter.sources in the configuration);
GET /conversions lists recent work and failures; /metrics, /healthz, /readyz as the webhook.`,
  options: {
    config: CONFIG_OPTION,
    port: { type: "string", value: "PORT", description: "HTTP port (default: $PORT, else 8080)" },
    host: { type: "string", value: "ADDR", description: "address to listen on (default: $HOST, else 0.0.0.0)" },
    "no-scan": { type: "boolean", default: false, description: "do not rescan the registries (events only)" },
  },
  env: {
    [CONFIG_ENV]: "configuration file when --config is not given",
    PORT: "see --port", HOST: "see --host",
    POD_NAME: "this replica's name: failure Events are recorded on it",
    POD_NAMESPACE: "this replica's namespace",
    KUBERNETES_SERVICE_HOST: "set inside a cluster: failure Events are emitted",
    LOG_LEVEL: "log level: fatal, error, warn, info (default), debug, trace, silent",
  },
};

