// `apparate explain`: what the webhook would do to the pods of some documents, and
// the patch it would answer. It runs the server's own fact gathering and planning.
import type { Config } from "../config/config.js";
import { gatherFacts } from "../admission/handler.js";
import { BadReviewError, podOf, type AdmissionRequest } from "../admission/review.js";
import { imageCacheSpecOf, type ImageCacheObject } from "../imagecache/object.js";
import { ImageCacheIndex } from "../imagecache/policy.js";
import { analysePod, plan, type Facts, type Plan, type PlanInput } from "../mutate/plan.js";
import { toPatch } from "../mutate/patch.js";
import type { LookupResult } from "../registry/result.js";
import { createRegistryStack } from "../registry/stack.js";
import { createLogger } from "../observability/logger.js";
import { Metrics } from "../observability/metrics.js";
import { parseCommandArgs, UsageError, type CommandSpec } from "./command.js";
import { parseDocuments, readInput, InputError } from "./documents.js";
import { loadCliConfig, CONFIG_OPTION, CONFIG_ENV } from "./config.js";
import { podsOf, WORKLOAD_KINDS, type WorkloadPod } from "./workloads.js";

const LOOKUP_MODES = ["registry", "exists", "absent", "unknown"] as const;
type LookupMode = (typeof LOOKUP_MODES)[number];

export const explainSpec: CommandSpec = {
  name: "explain",
  summary: "Show what the webhook would do to the pods of some Kubernetes documents, and the patch it would answer.",
  usage: "-f FILE [options]",
  details: `FILE holds one or many YAML or JSON documents: ${WORKLOAD_KINDS.join(", ")} (the output of
\`kubectl get pods -o yaml\` works). For a workload, its pod template is explained, as the pods its
controller creates. "-f -" reads standard input.`,
  options: {
    file: { type: "string", short: "f", multiple: true, value: "FILE", description: "documents to explain (\"-\" for stdin)" },
    config: CONFIG_OPTION,
    namespace: { type: "string", short: "n", value: "NS", description: "namespace for documents that name none (default: the document's, else \"default\")" },
    lookups: { type: "string", default: "registry", value: "MODE", description: `registry answers: ${LOOKUP_MODES.join(", ")} (registry asks the real registries)` },
    "image-caches": { type: "string", value: "FILE", description: "ImageCache objects (YAML/JSON, one or many, or a List) to evaluate cache matching offline" },
    json: { type: "boolean", default: false, description: "print one JSON document: {pods: [{source, namespace, plan, patch}], skipped}" },
  },
  env: { [CONFIG_ENV]: "configuration file when --config is not given", LOG_LEVEL: "log level of registry lookups (default: silent here)" },
};

interface Explained { source: string; namespace: string; plan?: Plan; patch?: unknown; error?: string }

export async function explain(argv: readonly string[], out: NodeJS.WritableStream): Promise<number> {
  const { values } = parseCommandArgs(explainSpec, argv);
  const files = (values.file as string[] | undefined) ?? [];
  if (files.length === 0) throw new UsageError("explain", "-f FILE is required (\"-f -\" reads stdin)");
  const mode = values.lookups as string;
  if (!(LOOKUP_MODES as readonly string[]).includes(mode)) throw new UsageError("explain", `--lookups must be one of ${LOOKUP_MODES.join(", ")}, not ${JSON.stringify(mode)}`);
  let config = loadCliConfig(values.config as string | undefined);

  const extraction = { pods: [] as WorkloadPod[], skipped: [] as string[] };
  for (const f of files) {
    const e = podsOf(parseDocuments(readInput(f), f === "-" ? "stdin" : f));
    extraction.pods.push(...e.pods);
    extraction.skipped.push(...e.skipped.map((s) => (files.length > 1 ? `${f}: ${s}` : s)));
  }
  if (extraction.pods.length === 0) throw new InputError("input-no-pod", `${files.join(", ")}: no Pod or workload found${extraction.skipped.length ? ` (${extraction.skipped.join("; ")})` : ""}`, files);

  let imageCaches: ImageCacheIndex | undefined;
  const notes: string[] = [];
  if (values["image-caches"]) {
    imageCaches = loadImageCaches(values["image-caches"] as string);
    if (!config.imageCache.enabled) {
      notes.push("imageCache.enabled is false in the configuration, so the webhook would choose no cache; matching is shown as if it were true");
      config = { ...config, imageCache: { ...config.imageCache, enabled: true } };
    }
  }

  const stack = mode === "registry" ? createRegistryStack(config, new Metrics()) : undefined;
  const results: Explained[] = [];
  try {
    for (const w of extraction.pods) results.push(await explainOne(w, values.namespace as string | undefined, mode as LookupMode, config, stack, imageCaches));
  } finally {
    await stack?.close();
  }

  if (values.json) {
    out.write(JSON.stringify({ pods: results, skipped: extraction.skipped, notes }, null, 2) + "\n");
  } else {
    for (const n of notes) out.write(`note: ${n}\n`);
    for (const s of extraction.skipped) out.write(`skipped ${s}\n`);
    for (const r of results) out.write(render(r));
  }
  return results.some((r) => r.error) ? 1 : 0;
}

async function explainOne(w: WorkloadPod, nsFlag: string | undefined, mode: LookupMode, config: Config, stack: ReturnType<typeof createRegistryStack> | undefined, imageCaches: ImageCacheIndex | undefined): Promise<Explained> {
  const namespace = nsFlag ?? w.namespace ?? "default";
  try {
    // The webhook's own reading of the pod: what it would refuse with a 400, explain reports.
    podOf({ uid: "explain", object: w.pod } as unknown as AdmissionRequest);
  } catch (err) {
    if (err instanceof BadReviewError) return { source: w.source, namespace, error: err.message.replace("AdmissionReview request.object", "pod") };
    throw err;
  }
  const input: PlanInput = { pod: w.pod, namespace, operation: "CREATE" };
  const analysis = analysePod(input, config);
  let facts: Facts;
  if (stack) {
    facts = await gatherFacts(input, analysis, { config, lookup: stack.lookup, metrics: new Metrics(), logger: createLogger({ level: "silent" }), ...(stack.keyring ? { configuredKeyring: stack.keyring } : {}) });
  } else {
    facts = { lookups: new Map(analysis.candidates.map((c) => [c.key, offlineAnswer(mode)])), now: Date.now() };
  }
  if (imageCaches) facts = { ...facts, imageCaches };
  const p = plan(input, facts, config, analysis);
  return { source: w.source, namespace, plan: p, patch: toPatch(w.pod, p) };
}

export function offlineAnswer(mode: LookupMode): LookupResult {
  return mode === "exists" ? { kind: "exists", mediaType: "application/vnd.oci.image.index.v1+json" }
    : mode === "absent" ? { kind: "absent", reason: "does not exist (--lookups absent)" }
      : { kind: "unknown", reason: "not checked (--lookups unknown)" };
}

function loadImageCaches(path: string): ImageCacheIndex {
  const index = new ImageCacheIndex();
  const visit = (d: unknown) => {
    if (d === null || typeof d !== "object") return;
    const o = d as ImageCacheObject & { items?: unknown };
    if (Array.isArray(o.items)) { o.items.forEach(visit); return; }
    const spec = imageCacheSpecOf(o);
    if (!spec) throw new InputError("input-image-cache", `${path}: ${o.kind ?? "a document"} ${o.metadata?.name ?? ""} is not an ImageCache (needs metadata.name and spec.images)`.replace("  ", " "), path);
    index.upsert(spec);
  };
  parseDocuments(readInput(path), path).forEach(visit);
  return index;
}

function render(r: Explained): string {
  const lines = [`${r.source} (namespace ${r.namespace})`];
  if (r.error) return `${lines[0]}\n  error: ${r.error}\n`;
  const p = r.plan!;
  if (p.skipped) return `${lines[0]}\n  skipped: ${p.skipped}\n`;
  for (const d of p.containers) {
    lines.push(`  ${d.kind}/${d.name}: ${d.outcome}${d.rule ? ` (rule ${d.rule})` : ""}`, `    ${d.original}${d.image !== d.original ? ` -> ${d.image}` : ""}`, `    ${d.reason}`);
  }
  if (p.placement) lines.push(`  placement: ${p.placement.mode} ${p.placement.key}=${p.placement.value}`);
  if (p.imageCache) lines.push(`  image cache: ${p.imageCache.result}: ${p.imageCache.reason}`);
  for (const w of p.warnings) lines.push(`  warning: ${w}`);
  lines.push(`  patch:`, JSON.stringify(r.patch, null, 2).replace(/^/gm, "    "));
  return lines.join("\n") + "\n";
}
