// One AdmissionReview, end to end: validate, gather facts under one deadline,
// plan (pure), patch. Never denies a pod; on its own trouble it answers "allowed"
// with no patch (fail open) and says why in a warning.
import type { Config } from "../config/config.js";
import type { Logger } from "../observability/logger.js";
import type { Metrics } from "../observability/metrics.js";
import { encodePatch, toPatch } from "../mutate/patch.js";
import { analysedContainers, plan, scopeOf, type Analysed, type Candidate, type Facts, type Plan, type PlanInput, type PodAnalysis } from "../mutate/plan.js";
import type { PodLike } from "../mutate/pod.js";
import { Keyring, type Credential } from "../registry/credentials.js";
import type { TagLookup } from "../registry/resolver.js";
import type { LookupResult } from "../registry/result.js";
import type { ImageCacheView } from "../imagecache/policy.js";
import { DeadlineSpentError, ReviewBudget } from "./budget.js";
import type { PlanMemo } from "./plan-memo.js";
import { allowResponse, BadReviewError, isPodRequest, oldPodOf, parseReview, podOf, type AdmissionResponseBody } from "./review.js";
import type { LabelledNodeSource } from "../kube/labelled-nodes.js";

/** Pull secrets of a namespace, from an informer cache (never an API call per review). */
export interface PullSecretSource { keyrings(namespace: string, names: readonly string[]): Keyring[] }
/** Namespace labels, from an informer cache. */
export interface NamespaceSource { labels(name: string): Readonly<Record<string, string>> | undefined }

export interface HandlerDeps {
  config: Config;
  lookup: TagLookup;
  logger: Logger;
  metrics: Metrics;
  /** Credentials from the chart's imagePullSecretsCrs. */
  configuredKeyring?: Keyring;
  pullSecrets?: PullSecretSource;
  namespaces?: NamespaceSource;
  imageCaches?: ImageCacheView;
  /** With required placement: how many Ready, schedulable nodes carry the label. */
  labelledNodes?: LabelledNodeSource;
  now?: () => number;
  /** Answers for pods of one template, planned once (plan-memo.ts); absent: every pod is planned. */
  planMemo?: PlanMemo<Answer>;
}

/** What a review is answered with; the plan memo keeps these. */
export interface Answer { plan: Plan; patch: string | undefined; result: "patched" | "unchanged" | "skipped" }

export interface HandlerResult { status: number; body: AdmissionResponseBody | { error: string; message: string } }

/**
 * The credentials a pod may use for a registry: its own pull secrets (from the informer
 * cache, looked up once per review) tried before the chart's imagePullSecretsCrs. The pod's
 * secrets form one keyring, as kubelet's MakeDockerKeyring builds it: the most specific key
 * of any secret comes first, not the first secret's keys.
 */
export function credentialSource(pod: PodLike, namespace: string, deps: Pick<HandlerDeps, "config" | "pullSecrets" | "configuredKeyring">): (domain: string, path: string) => Credential[] {
  const keyrings: Keyring[] = [];
  if (deps.config.registry.usePodPullSecrets && deps.pullSecrets) {
    const names = (pod.spec?.imagePullSecrets ?? []).map((s) => s.name).filter((n): n is string => typeof n === "string" && n !== "");
    const own = names.length > 0 ? deps.pullSecrets.keyrings(namespace, names) : [];
    if (own.length > 0) keyrings.push(Keyring.merged(own));
  }
  if (deps.configuredKeyring) keyrings.push(deps.configuredKeyring);
  return (domain, path) => keyrings.flatMap((k) => k.lookup(domain, path));
}

/**
 * Registry answers for the pod's candidates. Cached answers are taken without I/O;
 * only when something must be asked does the review's deadline start to matter.
 * With a budget, the loop runs in slices under the review's deadline and the lookups
 * end `reserveMs` before it, leaving the time planning is expected to take.
 */
export async function gatherFacts(input: PlanInput, analysis: PodAnalysis, deps: HandlerDeps, budget?: ReviewBudget, reserveMs = 0): Promise<Facts> {
  const lookups = new Map<string, LookupResult>();
  const missing: Array<{ c: PodAnalysis["candidates"][number]; creds: Credential[] }> = [];
  const credentials = credentialSource(input.pod, input.namespace, deps);
  const asked = new Set<string>();
  for (const c of analysis.candidates) {
    if (budget) await budget.tick("reading the registry cache", reserveMs);
    if (lookups.has(c.key) || asked.has(c.key)) continue;
    const creds = credentials(c.accelerated.domain, c.accelerated.path);
    const hit = deps.lookup.peek?.(c.accelerated, creds);
    if (hit) lookups.set(c.key, hit); else { asked.add(c.key); missing.push({ c, creds }); }
  }
  if (missing.length > 0) {
    // A pod may not make apparate do unbounded work: beyond the cap, "unknown" (left unchanged).
    const cap = deps.config.admission.maxLookupsPerReview;
    if (missing.length > cap) {
      const over: LookupResult = { kind: "unknown", reason: `more than ${cap} registry lookups in one pod (admission.maxLookupsPerReview)` };
      for (let i = cap; i < missing.length; i++) lookups.set(missing[i]!.c.key, over);
      missing.length = cap;
    }
    // One controller and one timer per review; the resolver fans the abort out to its
    // waiters from a single listener, so each lookup costs O(1) here.
    const deadline = new AbortController();
    // The lookups end early enough to leave planning its time, and a margin for taking
    // in their answers (each resolves a promise when the deadline fans out).
    const margin = (n: number) => reserveMs + LOOKUP_MARGIN_MS + n * LOOKUP_MARGIN_PER_ANSWER_MS;
    const waitMs = budget ? Math.max(0, budget.remaining() - margin(missing.length)) : deps.config.admission.deadlineMs;
    const timer = setTimeout(() => deadline.abort(), waitMs);
    try {
      // Started in slices too: 10,000 lookups take tens of ms just to queue.
      const pending: Array<Promise<void>> = [];
      for (const { c, creds } of missing) {
        if (budget) await budget.tick("starting registry lookups", margin(missing.length));
        pending.push(deps.lookup.lookup(c.accelerated, creds, deadline.signal).then((r) => {
          if (r.kind === "unknown" && r.reason === "deadline exceeded") deps.metrics.deadlineExceeded.inc();
          lookups.set(c.key, r);
        }));
      }
      budget?.pauseWork();
      await Promise.all(pending);
    } finally {
      clearTimeout(timer);
      budget?.resume();
    }
  }
  const labelled = labelledNodesOf(deps);
  return { lookups, ...(deps.imageCaches ? { imageCaches: deps.imageCaches } : {}), ...(labelled !== undefined ? { labelledNodes: labelled } : {}), now: (deps.now ?? Date.now)() };
}

function labelledNodesOf(deps: Pick<HandlerDeps, "config" | "labelledNodes">): number | undefined {
  return deps.config.acceleration.placement.mode === "required" ? deps.labelledNodes?.ready() : undefined;
}

/**
 * analysePod() in slices under the review's deadline. Planning and patching afterwards
 * are one synchronous stretch, estimated as long as the analysis itself (measured: a
 * third to a half of it), so the analysis must leave at least as much time again.
 */
async function analysePaced(input: PlanInput, config: Config, budget: ReviewBudget): Promise<PodAnalysis> {
  const scope = scopeOf(input, config);
  if (scope.skipped) return { skipped: scope.skipped, items: [], candidates: [] };
  const items: Analysed[] = [];
  const candidates: Candidate[] = [];
  const w0 = budget.workedMs;
  for (const a of analysedContainers(input, config)) {
    items.push(a);
    if ("candidate" in a && a.candidate) candidates.push(a.candidate);
    await budget.tick("analysing the pod", budget.workedMs - w0);
  }
  return { items, candidates };
}

/** Time kept back for plan() and the patch, from what the analysis cost (ms). */
function planReserve(analysisMs: number): number {
  return Math.ceil(analysisMs * PLAN_COST_FACTOR) + 1;
}
const PLAN_COST_FACTOR = 1;
const LOOKUP_MARGIN_MS = 5;
const LOOKUP_MARGIN_PER_ANSWER_MS = 0.002;

const DAY_MS = 86_400_000;

/**
 * The answer for a pod: remembered, when a pod of the same template was answered from
 * facts that all still hold, or planned now. Image-cache facts: the index's version, and
 * the clock (a cache's retention may end, the age apparate records may pass a day).
 */
async function answerFor(input: PlanInput, deps: HandlerDeps, budget: ReviewBudget): Promise<Answer> {
  const { config, planMemo: memo } = deps;
  const view = config.imageCache.enabled ? deps.imageCaches : undefined;
  // A view that cannot say when it changed is never memoised against.
  const memoisable = memo !== undefined && (view === undefined || (view.version !== undefined && view.expiresAfter !== undefined));
  // plan() reads one fact about nodes: whether none carries the label.
  const memoKey = memoisable ? memo.key(input, config) : undefined;
  const key = memoKey === undefined ? undefined : labelledNodesOf(deps) === 0 ? `${memoKey}|no-labelled-node` : memoKey;
  const viewVersion = view?.version;
  const credentials = key !== undefined ? credentialSource(input.pod, input.namespace, deps) : undefined;
  const peek = (c: Candidate) => deps.lookup.peek?.(c.accelerated, credentials!(c.accelerated.domain, c.accelerated.path));
  if (key !== undefined) {
    const known = memo!.reuse(key, (deps.now ?? Date.now)(), viewVersion, peek);
    if (known) return known;
  }
  const w0 = budget.workedMs;
  const analysis = await analysePaced(input, config, budget);
  const reserve = planReserve(budget.workedMs - w0);
  const facts = await gatherFacts(input, analysis, deps, budget, reserve);
  budget.check("planning", reserve);
  const p = plan(input, facts, config, analysis);
  const ops = toPatch(input.pod, p);
  const answer: Answer = { plan: p, patch: encodePatch(ops), result: p.skipped ? "skipped" : ops.length > 0 ? "patched" : "unchanged" };
  if (key !== undefined) {
    let validUntil = Number.POSITIVE_INFINITY;
    if (view && p.imageCache) {
      validUntil = view.expiresAfter!(facts.now);
      const used = p.imageCache.imcId !== undefined ? view.byId(p.imageCache.imcId) : undefined;
      if (used) validUntil = Math.min(validUntil, used.created + (Math.floor((facts.now - used.created) / DAY_MS) + 1) * DAY_MS);
    }
    memo!.remember(key, answer, {
      candidates: analysis.candidates, answers: analysis.candidates.map((c) => facts.lookups.get(c.key)),
      ...(viewVersion !== undefined ? { imageCacheVersion: viewVersion } : {}), validUntil,
    }, peek);
  }
  return answer;
}

// A log line stays small whatever the pod: a pod of 50,000 containers once wrote an
// 11 MB line. The first few decisions in full, the rest as counts by outcome.
const MAX_LOGGED_DECISIONS = 20;
const MAX_LOGGED_STRING = 256;

function clip(s: string, max = MAX_LOGGED_STRING): string {
  return s.length > max ? s.slice(0, max - 1) + "…" : s;
}

function decisionsForLog(p: Plan): { decisions: object[]; outcomes?: Record<string, number>; decisionsOmitted?: number } {
  // The reason of a plain swap repeats its image; it is kept for everything else.
  // Notable decisions (those with a warning) first, so the line says what went wrong.
  const ordered = p.containers.length > MAX_LOGGED_DECISIONS ? [...p.containers.filter((d) => d.warn), ...p.containers.filter((d) => !d.warn)] : p.containers;
  const decisions = ordered.slice(0, MAX_LOGGED_DECISIONS).map((d) => (d.outcome === "accelerated"
    ? { container: clip(d.name), kind: d.kind, outcome: d.outcome, image: clip(d.image) }
    : { container: clip(d.name), kind: d.kind, outcome: d.outcome, image: clip(d.image), reason: clip(d.reason) }));
  if (p.containers.length <= MAX_LOGGED_DECISIONS) return { decisions };
  const outcomes: Record<string, number> = {};
  for (const d of p.containers) outcomes[d.outcome] = (outcomes[d.outcome] ?? 0) + 1;
  return { decisions, outcomes, decisionsOmitted: p.containers.length - MAX_LOGGED_DECISIONS };
}

/**
 * `startedAt`: performance.now() when the request arrived (the server's onRequest hook);
 * the review's one deadline, admission.deadlineMs, counts from there.
 */
export async function handleReview(body: unknown, deps: HandlerDeps, startedAt: number = performance.now()): Promise<HandlerResult> {
  const { metrics, logger } = deps;
  const budget = new ReviewBudget(deps.config.admission.deadlineMs, startedAt);
  const stop = metrics.admissionDuration.startTimer();
  let uid = "";
  try {
    const req = parseReview(body);
    uid = req.uid;
    // Other kinds, and DELETE or CONNECT of a pod (whatever the webhook configuration
    // sends): an allowed no-op, never a 400.
    if (!isPodRequest(req) || (req.operation !== "CREATE" && req.operation !== "UPDATE")) {
      metrics.reviews.inc({ result: "skipped" });
      stop({ outcome: "skipped" });
      return { status: 200, body: allowResponse(uid, undefined, []) };
    }
    const pod = podOf(req);
    const oldPod = req.subResource === "ephemeralcontainers" ? oldPodOf(req) : undefined;
    const namespace = req.namespace ?? pod.metadata?.namespace ?? "default";
    const input: PlanInput = {
      pod, namespace, operation: req.operation,
      ...(req.subResource ? { subResource: req.subResource } : {}),
      ...(oldPod ? { oldPod } : {}),
      ...(deps.namespaces ? { namespaceLabels: deps.namespaces.labels(namespace) } : {}),
    };
    budget.check("reading the review");
    const { plan: p, patch, result } = await answerFor(input, deps, budget);
    const outcomes = new Map<string, number>();
    for (const d of p.containers) outcomes.set(d.outcome, (outcomes.get(d.outcome) ?? 0) + 1);
    for (const [outcome, n] of outcomes) metrics.decisions.inc({ outcome }, n);
    if (p.imageCache) metrics.imageCacheMatches.inc({ result: p.imageCache.result });
    metrics.reviews.inc({ result });
    // At info, the reviews that left something undone (with the reasons the user sees
    // as warnings); routine swaps and no-ops at debug. What was changed is recorded on
    // the pod itself (apparate.io/original-images, apparate.io/actions) and counted in
    // the metrics; a JSON line per swapped pod at info cost a third of the capacity.
    const notable = p.containers.some((d) => d.warn);
    if (notable || logger.isLevelEnabled("debug")) {
      logger[notable ? "info" : "debug"]({
        uid, namespace: clip(namespace), pod: clip(pod.metadata?.name ?? pod.metadata?.generateName ?? ""),
        dryRun: req.dryRun === true, result, skipped: p.skipped,
        ...decisionsForLog(p),
        placement: p.placement?.mode, imageCache: p.imageCache?.result,
      }, "admission decided");
    }
    stop({ outcome: result });
    // dryRun: the same answer, computed the same way; apparate has no side effects
    // during admission (events are emitted later, from a pod watch), so nothing to hold back.
    return { status: 200, body: allowResponse(uid, patch, p.warnings) };
  } catch (err) {
    if (err instanceof BadReviewError) {
      metrics.reviews.inc({ result: "bad_request" });
      stop({ outcome: "bad_request" });
      logger.warn({ uid, code: err.code, reason: err.message }, "bad AdmissionReview");
      return { status: 400, body: { error: err.code, message: err.message } };
    }
    if (err instanceof DeadlineSpentError) {
      // Out of time: fail open, within the deadline, and say so.
      metrics.reviews.inc({ result: "unchanged" });
      metrics.deadlineExceeded.inc();
      stop({ outcome: "deadline" });
      logger.info({ uid, code: err.code, input: err.input }, "admission deadline spent; allowing the pod unchanged");
      return { status: 200, body: allowResponse(uid, undefined, [`apparate: ${err.message}`]) };
    }
    // Our own trouble: fail open, never block the pod.
    metrics.reviews.inc({ result: "error" });
    stop({ outcome: "error" });
    // An error's message may quote the pod (an image of any length): clipped, like the rest.
    const e = err instanceof Error ? err : new Error(String(err));
    logger.error({ uid, err: { type: e.name, message: clip(e.message, 1024), stack: clip(e.stack ?? "", 4096) } }, "admission failed; allowing the pod unchanged");
    return { status: 200, body: allowResponse(uid, undefined, [`apparate: internal error, pod left unchanged (${(err as Error).message})`]) };
  }
}
