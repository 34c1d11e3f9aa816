// Image cache auto-match (seed 002), pure. A cache qualifies when it is ready, not
// expired and holds every image of the pod (same normalised name and tag; a digest
// reference only matches a cache that lists that digest). Rank: smaller
// imageCacheSize, then newer creation, then name, so that every pod of a
// ReplicaSet gets the same cache. An inverted index keeps a match independent of
// the number of caches that share none of the pod's images.
import { canonicalKey, parseReference, repositoryName } from "../image/reference.js";

export interface ImageCacheSpec {
  name: string;
  uid?: string;
  /** ms since epoch */
  created: number;
  images: readonly string[];
  /** GiB; TKE's default is 20. */
  size: number;
  /** 0 = never expires */
  retentionDays: number;
  imcId?: string;
  phase?: string;
}

export interface CacheEntry extends ImageCacheSpec {
  /** Canonical keys of the cache's images ("docker.io/library/nginx:latest", "repo@sha256:…"). */
  readonly keys: ReadonlySet<string>;
  readonly invalidImages: readonly string[];
}

export interface MatchOptions {
  readyPhase: string;
  matchMode: "all" | "most";
  latestTag: "match" | "skip";
  now: number;
}

export type MatchResult =
  | { kind: "matched"; cache: CacheEntry; covered: string[]; uncovered: string[] }
  | { kind: "none"; reason: string };

export interface ImageCacheView {
  match(podImages: readonly string[], opts: MatchOptions): MatchResult;
  byId(imcId: string): CacheEntry | undefined;
  readonly size: number;
  /** Changes whenever the content changes; a view without one is never memoised against. */
  readonly version?: number;
  /** The first time after `now` at which a cache's retention ends (Infinity when none will). */
  expiresAfter?(now: number): number;
}

const DAY_MS = 86_400_000;

/** Canonical keys of one image string; tag+digest lists both forms. Undefined if malformed. */
export function imageKeys(image: string): string[] | undefined {
  try {
    const ref = parseReference(image);
    const keys = [canonicalKey(ref)];
    if (ref.digest !== undefined && ref.tag !== undefined) keys.push(`${repositoryName(ref)}:${ref.tag}`);
    return keys;
  } catch {
    return undefined;
  }
}

export function toEntry(spec: ImageCacheSpec): CacheEntry {
  const keys = new Set<string>();
  const invalid: string[] = [];
  for (const img of spec.images) {
    const k = imageKeys(img);
    if (k) for (const x of k) keys.add(x); else invalid.push(img);
  }
  return { ...spec, keys, invalidImages: invalid };
}

export function isUsable(c: CacheEntry, readyPhase: string, now: number): boolean {
  if (c.phase !== readyPhase || !c.imcId) return false;
  return !(c.retentionDays > 0 && c.created + c.retentionDays * DAY_MS <= now);
}

/** Strict ordering: smaller size, newer, then name. Negative when a ranks before b. */
export function rank(a: CacheEntry, b: CacheEntry): number {
  return a.size - b.size || b.created - a.created || (a.name < b.name ? -1 : a.name > b.name ? 1 : 0);
}

export class ImageCacheIndex implements ImageCacheView {
  private readonly entries = new Map<string, CacheEntry>();
  private readonly byKey = new Map<string, Set<CacheEntry>>();
  private readonly ids = new Map<string, CacheEntry>();
  private changes = 0;
  /** Retention ends, sorted; rebuilt on the first question after a change. */
  private expiries: { version: number; times: number[] } = { version: 0, times: [] };

  get size(): number { return this.entries.size; }
  get version(): number { return this.changes; }

  expiresAfter(now: number): number {
    if (this.expiries.version !== this.changes) {
      const times: number[] = [];
      for (const e of this.entries.values()) if (e.retentionDays > 0) times.push(e.created + e.retentionDays * DAY_MS);
      times.sort((a, b) => a - b);
      this.expiries = { version: this.changes, times };
    }
    const t = this.expiries.times;
    let lo = 0, hi = t.length;
    while (lo < hi) { const mid = (lo + hi) >> 1; if (t[mid]! <= now) lo = mid + 1; else hi = mid; }
    return lo < t.length ? t[lo]! : Number.POSITIVE_INFINITY;
  }

  upsert(spec: ImageCacheSpec): CacheEntry {
    this.remove(spec.name);
    this.changes++;
    const e = toEntry(spec);
    this.entries.set(e.name, e);
    for (const k of e.keys) {
      let s = this.byKey.get(k);
      if (!s) { s = new Set(); this.byKey.set(k, s); }
      s.add(e);
    }
    if (e.imcId) this.ids.set(e.imcId, e);
    return e;
  }

  remove(name: string): void {
    const e = this.entries.get(name);
    if (!e) return;
    this.changes++;
    this.entries.delete(name);
    for (const k of e.keys) {
      const s = this.byKey.get(k);
      s?.delete(e);
      if (s && s.size === 0) this.byKey.delete(k);
    }
    if (e.imcId && this.ids.get(e.imcId) === e) this.ids.delete(e.imcId);
  }

  /** Replaces the whole content (an informer's relist). */
  replace(specs: Iterable<ImageCacheSpec>): void {
    this.changes++;
    this.entries.clear(); this.byKey.clear(); this.ids.clear();
    for (const s of specs) this.upsert(s);
  }

  get(name: string): CacheEntry | undefined { return this.entries.get(name); }
  byId(imcId: string): CacheEntry | undefined { return this.ids.get(imcId); }
  names(): string[] { return [...this.entries.keys()]; }

  match(podImages: readonly string[], opts: MatchOptions): MatchResult {
    const keys: string[] = [];
    const seen = new Set<string>();
    for (const img of podImages) {
      const k = imageKeys(img);
      if (!k) return { kind: "none", reason: `image ${JSON.stringify(img.slice(0, 80))} is not a valid reference` };
      const key = k[0]!;
      if (!seen.has(key)) { seen.add(key); keys.push(key); }
    }
    if (keys.length === 0) return { kind: "none", reason: "pod has no images" };
    let wanted = keys;
    if (opts.latestTag === "skip") {
      const latest = keys.filter((k) => k.endsWith(":latest"));
      if (latest.length > 0 && opts.matchMode === "all") {
        return { kind: "none", reason: `pod uses :latest (${latest[0]}); a latest cache may be stale (imageCache.latestTag: skip)` };
      }
      wanted = keys.filter((k) => !k.endsWith(":latest"));
      if (wanted.length === 0) return { kind: "none", reason: "pod only uses :latest images (imageCache.latestTag: skip)" };
    }
    return opts.matchMode === "all" ? this.matchAll(wanted, opts) : this.matchMost(wanted, opts);
  }

  private matchAll(keys: string[], opts: MatchOptions): MatchResult {
    const sets: Set<CacheEntry>[] = [];
    for (const k of keys) {
      const s = this.byKey.get(k);
      if (!s) return { kind: "none", reason: `no image cache holds ${k}` };
      sets.push(s);
    }
    sets.sort((a, b) => a.size - b.size);
    let best: CacheEntry | undefined;
    const [smallest, ...rest] = sets;
    for (const c of smallest!) {
      if (!rest.every((s) => s.has(c))) continue;
      if (!isUsable(c, opts.readyPhase, opts.now)) continue;
      if (!best || rank(c, best) < 0) best = c;
    }
    if (!best) return { kind: "none", reason: "no ready, unexpired image cache holds every image of the pod" };
    return { kind: "matched", cache: best, covered: keys, uncovered: [] };
  }

  private matchMost(keys: string[], opts: MatchOptions): MatchResult {
    const count = new Map<CacheEntry, number>();
    for (const k of keys) for (const c of this.byKey.get(k) ?? []) count.set(c, (count.get(c) ?? 0) + 1);
    let best: CacheEntry | undefined;
    let bestN = 0;
    for (const [c, n] of count) {
      if (!isUsable(c, opts.readyPhase, opts.now)) continue;
      if (n > bestN || (n === bestN && best && rank(c, best) < 0)) { best = c; bestN = n; }
    }
    if (!best) return { kind: "none", reason: "no ready, unexpired image cache holds any image of the pod" };
    return { kind: "matched", cache: best, covered: keys.filter((k) => best!.keys.has(k)), uncovered: keys.filter((k) => !best!.keys.has(k)) };
  }
}
