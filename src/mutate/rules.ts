// Which images are eligible for acceleration: an allow-list of registries, then
// optional seed-000 rules (registry namespace + repository regex + tag regex).
import type { Config } from "../config/config.js";
import { DEFAULT_TAG, type ImageReference } from "../image/reference.js";

export type RuleMatch = { matched: true; rule: string } | { matched: false; reason: string };

export function matchRule(ref: ImageReference, config: Config): RuleMatch {
  const acc = config.acceleration;
  if (!acc.anyRegistry && !acc.registries.has(ref.domain)) {
    return { matched: false, reason: `registry ${ref.domain} is not in acceleration.registries` };
  }
  if (acc.rules.length === 0) return { matched: true, rule: acc.anyRegistry ? "registry *" : `registry ${ref.domain}` };
  // The registry namespace is the first path component (a TCR namespace, a Harbor project).
  const slash = ref.path.indexOf("/");
  const ns = slash < 0 ? "" : ref.path.slice(0, slash);
  const repo = slash < 0 ? ref.path : ref.path.slice(slash + 1);
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
