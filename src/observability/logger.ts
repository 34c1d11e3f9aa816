// pino JSON logs. Credentials never reach a log line: known secret-bearing paths
// are redacted, and the registry code never passes credentials to the logger.
import { pino, type Logger, type DestinationStream } from "pino";

export type { Logger };

// Exact paths only: pino's wildcard paths cost ~10 µs per line, more than the rest of an
// admission, and apparate never logs a credential-bearing object at any depth (the
// tests capture every log line and search it for the test passwords).
export const REDACT_PATHS = [
  "password", "auth", "authorization", "token", "dockerPassword", "credential", "credentials", "creds",
  "headers.authorization", "req.headers.authorization", "err.headers.authorization", "err.request.headers.authorization",
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
    // pino's default: synchronous writes to stdout (measured: its asynchronous mode
    // cost more CPU per line under load, and can lose the last lines of a crash).
    opts.destination,
  );
}
