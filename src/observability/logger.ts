// pino JSON logs. Credentials never reach a log line: known secret-bearing paths
// are redacted, and the registry code never passes credentials to the logger.
import { pino, type Logger, type DestinationStream } from "pino";

export type { Logger };

export const REDACT_PATHS = [
  "password", "*.password", "*.*.password", "auth", "*.auth", "authorization", "*.authorization",
  "headers.authorization", "req.headers.authorization", "token", "*.token", "dockerPassword", "*.dockerPassword",
];

export function createLogger(opts: { level?: string; destination?: DestinationStream; name?: string } = {}): Logger {
  return pino(
    {
      name: opts.name ?? "apparate",
      level: opts.level ?? process.env.LOG_LEVEL ?? "info",
      redact: { paths: REDACT_PATHS, censor: "[redacted]" },
      base: undefined,
      timestamp: pino.stdTimeFunctions.isoTime,
      formatters: { level: (label) => ({ level: label }) },
    },
    opts.destination,
  );
}
