// Records finished pod starts: Prometheus histograms labelled only by bounded
// values (mode, node label, size bucket, phase), and a bounded in-memory window of
// the last starts with image names for `apparate report` (never a metric label).
import { Counter, Gauge, Histogram, type Registry } from "prom-client";
import { sizeBucket } from "./kubelet-messages.js";
import { PHASES, type Acceleration, type ImageStatus, type Phase } from "./pod-start.js";

/** Seconds to minutes: a cached image starts in under a second, a cold 5 GB pull in minutes. */
export const START_BUCKETS = [0.25, 0.5, 1, 2, 3, 5, 8, 10, 15, 20, 30, 45, 60, 90, 120, 180, 300, 600];

export interface ImagePull {
  image: string;
  /** "present": kubelet found it on the node and pulled nothing. */
  result: "pulled" | "present";
  seconds?: number;
  waitingSeconds?: number;
  sizeBytes?: number;
  status: ImageStatus["status"];
  advice?: ImageStatus["advice"];
}

export interface PodStart {
  uid: string;
  namespace: string;
  acceleration: Acceleration;
  nodeAccelerated: boolean;
  /** ms since epoch when the pod became Ready. */
  readyAt: number;
  phases: Partial<Record<Phase, number>>;
  pulls: ImagePull[];
}

/**
 * "true" when the pod pulled at least one image, "false" when kubelet found every
 * image present (such a start says nothing about pulls: counted apart), "unknown"
 * when no kubelet image event was seen (events expired or were not delivered).
 */
export function pulledLabel(start: PodStart): "true" | "false" | "unknown" {
  if (start.pulls.length === 0) return "unknown";
  return start.pulls.some((p) => p.result === "pulled") ? "true" : "false";
}

export class StartLatencyMetrics {
  readonly podStart: Histogram<"phase" | "acceleration" | "node_accelerated" | "pulled">;
  readonly imagePull: Histogram<"acceleration" | "size_bucket">;
  readonly pulls: Counter<"acceleration" | "result">;
  readonly presentPulls: Counter<"acceleration">;
  readonly podStarts: Counter<"acceleration" | "node_accelerated" | "pulled">;
  readonly nodesLabelled: Gauge;

  constructor(registry: Registry) {
    const registers = [registry];
    this.podStart = new Histogram({
      name: "apparate_pod_start_seconds",
      help: "Seconds from pod creation to each start phase, by acceleration mode, whether the node carried the apparate label, and whether any image was pulled.",
      labelNames: ["phase", "acceleration", "node_accelerated", "pulled"], buckets: START_BUCKETS, registers,
    });
    this.imagePull = new Histogram({
      name: "apparate_image_pull_seconds",
      help: "Image pull time reported by kubelet (without queueing where the kubelet says), by acceleration mode and image size bucket.",
      labelNames: ["acceleration", "size_bucket"], buckets: START_BUCKETS, registers,
    });
    this.pulls = new Counter({
      name: "apparate_image_pulls_total", help: "Kubelet image events of observed pods by acceleration mode and result (pulled, present).",
      labelNames: ["acceleration", "result"], registers,
    });
    this.presentPulls = new Counter({
      name: "apparate_image_already_present_total", help: "Images kubelet found already present on the node (nothing pulled), by acceleration mode.",
      labelNames: ["acceleration"], registers,
    });
    this.podStarts = new Counter({
      name: "apparate_pod_starts_total", help: "Pod starts observed, by acceleration mode, node label and whether any image was pulled.",
      labelNames: ["acceleration", "node_accelerated", "pulled"], registers,
    });
    this.nodesLabelled = new Gauge({
      name: "apparate_nodes_labelled", help: "Nodes carrying the apparate node label (the node agent labels a node only while its snapshotter is healthy).", registers,
    });
  }
}

export class StartRecorder {
  private readonly starts: PodStart[] = [];

  constructor(readonly metrics: StartLatencyMetrics, private readonly windowSize = 2000) {}

  record(start: PodStart): void {
    const mode = start.acceleration;
    const node = String(start.nodeAccelerated);
    const pulled = pulledLabel(start);
    for (const phase of PHASES) {
      const v = start.phases[phase];
      if (v !== undefined) this.metrics.podStart.observe({ phase, acceleration: mode, node_accelerated: node, pulled }, v);
    }
    this.metrics.podStarts.inc({ acceleration: mode, node_accelerated: node, pulled });
    for (const p of start.pulls) {
      this.metrics.pulls.inc({ acceleration: mode, result: p.result });
      if (p.result === "present") { this.metrics.presentPulls.inc({ acceleration: mode }); continue; }
      if (p.seconds !== undefined) this.metrics.imagePull.observe({ acceleration: mode, size_bucket: sizeBucket(p.sizeBytes) }, p.seconds);
    }
    this.starts.push(start);
    if (this.starts.length > this.windowSize) this.starts.splice(0, this.starts.length - this.windowSize);
  }

  /** The last starts, oldest first (a copy). */
  window(): PodStart[] {
    return this.starts.slice();
  }
}
