// Admission cost, measured fairly (issue 19). The baseline answers the same request
// with the same response bytes and does no work; both servers run as child processes
// pinned to one CPU (their CPU time is their own), the load client on the other.
// The main figure is server CPU per review at a fixed 3,000 reviews/s (open loop, so
// neither server pays for waking a client that waits on it): a discarded warm-up
// round, then alternating rounds, medians. Closed-loop throughput and latency at a
// fixed 1,000 reviews/s are reported beside it.
//
//   node --import tsx test/bench/admission-cost.ts   (standalone: merges into bench/results.*)
import { type ChildProcess, execFileSync, fork } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { cpus, tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { Agent, request } from "undici";
import { createCA, issueServing } from "../../src/tls/certificates.js";
import { pushImage, startRegistry } from "../support/registry.js";
import { review } from "../support/webhook.js";
import type { CpuReply, ServerArgs } from "./admission-server.js";
import { benchPod } from "./bench-pod.js";

const HERE = fileURLToPath(new URL(".", import.meta.url));
const PIN = cpus().length >= 2 && (() => { try { execFileSync("taskset", ["-V"], { stdio: "ignore" }); return true; } catch { return false; } })();

type Kind = "same-response" | "webhook" | "webhook-no-memo";

interface Server { kind: Kind; url: string; child: ChildProcess; cpu(): Promise<number>; stop(): Promise<void> }

function onMessage<T>(child: ChildProcess, pick: (m: unknown) => T | undefined): Promise<T> {
  return new Promise((resolve, reject) => {
    const exit = (code: number | null) => reject(new Error(`child exited (${code}) before answering`));
    const on = (m: unknown) => { const v = pick(m); if (v !== undefined) { child.off("message", on); child.off("exit", exit); resolve(v); } };
    child.on("message", on);
    child.once("exit", exit);
  });
}

async function startServer(kind: Kind, args: ServerArgs): Promise<Server> {
  const child = fork(join(HERE, "admission-server.ts"), [JSON.stringify(args)], { execArgv: ["--import", "tsx"], stdio: ["ignore", "inherit", "inherit", "ipc"] });
  const port = await onMessage(child, (m) => (m as { port?: number }).port);
  // Every thread of the server on CPU 0; the load client runs on CPU 1.
  if (PIN) execFileSync("taskset", ["-a", "-p", "-c", "0", String(child.pid)], { stdio: "ignore" });
  return {
    kind, child, url: `https://127.0.0.1:${port}/mutate`,
    cpu: async () => {
      const p = onMessage(child, (m) => (m as { cpu?: CpuReply }).cpu);
      child.send({ cmd: "cpu" });
      const c = await p;
      return c.user + c.system;
    },
    stop: async () => { const done = new Promise((r) => child.once("exit", r)); child.send({ cmd: "stop" }); await done; },
  };
}

interface Load { url: string; ca: string; body: string; mode: "throughput" | "rate"; seconds: number; concurrency: number; rate: number }
export interface Round { requests: number; errors: number; cpuUsPerReview: number; achievedRps?: number; rps?: number; p50?: number; p99?: number; max?: number }

/** One round: the client opens its connections, the server's CPU is read, the load runs, the CPU is read again. */
async function round(server: Server, load: Omit<Load, "url">): Promise<Round> {
  const client = fork(join(HERE, "load-client.ts"), [JSON.stringify({ ...load, url: server.url, warmupSeconds: 0, gate: true })], {
    execArgv: ["--import", "tsx"], stdio: ["ignore", "pipe", "inherit", "ipc"],
  });
  let out = "";
  client.stdout!.on("data", (d: Buffer) => { out += d.toString(); });
  const exited = new Promise<number | null>((r) => client.once("exit", r));
  await onMessage(client, (m) => (m as { warm?: number }).warm);
  if (PIN) execFileSync("taskset", ["-a", "-p", "-c", "1", String(client.pid)], { stdio: "ignore" });
  const c0 = await server.cpu();
  client.send({ go: true });
  const code = await exited;
  const c1 = await server.cpu();
  if (code !== 0) throw new Error(`load client exited ${code}`);
  const r = JSON.parse(out) as Record<string, number>;
  const requests = r.requests! + r.errors!;
  return { ...r, requests: r.requests!, errors: r.errors!, cpuUsPerReview: (c1 - c0) / requests };
}

const median = (xs: number[]) => { const s = xs.slice().sort((a, b) => a - b); return s.length % 2 ? s[(s.length - 1) / 2]! : (s[s.length / 2 - 1]! + s[s.length / 2]!) / 2; };
const spread = (xs: number[]) => ({ min: Math.min(...xs), max: Math.max(...xs) });

/** Alternating rounds over the servers, after one discarded warm-up round each. */
async function alternate(servers: Server[], load: Omit<Load, "url">, rounds: number): Promise<Map<Kind, Round[]>> {
  for (const s of servers) await round(s, load);
  const out = new Map<Kind, Round[]>(servers.map((s) => [s.kind, []]));
  for (let i = 0; i < rounds; i++) {
    // Alternate the order too, so that neither server always runs right after the other.
    const order = i % 2 === 0 ? servers : servers.slice().reverse();
    for (const s of order) out.get(s.kind)!.push(await round(s, load));
  }
  return out;
}

async function post(url: string, ca: string, body: string): Promise<{ status: number; type: string; text: string }> {
  const dispatcher = new Agent({ connect: { ca, servername: "localhost" } });
  try {
    const r = await request(url, { method: "POST", body, headers: { "content-type": "application/json" }, dispatcher });
    return { status: r.statusCode, type: String(r.headers["content-type"]), text: await r.body.text() };
  } finally {
    await dispatcher.close();
  }
}

export interface AdmissionCost {
  json: Record<string, unknown>;
  rows: Array<[string, string, string, string]>;
}

export async function admissionCost(opts: { rounds?: number; seconds?: number } = {}): Promise<AdmissionCost> {
  const R = opts.rounds ?? 5;
  const S = opts.seconds ?? 4;
  const dir = mkdtempSync(join(tmpdir(), "apparate-admission-cost-"));
  const reg = await startRegistry();
  const servers: Server[] = [];
  try {
    for (const n of ["migrate", "web", "worker"]) await pushImage(reg.url, `shop/${n}`, "2.3.1-apparate", "oci-index");
    const config = { acceleration: { registries: [reg.host] }, registry: { plainHttp: [reg.host] }, rewrite: { registries: { "docker.io": "mirror.ccs.tencentyun.com" } } };
    const ca = createCA("bench CA", 1);
    const tls = issueServing(ca, ["localhost"], 1, Date.now(), ["127.0.0.1"]);
    const caFile = join(dir, "ca.pem");
    writeFileSync(caFile, ca.cert);
    const bodyFile = join(dir, "review.json");
    const body = JSON.stringify(review(benchPod(reg.host)));
    writeFileSync(bodyFile, body);

    const hook = await startServer("webhook", { kind: "webhook", tls, config });
    servers.push(hook);
    const noMemo = await startServer("webhook-no-memo", { kind: "webhook", tls, config, planMemo: false });
    servers.push(noMemo);
    const answer = await post(hook.url, ca.cert, body);
    const plain = await post(noMemo.url, ca.cert, body);
    if (answer.status !== 200 || !JSON.parse(answer.text).response?.patch) throw new Error(`webhook did not patch the benchmark pod: ${answer.text}`);
    if (plain.text !== answer.text) throw new Error("the webhook's answers with and without the plan memo differ");
    const responseFile = join(dir, "response.json");
    writeFileSync(responseFile, answer.text);
    const base = await startServer("same-response", { kind: "same-response", tls, responseFile });
    servers.unshift(base);
    const same = await post(base.url, ca.cert, body);
    // The baseline's claim to fairness: byte-for-byte the webhook's response, same headers that matter.
    if (same.text !== answer.text || same.type !== answer.type) throw new Error(`baseline response differs from the webhook's:\n${same.type} ${same.text}\n${answer.type} ${answer.text}`);

    const common = { ca: caFile, body: bodyFile, seconds: S };
    const fixed = await alternate(servers, { ...common, mode: "rate", rate: 3000, concurrency: 64 }, R);
    const at1000 = await alternate([base, hook], { ...common, mode: "rate", rate: 1000, concurrency: 64 }, 3);
    const closed = await alternate([base, hook], { ...common, mode: "throughput", rate: 0, concurrency: 32 }, 3);

    const cpuOf = (k: Kind) => fixed.get(k)!.map((r) => r.cpuUsPerReview);
    const webhookUs = median(cpuOf("webhook")), baselineUs = median(cpuOf("same-response")), noMemoUs = median(cpuOf("webhook-no-memo"));
    // Ratio per round pair too: its spread says how far one round can be trusted.
    const pairRatios = fixed.get("webhook")!.map((r, i) => r.cpuUsPerReview / fixed.get("same-response")![i]!.cpuUsPerReview);
    const cpuRatio = webhookUs / baselineUs;
    const p99s = at1000.get("webhook")!.map((r) => r.p99!);
    const baseP99s = at1000.get("same-response")!.map((r) => r.p99!);
    const rps = (k: Kind) => closed.get(k)!.map((r) => r.rps!);
    const closedCpu = (k: Kind) => closed.get(k)!.map((r) => r.cpuUsPerReview);
    const json = {
      fixedRate: {
        reviewsPerSecond: 3000, seconds: S, rounds: R,
        cpuRatio, webhookCpuUsPerReview: webhookUs, baselineCpuUsPerReview: baselineUs,
        webhookNoMemoCpuUsPerReview: noMemoUs, cpuRatioNoMemo: noMemoUs / baselineUs,
        pairRatioSpread: spread(pairRatios),
        webhookCpuUsSpread: spread(cpuOf("webhook")), baselineCpuUsSpread: spread(cpuOf("same-response")), webhookNoMemoCpuUsSpread: spread(cpuOf("webhook-no-memo")),
        perRound: Object.fromEntries([...fixed].map(([k, rs]) => [k, rs.map((r) => ({ cpuUs: r.cpuUsPerReview, achievedRps: r.achievedRps, errors: r.errors, p99: r.p99 }))])),
      },
      at1000rps: {
        webhookP99Ms: median(p99s), webhookP99Spread: spread(p99s), webhookP50Ms: median(at1000.get("webhook")!.map((r) => r.p50!)),
        baselineP99Ms: median(baseP99s), baselineP99Spread: spread(baseP99s),
        errors: [...at1000.values()].flat().reduce((a, r) => a + r.errors, 0),
      },
      closedLoop: {
        connections: 32, webhookRps: median(rps("webhook")), baselineRps: median(rps("same-response")),
        ratio: median(rps("webhook")) / median(rps("same-response")),
        webhookCpuUsPerReview: median(closedCpu("webhook")), baselineCpuUsPerReview: median(closedCpu("same-response")),
        webhookRpsSpread: spread(rps("webhook")), baselineRpsSpread: spread(rps("same-response")),
      },
      responseBytes: answer.text.length, pinned: PIN,
      pod: "3 containers + 1 init container, labels, env; the same review every time (a Deployment's pods differ only in name and uid)",
    };
    const f = (n: number, d = 0) => n.toFixed(d);
    const rows: AdmissionCost["rows"] = [
      ["admission CPU per review at a fixed 3,000 reviews/s (median of " + R + ", alternating)", `${f(webhookUs, 1)} µs (rounds ${f(json.fixedRate.webhookCpuUsSpread.min, 1)}–${f(json.fixedRate.webhookCpuUsSpread.max, 1)}); plan memo off: ${f(noMemoUs, 1)} µs`, `${f(baselineUs, 1)} µs (rounds ${f(json.fixedRate.baselineCpuUsSpread.min, 1)}–${f(json.fixedRate.baselineCpuUsSpread.max, 1)}), same response bytes, no work`, `cpuRatio ${f(cpuRatio, 2)} ≤ 1.5 (per-round ${f(json.fixedRate.pairRatioSpread.min, 2)}–${f(json.fixedRate.pairRatioSpread.max, 2)}; memo off ${f(noMemoUs / baselineUs, 2)})`],
      ["admission latency at 1,000 reviews/s (median of 3)", `p50 ${f(json.at1000rps.webhookP50Ms, 2)} ms, p99 ${f(json.at1000rps.webhookP99Ms, 2)} ms (rounds ${f(json.at1000rps.webhookP99Spread.min, 2)}–${f(json.at1000rps.webhookP99Spread.max, 2)})`, `p99 ${f(json.at1000rps.baselineP99Ms, 2)} ms (same-response)`, "p99 ≤ 2 ms"],
      ["admission throughput, closed loop, 32 connections (median of 3)", `${f(json.closedLoop.webhookRps)} reviews/s (${f(json.closedLoop.webhookCpuUsPerReview, 1)} µs CPU each)`, `${f(json.closedLoop.baselineRps)} reviews/s (${f(json.closedLoop.baselineCpuUsPerReview, 1)} µs), same-response`, `ratio ${f(json.closedLoop.ratio, 2)} (reported; the client's wake-ups count against the slower server)`],
    ];
    for (const r of rows) console.log(`${r[0]}: ${r[1]} (baseline ${r[2]}; target ${r[3]})`);
    return { json, rows };
  } finally {
    for (const s of servers) await s.stop().catch(() => undefined);
    await reg.stop();
  }
}

export const METHOD = "Admission cost: the webhook and a same-response baseline (same fastify options, same request, byte-identical response, no work) each run as a child process pinned to CPU 0, the load client (`test/bench/load-client.ts`) on CPU 1; server CPU per review is the child's process.cpuUsage() over the requests of a round, read after the client has opened its connections. At a fixed 3,000 reviews/s (open loop): one discarded warm-up round per server, then alternating rounds, medians; cpuRatio = webhook µs ÷ baseline µs. Latency at a fixed 1,000 reviews/s and closed-loop throughput (32 connections) are reported beside it.";

/** Standalone: replaces the admission figures in bench/results.json and bench/results.md. */
async function standalone(): Promise<void> {
  const quick = process.env.BENCH_QUICK === "1";
  const r = await admissionCost(quick ? { rounds: 1, seconds: 2 } : {});
  const jsonPath = "bench/results.json";
  const prev = existsSync(jsonPath) ? JSON.parse(readFileSync(jsonPath, "utf8")) as { date?: string; results?: Record<string, unknown> } : {};
  const results = { ...(prev.results ?? {}), admission: { ...((prev.results?.admission as object) ?? {}), ...r.json } };
  writeFileSync(jsonPath, JSON.stringify({ ...prev, date: new Date().toISOString(), results }, null, 2) + "\n");
  const mdPath = "bench/results.md";
  const md = existsSync(mdPath) ? readFileSync(mdPath, "utf8").split("\n") : ["| benchmark | apparate | baseline | target |", "|---|---|---|---|"];
  const kept = md.filter((l) => !/^\| admission (throughput|capacity|latency|CPU per review|handler)/.test(l));
  const at = kept.findIndex((l) => l.startsWith("|---"));
  kept.splice(at + 1, 0, ...r.rows.map((x) => `| ${x.join(" | ")} |`));
  if (!kept.some((l) => l.startsWith("Admission cost:"))) kept.push(METHOD, "");
  writeFileSync(mdPath, kept.join("\n"));
  console.log("wrote bench/results.json and bench/results.md");
  process.exit(0);
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) void standalone().catch((err: unknown) => { console.error(err); process.exit(1); });
