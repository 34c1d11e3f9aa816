// One webhook replica's observer in its own process (as `apparate serve` starts it:
// startObserverService), against the API stand-in, so that a test can kill it with
// SIGKILL and read its own heap and RSS. Started by observer-replicas.ts with the
// chart's heap flag (--max-old-space-size=256). Answers IPC messages:
//   { cmd: "status" }  -> { status: { leader, holder, synced, holding, starts, memory } }
//   { cmd: "stop" }    -> releases the Lease and exits
import { KubeConfig } from "@kubernetes/client-node";
import { compileConfig } from "../../src/config/config.js";
import { createLogger } from "../../src/observability/logger.js";
import { Metrics } from "../../src/observability/metrics.js";
import { startObserverService } from "../../src/observer/service.js";

export interface ReplicaArgs { server: string; identity: string; namespace: string; leaseDurationSeconds: number; graceSeconds: number; namespaces: string[] }
export interface ReplicaMemory { heapUsed: number; rss: number; external: number; arrayBuffers: number }
export interface ReplicaStatus {
  leader: boolean;
  holder?: string;
  synced: boolean;
  holding?: { watching: boolean; pods: number; podsWithPulls: number; labelledNodes: number };
  starts: string[];
  /** After a full GC: at start (modules loaded, no observer yet) and now. */
  baseline: ReplicaMemory;
  memory: ReplicaMemory;
}

const gc = () => { for (let i = 0; i < 3; i++) (globalThis as { gc?: () => void }).gc?.(); };
const mem = (): ReplicaMemory => { const m = process.memoryUsage(); return { heapUsed: m.heapUsed, rss: m.rss, external: m.external, arrayBuffers: m.arrayBuffers }; };

const args = JSON.parse(process.argv[2]!) as ReplicaArgs;
const kc = new KubeConfig();
kc.loadFromOptions({
  clusters: [{ name: "standin", server: args.server, skipTLSVerify: true }],
  // The identity as the token: the stand-in logs which replica made each request.
  users: [{ name: args.identity, token: args.identity }],
  contexts: [{ name: "standin", cluster: "standin", user: args.identity }],
  currentContext: "standin",
});
process.env.POD_NAME = args.identity;
process.env.POD_NAMESPACE = args.namespace;
const config = compileConfig({ namespaces: args.namespaces, observer: { leaseDurationSeconds: args.leaseDurationSeconds, graceSeconds: args.graceSeconds } });
const logger = createLogger({ level: "warn" });
gc();
const baseline = mem();
const metrics = new Metrics();
const svc = startObserverService(kc, config, logger, metrics, () => undefined);

process.on("message", (m: { cmd: string }) => {
  if (m.cmd === "status") {
    gc();
    const o = svc.observer as typeof svc.observer & { holding?: () => ReplicaStatus["holding"] };
    const holder = o.holder();
    const status: ReplicaStatus = {
      leader: o.leader(), ...(holder ? { holder } : {}), synced: o.synced(), ...(o.holding ? { holding: o.holding() } : {}),
      starts: [], baseline, memory: mem(),
    };
    process.send!({ status: { ...status, starts: windowUids() } });
  } else if (m.cmd === "stop") {
    void svc.stop().then(() => process.exit(0));
  }
});

/** The uids recorded so far, from the same window GET /observer/starts serves. */
function windowUids(): string[] {
  const recorder = (svc as unknown as { recorder?: { window(): Array<{ uid: string }> } }).recorder;
  return recorder ? recorder.window().map((s) => s.uid) : [];
}
process.send!({ ready: true });
