// Load generator, run in its own process so it never shares an event loop with the
// server it measures. Modes: closed-loop throughput (fixed concurrency, fixed time)
// and open-loop fixed rate (latency percentiles at N requests/s).
import { readFileSync } from "node:fs";
import { Pool } from "undici";

interface Args { url: string; ca: string; body: string; mode: "throughput" | "rate"; seconds: number; concurrency: number; rate: number; warmupSeconds?: number; gate?: boolean }
const args = JSON.parse(process.argv[2]!) as Args;
const body = readFileSync(args.body, "utf8");
const u = new URL(args.url);
const pool = new Pool(u.origin, { connections: args.concurrency, pipelining: 1, connect: { ca: readFileSync(args.ca, "utf8"), servername: "localhost" } });

async function one(): Promise<number> {
  const t0 = performance.now();
  const r = await pool.request({ path: u.pathname, method: "POST", body, headers: { "content-type": "application/json" } });
  await r.body.text();
  if (r.statusCode !== 200) throw new Error(`HTTP ${r.statusCode}`);
  return performance.now() - t0;
}

function pct(sorted: number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))] ?? NaN;
}

async function main() {
  // Warm-up: connections, JIT, caches (0 when the caller runs its own warm-up round).
  const warmEnd = Date.now() + (args.warmupSeconds ?? 1) * 1000;
  let warmupRequests = 0;
  do { await Promise.all(Array.from({ length: args.concurrency }, one)); warmupRequests += args.concurrency; } while (Date.now() < warmEnd);
  if (args.gate) {
    // Connections are open: the driver reads the server's CPU time now, then says go.
    await new Promise<void>((go) => { process.once("message", () => go()); process.send!({ warm: warmupRequests }); });
  }
  const lat: number[] = [];
  let errors = 0;
  const end = Date.now() + args.seconds * 1000;
  if (args.mode === "throughput") {
    await Promise.all(Array.from({ length: args.concurrency }, async () => {
      while (Date.now() < end) { try { lat.push(await one()); } catch { errors++; } }
    }));
    process.stdout.write(JSON.stringify({ requests: lat.length, warmupRequests, errors, rps: lat.length / args.seconds }));
  } else {
    // Open loop: requests are sent on schedule whether or not earlier ones returned.
    const interval = 1000 / args.rate;
    const total = Math.floor(args.seconds * args.rate);
    const start = performance.now();
    const pending: Promise<void>[] = [];
    for (let i = 0; i < total; i++) {
      const due = start + i * interval;
      const wait = due - performance.now();
      if (wait > 1) await new Promise((r) => setTimeout(r, wait));
      pending.push(one().then((ms) => { lat.push(ms); }, () => { errors++; }));
    }
    await Promise.all(pending);
    const achieved = lat.length / ((performance.now() - start) / 1000);
    lat.sort((a, b) => a - b);
    process.stdout.write(JSON.stringify({ requests: lat.length, warmupRequests, errors, achievedRps: achieved, p50: pct(lat, 50), p90: pct(lat, 90), p99: pct(lat, 99), max: lat[lat.length - 1] }));
  }
  await pool.close();
  if (args.gate) process.disconnect();
}
void main();
