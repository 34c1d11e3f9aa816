// `apparate convert SRC [DST]`: the conversion engine for people and scripts. A
// progress bar per layer on a terminal (cli-progress), JSON log lines otherwise, a
// summary on stdout (--json for one document), exit codes a script can branch on.
import { existsSync, readFileSync } from "node:fs";
import { homedir } from "node:os";
import { join } from "node:path";
import { pino } from "pino";
import { CommandFailure, parseCommandArgs, UsageError, type CommandSpec } from "../cli/command.js";
import { CONFIG_ENV, CONFIG_OPTION, loadCliConfig } from "../cli/config.js";
import { parseReference, ImageReferenceError, type ImageReference } from "../image/reference.js";
import { createLogger } from "../observability/logger.js";
import { DialPolicy } from "../registry/network.js";
import { RegistryClient } from "../registry/client.js";
import { recordLinksFor } from "../registry/referrers.js";
import { Keyring, parseDockerConfig, type Credential, type DockerConfigJson } from "../registry/credentials.js";
import { DEFAULT_CHUNK_SIZE } from "./estargz.js";
import { convertImage, isPermanentConversionError, targetFor, type ConvertImageResult, type ConvertObserver, type LayerEvent } from "./image.js";

/** Exit codes: converted (or dry run) 0, failed 1, usage 2, already up to date 10, cannot be converted 11. */
export const EXIT_UP_TO_DATE = 10;
/** The source can never be converted as it is (a refused layer, no such manifest…): retrying cannot help. */
export const EXIT_UNCONVERTIBLE = 11;

export const convertSpec: CommandSpec = {
  name: "convert",
  summary: "Convert an image to its lazily loaded eStargz -apparate variant (OCI) and push it beside the source.",
  usage: "SRC [DST] [options]",
  details: `Reads SRC's manifest or index (OCI or Docker schema 2), converts every platform's layers to
eStargz while streaming them from the registry back into it, and pushes an OCI image (an OCI
index when SRC has several platforms). DST defaults to SRC's tag plus acceleration.tagSuffix in
the same repository. The tag is written last: a failure never leaves it on a half-made image.
DST records SRC's digest (annotation io.apparate.source-digest); when it already records the
current one, nothing is done.

Exit status: 0 converted (or --dry-run), ${EXIT_UP_TO_DATE} already up to date, ${EXIT_UNCONVERTIBLE} the source
cannot be converted as it is (retrying cannot help), 1 failed (worth retrying), 2 usage error.`,
  positionals: {
    SRC: "the image to convert, with a tag (registry.example/app:1.2)",
    DST: "where to push the variant (default: SRC's tag + the tag suffix)",
  },
  options: {
    config: CONFIG_OPTION,
    "tag-suffix": { type: "string", value: "SUFFIX", description: "suffix of the default DST tag (default: acceleration.tagSuffix, -apparate)" },
    creds: { type: "string", value: "USER:PASSWORD", description: "registry credentials (default: --docker-config / registry.dockerConfigFile, else anonymous)" },
    "docker-config": { type: "string", value: "FILE", description: "docker config JSON with credentials (default: $DOCKER_CONFIG/config.json or ~/.docker/config.json when present)" },
    "plain-http": { type: "boolean", default: false, description: "talk plain HTTP to SRC's registry (also: registry.plainHttp)" },
    "chunk-size": { type: "string", value: "BYTES", default: String(DEFAULT_CHUNK_SIZE), description: "eStargz chunk size (a number, or with K/M suffix)" },
    "compression-level": { type: "string", value: "N", default: "9", description: "gzip level 1-9" },
    concurrency: { type: "string", value: "N", description: "layers converted at once (default: CPUs + 1, at most 4)" },
    prefetch: { type: "string", value: "FILE", description: "paths the workload reads first, one per line (# comments): put first in each layer, behind .prefetch.landmark, so the snapshotter fetches them at mount" },
    "dry-run": { type: "boolean", default: false, description: "say what would be converted; push nothing" },
    json: { type: "boolean", default: false, description: "print the result as one JSON document" },
  },
  env: {
    [CONFIG_ENV]: "configuration file when --config is not given",
    DOCKER_CONFIG: "directory of config.json (docker's convention)",
    "HTTPS_PROXY, NO_PROXY": "proxy for registry requests",
    LOG_LEVEL: "level of the JSON log lines written when stderr is not a terminal (default: info)",
  },
};

function parseSize(v: string, flag: string): number {
  const m = /^(\d+)([KkMm]i?[Bb]?)?$/.exec(v.trim());
  if (!m) throw new UsageError("convert", `${flag} must be a number of bytes (e.g. 4194304 or 4M), not ${JSON.stringify(v)}`);
  const unit = m[2]?.[0]?.toUpperCase();
  const n = Number(m[1]) * (unit === "K" ? 1024 : unit === "M" ? 1 << 20 : 1);
  if (n < 4096 || n > 1 << 30) throw new UsageError("convert", `${flag} must be between 4K and 1024M, not ${JSON.stringify(v)}`);
  return n;
}

/**
 * A prefetch list: one path per line, absolute or relative to the image root, blank
 * lines and # comments ignored (the format `apparate convert --prefetch` documents).
 * A line that is a JSON object is read as one record of `ctr-remote images optimize
 * --record-out` ({"path": …, "manifestDigest": …, "layerIndex": …}; stargz-snapshotter
 * recorder/recorder.go Entry): its path is taken, in every layer that has it.
 */
export function parsePrefetchList(text: string): string[] {
  const out: string[] = [];
  for (const raw of text.split("\n")) {
    const line = raw.replace(/\r$/, "");
    const t = line.trim();
    if (t === "" || t.startsWith("#")) continue;
    if (t.startsWith("{")) {
      let rec: unknown;
      try { rec = JSON.parse(t); } catch { throw new UsageError("convert", `--prefetch: a line starting with "{" is not JSON: ${t.slice(0, 200)}`); }
      const path = (rec as { path?: unknown }).path;
      if (typeof path !== "string") throw new UsageError("convert", `--prefetch: a record without a "path" string: ${t.slice(0, 200)}`);
      out.push(path);
      continue;
    }
    out.push(line);
  }
  return out;
}

function readPrefetchList(file: string): string[] {
  let text: string;
  try { text = readFileSync(file, "utf8"); } catch (err) {
    throw new UsageError("convert", `--prefetch ${file}: ${(err as Error).message}`);
  }
  const list = parsePrefetchList(text);
  if (list.length === 0) throw new UsageError("convert", `--prefetch ${file}: the list names no path`);
  return list;
}

function parseIntIn(v: string, flag: string, min: number, max: number): number {
  const n = Number(v);
  if (!Number.isInteger(n) || n < min || n > max) throw new UsageError("convert", `${flag} must be an integer from ${min} to ${max}, not ${JSON.stringify(v)}`);
  return n;
}

function parseRef(v: string, what: string): ImageReference {
  try { return parseReference(v); } catch (err) {
    if (err instanceof ImageReferenceError) throw new UsageError("convert", `${what}: ${err.message}`);
    throw err;
  }
}

const human = (n: number) => (n >= 1 << 30 ? `${(n / (1 << 30)).toFixed(2)} GiB` : n >= 1 << 20 ? `${(n / (1 << 20)).toFixed(1)} MiB` : n >= 1024 ? `${(n / 1024).toFixed(1)} KiB` : `${n} B`);

/** Progress on a terminal: one cli-progress bar per layer, bytes read / written and rate. */
async function terminalObserver(stream: NodeJS.WriteStream): Promise<{ observer: ConvertObserver; stop(): void }> {
  const { MultiBar, Presets } = await import("cli-progress");
  const multi = new MultiBar({
    stream, hideCursor: true, clearOnComplete: false, etaBuffer: 20, fps: 5,
    format: "{label} |{bar}| {percentage}% {readH}/{totalH} read, {writtenH} written, {rateH}/s",
  }, Presets.shades_classic);
  const bars = new Map<string, { bar: ReturnType<InstanceType<typeof MultiBar>["create"]>; start: number }>();
  const payload = (ev: LayerEvent, read: number, written: number, start: number) => ({
    label: ev.label.padEnd(22), readH: human(read), totalH: human(ev.size), writtenH: human(written),
    rateH: human(read / Math.max(0.001, (Date.now() - start) / 1000)),
  });
  return {
    observer: {
      layerStart(ev) { const start = Date.now(); bars.set(ev.label, { bar: multi.create(ev.size, 0, payload(ev, 0, 0, start)), start }); },
      layerProgress(ev, read, written) { const b = bars.get(ev.label); b?.bar.update(read, payload(ev, read, written, b.start)); },
      layerDone(ev, o) { const b = bars.get(ev.label); b?.bar.update(ev.size, { ...payload(ev, ev.size, o.size, b.start), ...(o.copied ? { writtenH: "copied (already eStargz)" } : {}) }); },
    },
    stop: () => multi.stop(),
  };
}

/** Off a terminal: a JSON log line per layer started and finished. */
function logObserver(): ConvertObserver {
  const log = createLogger({ destination: pino.destination({ fd: 2, sync: true }) });
  const started = new Map<string, number>();
  return {
    layerStart(ev) { started.set(ev.label, Date.now()); log.info({ layer: ev.label, source: ev.digest, bytes: ev.size }, "converting layer"); },
    layerNotEstargz(ev, reason) { log.warn({ layer: ev.label, source: ev.digest, reason }, "layer annotated as eStargz is not one: converting it"); },
    layerDone(ev, o) {
      const ms = Date.now() - (started.get(ev.label) ?? Date.now());
      log.info({ layer: ev.label, source: ev.digest, digest: o.digest, bytesIn: ev.size, bytesOut: o.size, copied: o.copied, ms }, o.copied ? "layer already eStargz, copied" : "layer converted");
    },
  };
}

function summary(r: ConvertImageResult): string {
  if (r.result === "up-to-date") return `${r.target} is up to date with ${r.source} (${r.sourceDigest})\n`;
  const lines = r.result === "dry-run"
    ? [`would convert ${r.source} (${r.sourceDigest}) to ${r.target}:`]
    : [`converted ${r.source} (${r.sourceDigest}) to ${r.target} (${r.digest})`];
  for (const l of r.layers) {
    lines.push(`  ${l.platform.padEnd(14)} ${l.source}  ${human(l.sourceSize)}${l.copied ? "  already eStargz: copied" : l.size !== undefined ? ` -> ${human(l.size)}` : ""}`);
  }
  if (r.result === "converted") lines.push(`  ${human(r.bytesIn)} read, ${human(r.bytesOut)} written${r.subject === false ? "; the registry does not record subject (referrers)" : ""}`);
  return lines.join("\n") + "\n";
}

export async function convertCommand(argv: readonly string[], out: NodeJS.WritableStream): Promise<number> {
  const { values, positionals } = parseCommandArgs(convertSpec, argv);
  const [srcArg, dstArg] = positionals;
  if (!srcArg) throw new UsageError("convert", "SRC is required");
  const config = loadCliConfig(values.config as string | undefined);
  const suffix = (values["tag-suffix"] as string | undefined) ?? config.acceleration.tagSuffix;
  const source = parseRef(srcArg, "SRC");
  const target = dstArg ? parseRef(dstArg, "DST") : targetFor(source, suffix);
  const chunkSize = parseSize(values["chunk-size"] as string, "--chunk-size");
  const level = parseIntIn(values["compression-level"] as string, "--compression-level", 1, 9);
  const prefetch = values.prefetch !== undefined ? readPrefetchList(values.prefetch as string) : undefined;
  const concurrency = values.concurrency !== undefined ? parseIntIn(values.concurrency as string, "--concurrency", 1, 64) : undefined;

  let creds: Credential | undefined;
  if (values.creds !== undefined) {
    const c = values.creds as string;
    const i = c.indexOf(":");
    if (i <= 0) throw new UsageError("convert", "--creds must be USER:PASSWORD");
    creds = { username: c.slice(0, i), password: c.slice(i + 1), source: "--creds" };
  }
  const keyring = new Keyring();
  const dockerConfig = (values["docker-config"] as string | undefined)
    ?? [join(process.env.DOCKER_CONFIG ?? join(homedir(), ".docker"), "config.json")].find((p) => existsSync(p));
  for (const file of [config.registry.dockerConfigFile, dockerConfig]) {
    if (!file) continue;
    const text = readFileSync(file, "utf8");
    parseDockerConfig(text, file); // validates, naming the file
    keyring.add(JSON.parse(text) as DockerConfigJson, file);
  }
  const credentials = (ref: ImageReference) => creds ?? keyring.lookup(ref.domain, ref.path)[0];

  const plainHttp = [...config.registry.plainHttp, ...(values["plain-http"] ? [source.domain] : [])];
  const client = new RegistryClient({
    requestTimeoutMs: Math.max(config.registry.requestTimeoutMs, 60_000), plainHttp,
    ...(config.registry.caFile ? { caFile: config.registry.caFile } : {}), userAgent: "apparate-convert",
    // The operator names the images here (not a pod): any address, the configured token realms.
    dialPolicy: new DialPolicy({ anyAddress: true }), tokenRealms: config.registry.tokenRealms,
  });
  const controller = new AbortController();
  const onSignal = () => controller.abort(new Error("interrupted"));
  process.once("SIGINT", onSignal);
  process.once("SIGTERM", onSignal);
  const tty = (process.stderr as NodeJS.WriteStream).isTTY && !values.json;
  const progress = tty ? await terminalObserver(process.stderr as NodeJS.WriteStream) : undefined;
  try {
    const result = await convertImage({
      client, source, target, tagSuffix: suffix, credentials, chunkSize, level,
      ...(concurrency ? { concurrency } : {}), ...(prefetch ? { prefetch } : {}), dryRun: Boolean(values["dry-run"]), signal: controller.signal,
      observer: progress?.observer ?? logObserver(),
    });
    progress?.stop();
    // X -> Y recorded as a referrer of X, so that digest-pinned pods can follow it (issue 27);
    // only beside X: a pod pinned to X names X's repository.
    const links = result.digest && result.result !== "dry-run" && target.path === source.path ? await recordLinksFor(client, target, credentials(target), result.digest, controller.signal) : [];
    out.write(values.json ? JSON.stringify({ ...result, links }, null, 2) + "\n" : summary(result) + links.map((l) => `  link ${l.source} -> ${l.target} (${l.via})\n`).join(""));
    return result.result === "up-to-date" ? EXIT_UP_TO_DATE : 0;
  } catch (err) {
    if (!isPermanentConversionError(err)) throw err;
    // A distinct status: a Job's failure policy fails at once on it, and the converter does not retry.
    throw new CommandFailure(`${err.message} (cannot be converted: retrying cannot help)`, EXIT_UNCONVERTIBLE, { cause: err });
  } finally {
    progress?.stop();
    process.off("SIGINT", onSignal);
    process.off("SIGTERM", onSignal);
    await client.destroy();
  }
}
