// `apparate check-image`: would the webhook swap or rewrite this image, and by which
// rule? It plans a one-container pod with the webhook's own analysis and planner, so
// its answer cannot disagree with what the webhook does.
import { gatherFacts } from "../admission/handler.js";
import { formatReference, parseReference } from "../image/reference.js";
import { conversionDecision } from "../mutate/rules.js";
import { analysePod, plan, type ContainerDecision, type Facts, type PlanInput } from "../mutate/plan.js";
import type { PodLike } from "../mutate/pod.js";
import { createRegistryStack } from "../registry/stack.js";
import { createLogger } from "../observability/logger.js";
import { Metrics } from "../observability/metrics.js";
import { parseCommandArgs, UsageError, type CommandSpec } from "./command.js";
import { loadCliConfig, CONFIG_OPTION, CONFIG_ENV } from "./config.js";
import { offlineAnswer } from "./explain.js";

/** Exit code when the image would be neither swapped nor rewritten. */
export const EXIT_NOT_ACCELERATED = 3;

export const checkImageSpec: CommandSpec = {
  name: "check-image",
  summary: "Say whether the webhook would swap an image to its accelerated variant or rewrite its registry, and why.",
  usage: "IMAGE [options]",
  details: `Exit status: 0 when the image would be swapped (offline: when its variant exists) or rewritten,
${EXIT_NOT_ACCELERATED} when it would be left as it is, 1 on failure, 2 on a usage error.`,
  positionals: { IMAGE: "an image reference as written in a pod (nginx, quay.io/org/app:1.2, host:5000/x@sha256:…)" },
  options: {
    config: CONFIG_OPTION,
    namespace: { type: "string", short: "n", value: "NS", description: "plan the pod in this namespace, with its enablement (default: an enabled namespace)" },
    lookups: { type: "string", default: "offline", value: "MODE", description: "offline (say what happens when the variant exists and when not), or registry (ask it)" },
    json: { type: "boolean", default: false, description: "print one JSON document" },
  },
  env: { [CONFIG_ENV]: "configuration file when --config is not given" },
};

interface CheckResult {
  image: string;
  normalised?: string;
  /** The decision when the variant exists (offline), or the registry's real answer. */
  decision: ContainerDecision | undefined;
  /** Offline only: the decision when the variant does not exist. */
  ifAbsent?: ContainerDecision;
  accelerated?: string;
  skipped?: string;
  /** Would the converter make the accelerated image of this image when it is pushed? */
  conversion?: { convert: boolean; rule?: string; target?: string; reason?: string };
}

export async function checkImage(argv: readonly string[], out: NodeJS.WritableStream): Promise<number> {
  const { values, positionals } = parseCommandArgs(checkImageSpec, argv);
  const image = positionals[0];
  if (!image) throw new UsageError("check-image", "an IMAGE is required");
  const mode = values.lookups as string;
  if (mode !== "offline" && mode !== "registry") throw new UsageError("check-image", `--lookups must be offline or registry, not ${JSON.stringify(mode)}`);
  const config = loadCliConfig(values.config as string | undefined);

  const pod: PodLike = { apiVersion: "v1", kind: "Pod", metadata: { name: "check-image" }, spec: { containers: [{ name: "check", image }] } };
  const ns = values.namespace as string | undefined;
  // Without --namespace, the pod stands in an enabled namespace: the question is the image.
  const input: PlanInput = ns
    ? { pod, namespace: ns, operation: "CREATE" }
    : { pod, namespace: "apparate-check-image", operation: "CREATE", namespaceLabels: { [config.namespaceLabelKey]: config.namespaceLabelValue } };
  const analysis = analysePod(input, config);
  const candidate = analysis.candidates[0];
  const result: CheckResult = { image, decision: undefined };
  try {
    const ref = parseReference(image);
    result.normalised = formatReference(ref);
    const c = conversionDecision(ref, config);
    result.conversion = c.convert ? { convert: true, rule: c.rule, target: formatReference(c.target) } : { convert: false, reason: c.reason };
  } catch { /* the decision says why */ }
  if (candidate) result.accelerated = candidate.key;

  if (mode === "registry") {
    const stack = createRegistryStack(config, new Metrics());
    try {
      const facts = await gatherFacts(input, analysis, { config, lookup: stack.lookup, metrics: new Metrics(), logger: createLogger({ level: "silent" }), ...(stack.keyring ? { configuredKeyring: stack.keyring } : {}) });
      const p = plan(input, facts, config, analysis);
      result.decision = p.containers[0];
      if (p.skipped) result.skipped = p.skipped;
    } finally {
      await stack.close();
    }
  } else {
    const with_ = (kind: "exists" | "absent"): Facts => ({ lookups: new Map(analysis.candidates.map((c) => [c.key, offlineAnswer(kind)])), now: Date.now() });
    const p = plan(input, with_("exists"), config, analysis);
    if (p.skipped) result.skipped = p.skipped;
    result.decision = p.containers[0];
    if (candidate) result.ifAbsent = plan(input, with_("absent"), config, analysis).containers[0];
  }

  const d = result.decision;
  const changed = d !== undefined && d.image !== d.original;
  if (values.json) {
    out.write(JSON.stringify({ ...result, changed }, null, 2) + "\n");
  } else {
    const lines = [`image:       ${image}`];
    if (result.normalised) lines.push(`normalised:  ${result.normalised}`);
    if (result.skipped) lines.push(`skipped:     ${result.skipped}`);
    if (d) {
      lines.push(`rule:        ${d.rule ?? "none"}`);
      if (mode === "offline" && candidate?.ref.digest !== undefined) {
        // Pinned (acceleration.digestPinned): only the registry knows Y (--lookups registry asks it).
        const name = result.accelerated!.slice(0, result.accelerated!.lastIndexOf("@"));
        lines.push(`swap:        to ${name}@<Y>, when the converter recorded ${candidate.ref.digest} -> Y (an OCI referrer) and Y is an eStargz image naming it as its source`);
        lines.push(`  without a verified link: digest-pinned: ${d.image}`);
      } else if (mode === "offline" && candidate) {
        lines.push(`swap:        to ${result.accelerated} when it exists as an OCI image`);
        lines.push(`  if it exists:  ${d.outcome}: ${d.image}`, `  if it doesn't: ${result.ifAbsent!.outcome}: ${result.ifAbsent!.image}`);
      } else {
        lines.push(`outcome:     ${d.outcome}`, `result:      ${d.image}`);
      }
      lines.push(`reason:      ${d.reason}`);
    }
    const c = result.conversion;
    if (c) lines.push(c.convert ? `convert:     yes, a push makes ${c.target} (rule ${c.rule})` : `convert:     no: ${c.reason}`);
    out.write(lines.join("\n") + "\n");
  }
  return changed ? 0 : EXIT_NOT_ACCELERATED;
}
