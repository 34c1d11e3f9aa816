// Prometheus metrics (prom-client). One Metrics object per process (or per test),
// each with its own registry so that tests can read exact counts.
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from "prom-client";

export class Metrics {
  readonly registry = new Registry();
  readonly admissionDuration = new Histogram({
    name: "apparate_admission_duration_seconds", help: "Time to answer one AdmissionReview.",
    labelNames: ["outcome"], buckets: [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2, 5], registers: [this.registry],
  });
  readonly decisions = new Counter({
    name: "apparate_decisions_total", help: "Per-container decisions by outcome.", labelNames: ["outcome"], registers: [this.registry],
  });
  readonly reviews = new Counter({
    name: "apparate_admission_reviews_total", help: "AdmissionReviews by result (patched, unchanged, skipped, bad_request).", labelNames: ["result"], registers: [this.registry],
  });
  readonly deadlineExceeded = new Counter({
    name: "apparate_lookup_deadline_exceeded_total", help: "Registry lookups that missed the review deadline (container left unchanged).", registers: [this.registry],
  });
  readonly lookupDuration = new Histogram({
    name: "apparate_registry_lookup_duration_seconds", help: "Registry manifest lookups that went to the network.", labelNames: ["registry"],
    buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5], registers: [this.registry],
  });
  readonly lookups = new Counter({
    name: "apparate_registry_lookups_total", help: "Registry lookups by result (exists, absent, unknown).", labelNames: ["registry", "result"], registers: [this.registry],
  });
  readonly registryRequests = new Counter({
    name: "apparate_registry_requests_total", help: "HTTP requests sent to registries (manifest and token).", labelNames: ["registry", "kind"], registers: [this.registry],
  });
  readonly cache = new Counter({
    name: "apparate_registry_cache_total", help: "Lookup cache hits, misses and coalesced waits.", labelNames: ["result"], registers: [this.registry],
  });
  readonly breakerState = new Gauge({
    name: "apparate_registry_breaker_open", help: "1 while a registry's circuit breaker is open.", labelNames: ["registry"], registers: [this.registry],
  });
  readonly imageCacheMatches = new Counter({
    name: "apparate_image_cache_matches_total", help: "Image cache decisions by result.", labelNames: ["result"], registers: [this.registry],
  });
  readonly labelledNodesReady = new Gauge({
    name: "apparate_labelled_nodes_ready", help: "Ready, schedulable nodes carrying the placement label (required placement swaps nothing while 0).", registers: [this.registry],
  });
  readonly imageCaches = new Gauge({
    name: "apparate_image_caches", help: "ImageCache objects known to the informer.", registers: [this.registry],
  });

  constructor(opts: { defaults?: boolean } = {}) {
    if (opts.defaults) collectDefaultMetrics({ register: this.registry, prefix: "apparate_" });
  }
}
