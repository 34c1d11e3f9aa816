// The configuration file every CLI subcommand takes: --config, else $APPARATE_CONFIG,
// else the built-in defaults.
import { defaultConfig, loadConfigFile, type Config } from "../config/config.js";
import type { OptionSpec } from "./command.js";

export const CONFIG_ENV = "APPARATE_CONFIG";

export const CONFIG_OPTION: OptionSpec = {
  type: "string", value: "FILE", description: `configuration file (default: $${CONFIG_ENV}, else built-in defaults)`,
};

export function loadCliConfig(path: string | undefined): Config {
  const p = path ?? process.env[CONFIG_ENV];
  return p ? loadConfigFile(p) : defaultConfig();
}
