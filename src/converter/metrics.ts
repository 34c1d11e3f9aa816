// The converter's Prometheus metrics, on the process's registry (prom-client).
import { Counter, Gauge, Histogram, type Registry } from "prom-client";

export class ConverterMetrics {
  readonly conversions: Counter<"result">;
  readonly failures: Counter<"kind">;
  readonly duration: Histogram<"result">;
  readonly bytes: Counter<"direction">;
  readonly queueDepth: Gauge;
  readonly running: Gauge;
  readonly submissions: Counter<"trigger" | "outcome">;
  readonly events: Counter<"source" | "result">;
  readonly lastScan: Gauge<"registry">;
  readonly scanFindings: Counter<"registry" | "reason">;
  readonly scanErrors: Counter<"registry">;

  constructor(registry: Registry, depth: () => { queued: number; running: number }) {
    const registers = [registry];
    this.conversions = new Counter({ name: "apparate_conversions_total", help: "Finished conversions by result (converted, up_to_date, failed).", labelNames: ["result"], registers });
    this.failures = new Counter({ name: "apparate_conversion_failures_total", help: "Failed conversion attempts by kind: permanent (retrying cannot help: recorded failed at once) or transient (retried with backoff up to maxAttempts).", labelNames: ["kind"], registers });
    this.duration = new Histogram({
      name: "apparate_conversion_duration_seconds", help: "Time of one conversion attempt, by result.", labelNames: ["result"],
      buckets: [0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800], registers,
    });
    this.bytes = new Counter({ name: "apparate_conversion_bytes_total", help: "Bytes read from sources (in) and written as accelerated images (out).", labelNames: ["direction"], registers });
    this.queueDepth = new Gauge({ name: "apparate_conversion_queue_depth", help: "Conversions waiting (queued or backing off).", registers, collect() { this.set(depth().queued); } });
    this.running = new Gauge({ name: "apparate_conversions_running", help: "Conversions running now.", registers, collect() { this.set(depth().running); } });
    this.submissions = new Counter({ name: "apparate_conversion_submissions_total", help: "Images offered to the queue, by trigger (event, scan) and outcome (queued, duplicate, skipped, full).", labelNames: ["trigger", "outcome"], registers });
    this.events = new Counter({ name: "apparate_converter_events_total", help: "Event requests received, by source and result (accepted, unauthorized, bad_request, full).", labelNames: ["source", "result"], registers });
    this.lastScan = new Gauge({ name: "apparate_converter_last_scan_timestamp_seconds", help: "When the last rescan of a registry finished.", labelNames: ["registry"], registers });
    this.scanFindings = new Counter({ name: "apparate_converter_scan_findings_total", help: "Images a rescan found missing or stale.", labelNames: ["registry", "reason"], registers });
    this.scanErrors = new Counter({ name: "apparate_converter_scan_errors_total", help: "Repositories a rescan could not read.", labelNames: ["registry"], registers });
  }
}
