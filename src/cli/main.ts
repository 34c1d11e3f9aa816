// The shell around the subcommands of src/cli/commands.ts: help, --version, exit codes (0 done, 1 failed, 2 usage, or a command's own) and
// one-line errors, with the stack only under --debug.
import { readFileSync } from "node:fs";
import { ApparateError } from "../errors.js";
import { CommandFailure, helpText, isParseArgsError, UsageError, wantsHelp } from "./command.js";
import { COMMANDS, findCommand } from "./commands.js";

function version(): string {
  try {
    // dist/cli/main.js and src/cli/main.ts both sit two levels below package.json.
    return (JSON.parse(readFileSync(new URL("../../package.json", import.meta.url), "utf8")) as { version: string }).version;
  } catch {
    return "unknown";
  }
}

function usage(): string {
  const row = (c: (typeof COMMANDS)[number]) => `  ${c.spec.name.padEnd(14)}${c.spec.summary}`;
  return [
    "usage: apparate <command> [options]", "",
    "Pods start faster: lazily loaded -apparate images, image caches and registry mirrors.", "",
    "commands:", ...COMMANDS.filter((c) => !c.internal).map(row), "",
    "run by the chart:", ...COMMANDS.filter((c) => c.internal).map(row), "",
    "global options:",
    "  -h, --help    help (\"apparate <command> --help\" for a command's options and environment)",
    "  --version     print the version",
    "  --debug       print the stack trace of an unexpected error", "",
  ].join("\n");
}

export async function main(argv: readonly string[], out: NodeJS.WritableStream = process.stdout, err: NodeJS.WritableStream = process.stderr): Promise<number> {
  const sentinel = argv.indexOf("--");
  const debug = argv.slice(0, sentinel === -1 ? undefined : sentinel).includes("--debug");
  const args = debug ? argv.filter((a, i) => a !== "--debug" || (sentinel !== -1 && i > sentinel)) : [...argv];
  const [name, ...rest] = args;
  if (name === undefined) { err.write(usage()); return 2; }
  if (name === "--help" || name === "-h") { out.write(usage()); return 0; }
  if (name === "--version" || name === "-V" || name === "version") { out.write(`apparate ${version()}\n`); return 0; }
  if (name === "help") {
    const c = rest[0] ? findCommand(rest[0]) : undefined;
    if (rest[0] && !c) { err.write(`apparate: unknown command ${JSON.stringify(rest[0])}\n`); return 2; }
    out.write(c ? helpText(c.spec) : usage());
    return 0;
  }
  const command = findCommand(name);
  if (!command) {
    const near = COMMANDS.map((c) => c.spec.name).filter((n) => n.startsWith(name.slice(0, 3)));
    err.write(`apparate: unknown command ${JSON.stringify(name)}${near.length ? ` (did you mean ${near.join(" or ")}?)` : ""}\nRun 'apparate --help' for the list of commands.\n`);
    return 2;
  }
  if (wantsHelp(rest)) { out.write(helpText(command.spec)); return 0; }
  try {
    return await command.run(rest, out);
  } catch (e) {
    if (e instanceof UsageError || isParseArgsError(e)) {
      const msg = e instanceof UsageError ? e.message : e.message.split(/\.\s/)[0]!;
      err.write(`apparate ${name}: ${msg}\nRun 'apparate ${name} --help' for usage.\n`);
      return 2;
    }
    const msg = e instanceof Error ? e.message : String(e);
    if (e instanceof CommandFailure) { err.write(`apparate ${name}: ${msg}\n`); return e.exitCode; }
    err.write(`apparate ${name}: ${e instanceof ApparateError ? msg : `unexpected error: ${msg}`}\n`);
    if (debug && e instanceof Error && e.stack) err.write(`${e.stack}\n`);
    else if (!(e instanceof ApparateError)) err.write("Run again with --debug for the stack trace.\n");
    return 1;
  }
}

