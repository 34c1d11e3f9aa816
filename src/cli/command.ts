// What a subcommand is, and the parsing and help every subcommand shares. Options
// are node:util parseArgs options with a description, so one definition drives the
// parser and the help (no second list to drift from the first).
import { parseArgs, type ParseArgsConfig } from "node:util";
import { ApparateError } from "../errors.js";

export interface OptionSpec {
  type: "string" | "boolean";
  short?: string;
  multiple?: boolean;
  default?: string | boolean;
  /** Shown in help; the value's name after the flag, e.g. "FILE". */
  value?: string;
  description: string;
}

export interface CommandSpec {
  name: string;
  summary: string;
  /** The usage line after "apparate <name>", e.g. "-f POD.yaml [options]". */
  usage: string;
  /** Longer text printed under the usage line. */
  details?: string;
  options: Readonly<Record<string, OptionSpec>>;
  /** Environment variables the command reads, with what they mean. */
  env?: Readonly<Record<string, string>>;
  /** Positional arguments allowed, with their meaning; none when absent. */
  positionals?: Readonly<Record<string, string>>;
}

/** A mistake in how the command was called: exit code 2, the help hint. */
export class UsageError extends ApparateError {
  constructor(readonly command: string, message: string) {
    super("usage", message, command);
  }
}

/** A failure with its own exit status (for example convert's 11, "cannot be converted"): printed like any other. */
export class CommandFailure extends ApparateError {
  constructor(message: string, readonly exitCode: number, options?: { cause?: unknown }) {
    super("command-failure", message, undefined, options);
  }
}

export interface ParsedArgs {
  values: Record<string, string | boolean | (string | boolean)[] | undefined>;
  positionals: string[];
}

/** Parses argv strictly against the command's options; a bad flag is a UsageError naming it. */
export function parseCommandArgs(spec: CommandSpec, argv: readonly string[]): ParsedArgs {
  const options: NonNullable<ParseArgsConfig["options"]> = {};
  for (const [name, o] of Object.entries(spec.options)) {
    options[name] = { type: o.type, ...(o.short ? { short: o.short } : {}), ...(o.multiple ? { multiple: true } : {}), ...(o.default !== undefined ? { default: o.default } : {}) } as NonNullable<ParseArgsConfig["options"]>[string];
  }
  try {
    const r = parseArgs({ args: [...argv], options, allowPositionals: spec.positionals !== undefined, strict: true });
    const max = Object.keys(spec.positionals ?? {}).length;
    if (r.positionals.length > max) throw new UsageError(spec.name, `unexpected argument ${JSON.stringify(r.positionals[max])}`);
    return { values: { ...r.values }, positionals: r.positionals };
  } catch (err) {
    if (isParseArgsError(err)) throw new UsageError(spec.name, parseArgsMessage(err));
    throw err;
  }
}

export function isParseArgsError(err: unknown): err is Error & { code: string } {
  return err instanceof TypeError && typeof (err as { code?: unknown }).code === "string" && (err as unknown as { code: string }).code.startsWith("ERR_PARSE_ARGS_");
}

// Node's messages carry advice about "--" that reads oddly to a user; keep the first sentence.
function parseArgsMessage(err: Error): string {
  return err.message.split(/\.\s/)[0]!.replace(/\.$/, "").replace(/^Unknown option/, "unknown option").replace(/^Option/, "option");
}

export function wantsHelp(argv: readonly string[]): boolean {
  // Only before a "--": after it, "-h" is an argument.
  const end = argv.indexOf("--");
  return (end === -1 ? argv : argv.slice(0, end)).some((a) => a === "-h" || a === "--help");
}

/** The help text of one command: usage, details, positionals, options, environment. */
export function helpText(spec: CommandSpec): string {
  const lines = [`usage: apparate ${spec.name} ${spec.usage}`.trimEnd(), "", spec.summary];
  if (spec.details) lines.push("", spec.details.trimEnd());
  const table = (title: string, rows: [string, string][]) => {
    if (rows.length === 0) return;
    const width = Math.min(34, Math.max(...rows.map(([l]) => l.length)) + 2);
    lines.push("", `${title}:`);
    for (const [l, d] of rows) lines.push(l.length + 2 > width ? `  ${l}\n  ${" ".repeat(width)}${d}` : `  ${l.padEnd(width)}${d}`);
  };
  table("arguments", Object.entries(spec.positionals ?? {}));
  const opts = Object.entries(spec.options).map(([name, o]): [string, string] => {
    const flag = `${o.short ? `-${o.short}, ` : ""}--${name}${o.type === "string" ? ` ${o.value ?? "VALUE"}` : ""}`;
    const def = o.default !== undefined && o.default !== false ? ` (default: ${String(o.default)})` : "";
    return [flag, o.description + def + (o.multiple ? " (repeatable)" : "")];
  });
  opts.push(["-h, --help", "show this help"]);
  table("options", opts);
  table("environment", Object.entries(spec.env ?? {}));
  return lines.join("\n") + "\n";
}
