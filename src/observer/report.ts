// `apparate report`'s content (pure): start latency per mode and phase (p50/p90),
// and the images that pulled slowest with what would help, from the observer's
// window or from Prometheus' histograms; rendered as a table or JSON.
import { ACCELERATIONS, PHASES, type Acceleration, type Phase } from "./pod-start.js";
import type { PodStart } from "./recorder.js";

export const STARTS_PATH = "/observer/starts";

/** What GET /observer/starts answers: the window, and who holds the Lease. */
export interface StartsWindow {
  identity: string;
  leader: boolean;
  holder?: string;
  starts: PodStart[];
}

export interface PhaseRow { acceleration: Acceleration; phase: Phase; pods: number; p50: number; p90: number }
export interface ImageRow {
  image: string;
  pulls: number;
  /** Kubelet found it already present this many times (no pull). */
  present: number;
  p50Seconds?: number;
  maxSeconds?: number;
  sizeBytes?: number;
  status: string;
  advice?: string;
}
export interface Report {
  source: string;
  pods: number;
  /** Pods whose images were all already present: their start says nothing about pulls. */
  podsWithoutPull: number;
  phases: PhaseRow[];
  images: ImageRow[];
  notes: string[];
}

/** Nearest-rank quantile of sorted values. */
export function quantile(sorted: readonly number[], q: number): number {
  if (sorted.length === 0) return Number.NaN;
  const rank = Math.max(1, Math.ceil(q * sorted.length));
  return sorted[Math.min(sorted.length, rank) - 1]!;
}

const order = <T extends string>(list: readonly T[]) => (a: T, b: T) => list.indexOf(a) - list.indexOf(b);

export function reportFromWindow(starts: readonly PodStart[], source: string, top = 10): Report {
  const byKey = new Map<string, { acceleration: Acceleration; phase: Phase; values: number[] }>();
  for (const s of starts) {
    for (const phase of PHASES) {
      const v = s.phases[phase];
      if (v === undefined) continue;
      const k = `${s.acceleration}/${phase}`;
      let e = byKey.get(k);
      if (!e) { e = { acceleration: s.acceleration, phase, values: [] }; byKey.set(k, e); }
      e.values.push(v);
    }
  }
  const phases = [...byKey.values()].map(({ acceleration, phase, values }): PhaseRow => {
    const sorted = values.slice().sort((a, b) => a - b);
    return { acceleration, phase, pods: sorted.length, p50: quantile(sorted, 0.5), p90: quantile(sorted, 0.9) };
  }).sort((a, b) => order(ACCELERATIONS)(a.acceleration, b.acceleration) || order(PHASES)(a.phase, b.phase));

  const images = new Map<string, { seconds: number[]; present: number; size?: number; status: string; advice?: string }>();
  for (const s of starts) {
    for (const p of s.pulls) {
      let e = images.get(p.image);
      if (!e) { e = { seconds: [], present: 0, status: p.status }; images.set(p.image, e); }
      // The latest pull's status and advice: the node or the rules may have changed.
      e.status = p.status;
      if (p.advice) e.advice = p.advice; else delete e.advice;
      if (p.result === "present") e.present++;
      else if (p.seconds !== undefined) e.seconds.push(p.seconds);
      if (p.sizeBytes !== undefined) e.size = p.sizeBytes;
    }
  }
  const imageRows = [...images].filter(([, e]) => e.seconds.length > 0).map(([image, e]): ImageRow => {
    const sorted = e.seconds.slice().sort((a, b) => a - b);
    return {
      image, pulls: sorted.length, present: e.present, p50Seconds: quantile(sorted, 0.5), maxSeconds: sorted.at(-1)!,
      ...(e.size !== undefined ? { sizeBytes: e.size } : {}), status: e.status, ...(e.advice ? { advice: e.advice } : {}),
    };
  }).sort((a, b) => b.p50Seconds! - a.p50Seconds! || a.image.localeCompare(b.image)).slice(0, top);
  const withoutPull = starts.filter((s) => s.pulls.length > 0 && s.pulls.every((p) => p.result === "present")).length;
  const notes: string[] = [];
  if (starts.length === 0) notes.push("no pod start recorded yet: pods are recorded once Ready, in namespaces apparate handles");
  return { source, pods: starts.length, podsWithoutPull: withoutPull, phases, images: imageRows, notes };
}

function secs(v: number | undefined): string {
  if (v === undefined || !Number.isFinite(v)) return "-";
  if (v < 10) return `${v.toFixed(2)}s`;
  if (v < 120) return `${v.toFixed(1)}s`;
  return `${Math.floor(v / 60)}m${String(Math.round(v % 60)).padStart(2, "0")}s`;
}

function bytes(v: number | undefined): string {
  if (v === undefined) return "-";
  if (v >= 1e9) return `${(v / 1e9).toFixed(1)} GB`;
  if (v >= 1e6) return `${(v / 1e6).toFixed(1)} MB`;
  return `${Math.round(v / 1e3)} kB`;
}

function table(header: string[], rows: string[][]): string[] {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)));
  const line = (cells: string[]) => cells.map((c, i) => (i === cells.length - 1 ? c : c.padEnd(widths[i]!))).join("  ").trimEnd();
  return [line(header), ...rows.map(line)];
}

/** The report as a person reads it in a terminal. */
export function renderReport(r: Report): string {
  const out: string[] = [`Pod start latency by acceleration mode (${r.source})`, `${r.pods} pod starts${r.podsWithoutPull ? `, ${r.podsWithoutPull} with every image already present (no pull)` : ""}`, ""];
  if (r.phases.length > 0) {
    out.push(...table(["MODE", "PHASE", "PODS", "P50", "P90"], r.phases.map((p) => [p.acceleration, p.phase.replace(/_/g, " "), String(p.pods), secs(p.p50), secs(p.p90)])));
    out.push("", "Phases are seconds from pod creation.");
  }
  if (r.images.length > 0) {
    out.push("", "Slowest image pulls", ...table(["IMAGE", "PULLS", "P50", "MAX", "SIZE", "STATUS", "WOULD HELP"],
      r.images.map((i) => [i.image, String(i.pulls), secs(i.p50Seconds), secs(i.maxSeconds), bytes(i.sizeBytes), i.status, i.advice ?? "-"])));
  }
  for (const n of r.notes) out.push("", `note: ${n}`);
  return out.join("\n") + "\n";
}

// ---- from Prometheus ----

export interface PromVectorSample { metric: Record<string, string>; value: [number, string] }

/** The queries --from-prometheus runs; also the dashboard's and the tests' queries. */
export function prometheusQueries(range: string): { p50: string; p90: string; pods: string } {
  const buckets = `sum by (le, phase, acceleration) (increase(apparate_pod_start_seconds_bucket[${range}]))`;
  return {
    p50: `histogram_quantile(0.5, ${buckets})`,
    p90: `histogram_quantile(0.9, ${buckets})`,
    pods: `sum by (phase, acceleration) (increase(apparate_pod_start_seconds_count[${range}]))`,
  };
}

export function reportFromPrometheus(results: { p50: PromVectorSample[]; p90: PromVectorSample[]; pods: PromVectorSample[] }, source: string): Report {
  const key = (m: Record<string, string>) => `${m.acceleration}/${m.phase}`;
  const val = (s: PromVectorSample | undefined) => (s ? Number(s.value[1]) : Number.NaN);
  const p50 = new Map(results.p50.map((s) => [key(s.metric), s]));
  const p90 = new Map(results.p90.map((s) => [key(s.metric), s]));
  const phases: PhaseRow[] = [];
  for (const s of results.pods) {
    const acceleration = s.metric.acceleration as Acceleration;
    const phase = s.metric.phase as Phase;
    if (!ACCELERATIONS.includes(acceleration) || !PHASES.includes(phase)) continue;
    const pods = Math.round(Number(s.value[1]));
    if (!(pods > 0)) continue;
    phases.push({ acceleration, phase, pods, p50: val(p50.get(key(s.metric))), p90: val(p90.get(key(s.metric))) });
  }
  phases.sort((a, b) => order(ACCELERATIONS)(a.acceleration, b.acceleration) || order(PHASES)(a.phase, b.phase));
  const ready = phases.filter((p) => p.phase === "ready").reduce((n, p) => n + p.pods, 0);
  return {
    source, pods: ready, podsWithoutPull: 0, phases, images: [],
    notes: ["quantiles are estimated from histogram buckets; images are not metric labels (bounded series), so the slowest images come only from the webhook's window (--url)"],
  };
}
