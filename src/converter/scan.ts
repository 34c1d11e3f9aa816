// Reconcile scans: registries drop notifications (distribution's queue is in memory),
// so the converter lists what the rules select and converts what is missing (no
// <tag><suffix>) or stale (the accelerated image records another source digest).
import type { Config } from "../config/config.js";
import { conversionDecision, repositoryMayMatch } from "../mutate/rules.js";
import { CatalogRefusedError, type RegistryReader } from "./registry-reader.js";

export interface ScanTarget { registry: string; repositories?: readonly string[] }

export type ScanReason = "missing" | "stale";

export interface ScanFinding { registry: string; repository: string; tag: string; digest: string; reason: ScanReason }

export interface ScanReport {
  registry: string;
  startedAt: string;
  finishedAt?: string;
  /** Where the repository list came from. */
  catalog: "listed" | "configured" | "refused";
  repositories: number;
  tags: number;
  findings: ScanFinding[];
  upToDate: number;
  errors: string[];
}

/** Which tags of one repository to look at, and whether their accelerated tag exists (pure). */
export function tagsToCheck(registry: string, repository: string, tags: readonly string[], config: Config): Array<{ tag: string; target: string; targetExists: boolean }> {
  const present = new Set(tags);
  const out: Array<{ tag: string; target: string; targetExists: boolean }> = [];
  for (const tag of tags) {
    const d = conversionDecision({ domain: registry, path: repository, tag }, config);
    if (!d.convert) continue;
    const target = d.target.tag!;
    out.push({ tag, target, targetExists: present.has(target) });
  }
  return out;
}

export interface ScanDeps {
  reader: RegistryReader;
  config: Config;
  /** Called for each finding as soon as it is known: conversions start while the scan goes on. */
  found(f: ScanFinding): void;
  signal: AbortSignal;
  now?: () => Date;
}

export async function scanRegistry(target: ScanTarget, deps: ScanDeps): Promise<ScanReport> {
  const { reader, config, signal } = deps;
  const now = deps.now ?? (() => new Date());
  const report: ScanReport = { registry: target.registry, startedAt: now().toISOString(), catalog: "listed", repositories: 0, tags: 0, findings: [], upToDate: 0, errors: [] };
  let repos: readonly string[];
  try {
    repos = await reader.repositories(target.registry, signal);
  } catch (err) {
    if (!(err instanceof CatalogRefusedError)) throw err;
    if (!target.repositories) {
      report.catalog = "refused";
      report.errors.push(`${err.message}; list the repositories in converter.scan[].repositories`);
      report.finishedAt = now().toISOString();
      return report;
    }
    report.catalog = "configured";
    repos = target.repositories;
  }
  for (const repository of repos) {
    if (signal.aborted) break;
    if (!repositoryMayMatch(target.registry, repository, config)) continue;
    report.repositories++;
    try {
      const tags = await reader.tags(target.registry, repository, signal);
      report.tags += tags.length;
      for (const t of tagsToCheck(target.registry, repository, tags, config)) {
        if (signal.aborted) break;
        const digest = await reader.digest(target.registry, repository, t.tag, signal);
        if (!digest) continue; // deleted since the listing
        let reason: ScanReason | undefined = "missing";
        if (t.targetExists) {
          const recorded = await reader.recordedSource(target.registry, repository, t.target, signal);
          // An accelerated image made elsewhere (no record) is the user's: left alone.
          reason = recorded === undefined || recorded === digest ? undefined : "stale";
        }
        if (!reason) { report.upToDate++; continue; }
        const f = { registry: target.registry, repository, tag: t.tag, digest, reason };
        report.findings.push(f);
        deps.found(f);
      }
    } catch (err) {
      if (signal.aborted) break;
      report.errors.push(`${target.registry}/${repository}: ${(err as Error).message}`);
    }
  }
  report.finishedAt = now().toISOString();
  return report;
}
