// Which images are eligible for acceleration: an allow-list of registries, then
// optional rules (registry namespace + repository regex + tag regex).
import { isReferrersTag } from "../registry/referrers.js";
import type { Config } from "../config/config.js";
import { DEFAULT_TAG, type ImageReference, MAX_TAG_LENGTH } from "../image/reference.js";

export type RuleMatch = { matched: true; rule: string } | { matched: false; reason: string };

/** The registry namespace is the first path component (a TCR namespace, a Harbor project). */
function splitPath(path: string): { ns: string; repo: string } {
  const slash = path.indexOf("/");
  return slash < 0 ? { ns: "", repo: path } : { ns: path.slice(0, slash), repo: path.slice(slash + 1) };
}

export function matchRule(ref: ImageReference, config: Config): RuleMatch {
  const acc = config.acceleration;
  if (!acc.anyRegistry && !acc.registries.has(ref.domain)) {
    return { matched: false, reason: `registry ${ref.domain} is not in acceleration.registries` };
  }
  if (acc.rules.length === 0) return { matched: true, rule: acc.anyRegistry ? "registry *" : `registry ${ref.domain}` };
  const { ns, repo } = splitPath(ref.path);
  const tag = ref.tag ?? DEFAULT_TAG;
  for (const r of acc.rules) {
    if (r.registry !== undefined && r.registry !== ref.domain) continue;
    if (r.namespace !== undefined && r.namespace !== ns) continue;
    if (r.repository && !r.repository.test(repo)) continue;
    if (r.tag && !r.tag.test(tag)) continue;
    return { matched: true, rule: r.name };
  }
  return { matched: false, reason: "no acceleration rule matches" };
}

export type ConversionDecision =
  | { convert: true; rule: string; target: ImageReference }
  | { convert: false; reason: string };

/**
 * Would the converter make `<tag><suffix>` of this pushed image? The same rules as the
 * swap (matchRule), so that what is converted is exactly what the webhook may swap to.
 * A tag that already carries the suffix is never converted (the loop guard).
 */
export function conversionDecision(ref: ImageReference, config: Config): ConversionDecision {
  const suffix = config.acceleration.tagSuffix;
  if (!config.acceleration.enabled) return { convert: false, reason: "acceleration.enabled is false" };
  if (ref.tag === undefined && ref.digest !== undefined) return { convert: false, reason: "no tag: an accelerated image is named after the source's tag" };
  const tag = ref.tag ?? DEFAULT_TAG;
  if (tag.endsWith(suffix)) return { convert: false, reason: `tag already ends with ${suffix} (an accelerated image)` };
  if (isReferrersTag(tag)) return { convert: false, reason: "a referrers tag (sha256-<digest>): a list of artifacts, not an image" };
  if (tag.length + suffix.length > MAX_TAG_LENGTH) return { convert: false, reason: `tag ${tag.slice(0, 40)}… + ${suffix} would exceed ${MAX_TAG_LENGTH} characters` };
  const m = matchRule(ref, config);
  if (!m.matched) return { convert: false, reason: m.reason };
  return { convert: true, rule: m.rule, target: { domain: ref.domain, path: ref.path, tag: tag + suffix } };
}

/**
 * Could any tag of this repository be converted? The rules without their tag regex:
 * a rescan lists the tags only of repositories that pass.
 */
export function repositoryMayMatch(domain: string, path: string, config: Config): boolean {
  const acc = config.acceleration;
  if (!acc.enabled) return false;
  if (!acc.anyRegistry && !acc.registries.has(domain)) return false;
  if (acc.rules.length === 0) return true;
  const { ns, repo } = splitPath(path);
  return acc.rules.some((r) => (r.registry === undefined || r.registry === domain) && (r.namespace === undefined || r.namespace === ns) && (!r.repository || r.repository.test(repo)));
}
