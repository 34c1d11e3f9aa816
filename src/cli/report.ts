// `apparate report`: pod start latency by acceleration mode, from the webhook's
// observer window (GET /observer/starts on its metrics port) or from Prometheus.
import { ApparateError } from "../errors.js";
import {
  prometheusQueries, renderReport, reportFromPrometheus, reportFromWindow, STARTS_PATH, type PromVectorSample, type Report, type StartsWindow,
} from "../observer/report.js";
import { parseCommandArgs, UsageError, type CommandSpec } from "./command.js";

export const reportSpec: CommandSpec = {
  name: "report",
  summary: "Show pod start latency by acceleration mode (p50/p90 per phase) and the slowest image pulls with what would help.",
  usage: "[--url URL | --from-prometheus URL] [options]",
  details: `The webhook replica holding the observer Lease keeps the last pod starts in memory; reach its
metrics port (kubectl -n apparate-system port-forward deploy/apparate 9090) or ask Prometheus.
Exit status: 0 done, 1 when the source cannot be read, 2 on a usage error.`,
  options: {
    url: { type: "string", value: "URL", default: "http://127.0.0.1:9090", description: "the webhook's metrics address" },
    "from-prometheus": { type: "string", value: "URL", description: "read the histograms from this Prometheus instead (no per-image rows)" },
    range: { type: "string", value: "DURATION", default: "1h", description: "with --from-prometheus: the window, a Prometheus duration (30m, 6h, 7d)" },
    top: { type: "string", value: "N", default: "10", description: "how many of the slowest images to list" },
    json: { type: "boolean", default: false, description: "print one JSON document" },
    "timeout-seconds": { type: "string", value: "N", default: "10", description: "give up on the source after this long" },
  },
};

async function getJson(url: string, timeoutMs: number): Promise<unknown> {
  let res: Response;
  try {
    res = await fetch(url, { signal: AbortSignal.timeout(timeoutMs), headers: { accept: "application/json" } });
  } catch (err) {
    throw new ApparateError("report-unreachable", `cannot reach ${url}: ${(err as Error).cause instanceof Error ? ((err as Error).cause as Error).message : (err as Error).message}`, url);
  }
  const text = await res.text();
  if (!res.ok) throw new ApparateError("report-http", `${url} answered ${res.status}: ${text.slice(0, 200)}`, url);
  try { return JSON.parse(text); } catch { throw new ApparateError("report-json", `${url} did not answer JSON`, url); }
}

function baseUrl(flag: string, raw: string): URL {
  let u: URL;
  try { u = new URL(raw); } catch { throw new UsageError("report", `--${flag}: ${JSON.stringify(raw)} is not a URL`); }
  if (u.protocol !== "http:" && u.protocol !== "https:") throw new UsageError("report", `--${flag}: ${JSON.stringify(raw)} must be http or https`);
  return u;
}

async function promQuery(base: URL, query: string, timeoutMs: number): Promise<PromVectorSample[]> {
  const u = new URL("api/v1/query", base.href.endsWith("/") ? base.href : `${base.href}/`);
  u.searchParams.set("query", query);
  const body = (await getJson(u.href, timeoutMs)) as { status?: string; data?: { resultType?: string; result?: PromVectorSample[] }; error?: string };
  if (body.status !== "success" || body.data?.resultType !== "vector") throw new ApparateError("report-prometheus", `Prometheus refused ${query}: ${body.error ?? "not a vector"}`, query);
  return body.data.result ?? [];
}

export async function report(argv: readonly string[], out: NodeJS.WritableStream): Promise<number> {
  const { values } = parseCommandArgs(reportSpec, argv);
  const top = Number(values.top);
  if (!Number.isInteger(top) || top < 0 || top > 1000) throw new UsageError("report", `--top: ${JSON.stringify(values.top)} is not a whole number from 0 to 1000`);
  const timeout = Number(values["timeout-seconds"]);
  if (!(timeout > 0 && timeout <= 600)) throw new UsageError("report", `--timeout-seconds: ${JSON.stringify(values["timeout-seconds"])} is not a number of seconds from 1 to 600`);
  const range = values.range as string;
  if (!/^(\d+(ms|s|m|h|d|w|y))+$/.test(range)) throw new UsageError("report", `--range: ${JSON.stringify(range)} is not a Prometheus duration (e.g. 30m, 6h, 7d)`);
  const promFlag = values["from-prometheus"] as string | undefined;
  let r: Report;
  if (promFlag !== undefined) {
    const base = baseUrl("from-prometheus", promFlag);
    const q = prometheusQueries(range);
    const [p50, p90, pods] = await Promise.all([promQuery(base, q.p50, timeout * 1000), promQuery(base, q.p90, timeout * 1000), promQuery(base, q.pods, timeout * 1000)]);
    r = reportFromPrometheus({ p50, p90, pods }, `Prometheus ${base.origin}, last ${range}`);
  } else {
    const base = baseUrl("url", values.url as string);
    const w = (await getJson(new URL(STARTS_PATH, base).href, timeout * 1000)) as Partial<StartsWindow>;
    if (!Array.isArray(w.starts)) throw new ApparateError("report-json", `${base.origin}${STARTS_PATH} is not an observer window`, w);
    r = reportFromWindow(w.starts, `webhook ${w.identity ?? base.host}, last ${w.starts.length} pod starts`, top);
    if (w.leader === false) {
      r.notes.push(`this replica does not hold the observer Lease${w.holder ? ` (${w.holder} does)` : ""}: ask that replica, or use --from-prometheus`);
    }
  }
  out.write(values.json ? `${JSON.stringify(r, null, 2)}\n` : renderReport(r));
  return 0;
}
