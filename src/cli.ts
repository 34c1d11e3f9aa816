#!/usr/bin/env node
// apparate: one binary, four subcommands (serve, explain, check-image, node-agent).
import { readFileSync } from "node:fs";
import { parseArgs } from "node:util";
import { parseAllDocuments } from "yaml";
import { defaultConfig, loadConfigFile, type Config } from "./config/config.js";
import { ApparateError } from "./errors.js";
import { familiarString, formatReference, parseReference, withTag, DEFAULT_TAG } from "./image/reference.js";
import { matchRule } from "./mutate/rules.js";
import { analysePod, plan, type Facts, type PlanInput } from "./mutate/plan.js";
import { toPatch } from "./mutate/patch.js";
import type { PodLike } from "./mutate/pod.js";
import type { LookupResult } from "./registry/result.js";
import { createRegistryStack } from "./registry/stack.js";
import { gatherFacts } from "./admission/handler.js";
import { createLogger } from "./observability/logger.js";
import { Metrics } from "./observability/metrics.js";

const USAGE = `usage: apparate <command> [options]

commands:
  serve                       run the admission webhook (HTTPS)
  explain -f POD.yaml         show what the webhook would do to a pod, and the patch
  check-image REF             does an image match the acceleration rules (seed 000 "validate rule")
  node-agent                  configure containerd and the snapshotter on this node
  cleanup                     uninstall hook: remove the webhook configuration, wait for nodes
  selftest                    helm test: readiness and one review over HTTPS

common options:
  --config FILE               configuration file (default: $APPARATE_CONFIG or built-in defaults)
`;

function loadConfig(path: string | undefined): Config {
  const p = path ?? process.env.APPARATE_CONFIG;
  return p ? loadConfigFile(p) : defaultConfig();
}

async function explain(argv: string[]): Promise<number> {
  const { values } = parseArgs({
    args: argv, allowPositionals: false,
    options: {
      file: { type: "string", short: "f" }, config: { type: "string" }, namespace: { type: "string", short: "n" },
      lookups: { type: "string", default: "registry" }, json: { type: "boolean", default: false },
    },
  });
  if (!values.file) { process.stderr.write("explain: -f POD.yaml is required\n"); return 2; }
  const config = loadConfig(values.config);
  const text = values.file === "-" ? readFileSync(0, "utf8") : readFileSync(values.file, "utf8");
  const docs = parseAllDocuments(text).map((d) => d.toJS() as PodLike).filter((d) => d && d.kind === "Pod");
  if (docs.length === 0) { process.stderr.write(`explain: ${values.file} holds no Pod\n`); return 2; }
  const mode = values.lookups;
  if (!["registry", "exists", "absent", "unknown"].includes(mode!)) { process.stderr.write("explain: --lookups must be registry, exists, absent or unknown\n"); return 2; }
  const metrics = new Metrics();
  const stack = mode === "registry" ? createRegistryStack(config, metrics) : undefined;
  try {
    for (const pod of docs) {
      const input: PlanInput = { pod, namespace: values.namespace ?? pod.metadata?.namespace ?? "default", operation: "CREATE" };
      const analysis = analysePod(input, config);
      let facts: Facts;
      if (stack) {
        // The server's own fact gathering: one deadline for the review, the same credentials.
        facts = await gatherFacts(input, analysis, { config, lookup: stack.resolver, metrics, logger: createLogger({ level: "silent" }), ...(stack.keyring ? { configuredKeyring: stack.keyring } : {}) });
      } else {
        const answer: LookupResult = mode === "exists" ? { kind: "exists", mediaType: "application/vnd.oci.image.index.v1+json" } : mode === "absent" ? { kind: "absent", reason: "does not exist (--lookups absent)" } : { kind: "unknown", reason: "not checked (--lookups unknown)" };
        facts = { lookups: new Map(analysis.candidates.map((c) => [c.key, answer])) };
      }
      const p = plan(input, facts, config, analysis);
      const patch = toPatch(pod, p);
      if (values.json) { process.stdout.write(JSON.stringify({ plan: p, patch }, null, 2) + "\n"); continue; }
      const name = pod.metadata?.name ?? pod.metadata?.generateName ?? "(unnamed)";
      process.stdout.write(`pod ${input.namespace}/${name}\n`);
      if (p.skipped) { process.stdout.write(`  skipped: ${p.skipped}\n`); continue; }
      for (const d of p.containers) {
        process.stdout.write(`  ${d.kind}/${d.name}: ${d.outcome}\n    ${d.original}${d.image !== d.original ? ` -> ${d.image}` : ""}\n    ${d.reason}\n`);
      }
      if (p.placement) process.stdout.write(`  placement: ${p.placement.mode} ${p.placement.key}=${p.placement.value}\n`);
      if (p.imageCache) process.stdout.write(`  image cache: ${p.imageCache.result}: ${p.imageCache.reason}\n`);
      for (const w of p.warnings) process.stdout.write(`  warning: ${w}\n`);
      process.stdout.write(`  patch:\n${JSON.stringify(patch, null, 2).replace(/^/gm, "    ")}\n`);
    }
  } finally {
    await stack?.close();
  }
  return 0;
}

function checkImage(argv: string[]): number {
  const { values, positionals } = parseArgs({ args: argv, allowPositionals: true, options: { config: { type: "string" } } });
  const image = positionals[0];
  if (!image) { process.stderr.write("check-image: an image reference is required\n"); return 2; }
  const config = loadConfig(values.config);
  let ref;
  try { ref = parseReference(image); } catch (err) {
    process.stdout.write(`${image}: not accelerated: ${(err as Error).message}\n`);
    return 1;
  }
  const m = matchRule(ref, config);
  process.stdout.write(`image:       ${image}\nnormalised:  ${formatReference(ref)}\nfamiliar:    ${familiarString(ref)}\n`);
  if (!m.matched) { process.stdout.write(`accelerated: no (${m.reason})\n`); return 1; }
  if (ref.digest) { process.stdout.write("accelerated: no (digest-pinned images are never tag-swapped)\n"); return 1; }
  const tag = (ref.tag ?? DEFAULT_TAG) + config.acceleration.tagSuffix;
  process.stdout.write(`rule:        ${m.rule}\naccelerated: yes, when ${formatReference(withTag(ref, tag))} exists as an OCI image\n`);
  return 0;
}

async function main(argv: string[]): Promise<number> {
  const [cmd, ...rest] = argv;
  switch (cmd) {
    case "serve": { const { serve } = await import("./serve.js"); return serve(rest); }
    case "explain": return explain(rest);
    case "check-image": return checkImage(rest);
    case "cleanup": { const { cleanup } = await import("./ops.js"); return cleanup(rest); }
    case "selftest": { const { selftest } = await import("./ops.js"); return selftest(rest); }
    case "node-agent": { const { nodeAgentMain } = await import("./nodeagent/main.js"); return nodeAgentMain(rest); }
    case undefined: case "-h": case "--help": case "help": process.stdout.write(USAGE); return cmd ? 0 : 2;
    default: process.stderr.write(`apparate: unknown command ${JSON.stringify(cmd)}\n${USAGE}`); return 2;
  }
}

main(process.argv.slice(2)).then(
  (code) => { process.exitCode = code; },
  (err: unknown) => {
    const log = createLogger({ name: "apparate" });
    if (err instanceof ApparateError) {
      process.stderr.write(`apparate: ${err.message}\n`);
      process.exitCode = 1;
    } else {
      log.fatal({ err }, "apparate failed");
      process.exitCode = 1;
    }
  },
);
