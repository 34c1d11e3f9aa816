// RSS and heap of the webhook's lookup cache after 100,000 and 1,000,000 distinct
// images (issue 25 item 5; DESIGN "memory: RSS within the chart's limit after
// 1,000,000 distinct images"): the registry stack as `apparate serve` builds it from
// the default config (registry.cacheMaxEntries 100,000), its client answering
// "exists" without I/O, in a child process with the chart's --max-old-space-size=256.
// Figures after three full GCs, at each checkpoint.
//   parent: lookupMemoryBench()    child: this file with argv[2] === "child"
import { fork } from "node:child_process";
import { setMaxListeners } from "node:events";
import { fileURLToPath } from "node:url";

const MiB = 2 ** 20;
export interface LookupMemoryRow { lookups: number; cached: number; rssMiB: number; heapMiB: number }
export interface LookupMemory { before: { rssMiB: number; heapMiB: number }; rows: LookupMemoryRow[]; maxEntries: number }

export const LOOKUP_MEMORY_METHOD = "Lookup cache memory: createRegistryStack from the default config in a child process with --max-old-space-size=256 --expose-gc (through tsx), its client's checkManifest answering \"exists\" without I/O; distinct references registry.example.com/teamN/appI:vM-apparate looked up 1,000 at a time; RSS and heap after three full GCs.";

async function child(checkpoints: number[]): Promise<void> {
  const { compileConfig } = await import("../../src/config/config.js");
  const { Metrics } = await import("../../src/observability/metrics.js");
  const { createRegistryStack } = await import("../../src/registry/stack.js");
  const { parseReference } = await import("../../src/image/reference.js");
  const gc = () => { for (let i = 0; i < 3; i++) (globalThis as { gc?: () => void }).gc?.(); };
  const config = compileConfig({ acceleration: { registries: ["registry.example.com"] } });
  const stack = createRegistryStack(config, new Metrics());
  // A distinct answer per image (a digest of its own), as a registry's responses are.
  let n = 0;
  (stack.client as unknown as { checkManifest: () => Promise<unknown> }).checkManifest = async () =>
    ({ result: { kind: "exists", mediaType: "application/vnd.oci.image.index.v1+json", digest: `sha256:${(n++).toString(16).padStart(64, "0")}` }, registryFault: false });
  const sig = new AbortController().signal;
  setMaxListeners(0, sig);
  gc();
  const m0 = process.memoryUsage();
  const rows: LookupMemoryRow[] = [];
  let done = 0;
  for (const target of checkpoints) {
    for (; done < target; done += 1000) {
      await Promise.all(Array.from({ length: 1000 }, (_, j) => stack.resolver.lookup(parseReference(`registry.example.com/team${(done + j) % 97}/app${done + j}:v${(done + j) % 13}-apparate`), [], sig)));
    }
    gc();
    const m = process.memoryUsage();
    rows.push({ lookups: target, cached: stack.resolver.cacheSize, rssMiB: m.rss / MiB, heapMiB: m.heapUsed / MiB });
  }
  process.send!({ result: { before: { rssMiB: m0.rss / MiB, heapMiB: m0.heapUsed / MiB }, rows, maxEntries: config.registry.cacheMaxEntries } satisfies LookupMemory });
  await stack.close();
}

export async function lookupMemoryBench(checkpoints = [100_000, 1_000_000]): Promise<LookupMemory> {
  const c = fork(fileURLToPath(import.meta.url), ["child", JSON.stringify(checkpoints)], {
    execArgv: ["--import", "tsx", "--max-old-space-size=256", "--expose-gc"], stdio: ["ignore", "inherit", "inherit", "ipc"],
  });
  return new Promise((resolve, reject) => {
    c.on("message", (m: { result?: LookupMemory }) => { if (m.result) { resolve(m.result); c.kill(); } });
    c.once("exit", (code, signal) => reject(new Error(`lookup memory child exited (${code ?? signal}) before answering`)));
  });
}

if (process.argv[2] === "child") void child(JSON.parse(process.argv[3]!) as number[]);
