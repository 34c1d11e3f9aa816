// An informer that keeps itself alive: @kubernetes/client-node's ListWatch stops on
// a watch error; this restarts it with capped back-off and reports whether the
// cache has synced once (it keeps serving the last data while disconnected).
import { type KubeConfig, ListWatch, Watch, type KubernetesObject, type ListPromise } from "@kubernetes/client-node";
import type { Logger } from "../observability/logger.js";

export interface ManagedInformer<T extends KubernetesObject> {
  readonly informer: ListWatch<T>;
  readonly name: string;
  synced(): boolean;
  /** Resolves once the first list has been loaded (or after timeoutMs, with false). */
  whenSynced(timeoutMs: number): Promise<boolean>;
  connected(): boolean;
  stop(): void;
}

export function startInformer<T extends KubernetesObject>(
  kc: KubeConfig, name: string, path: string, list: ListPromise<T>, logger: Logger,
  opts: { labelSelector?: string; fieldSelector?: string; onSetup?: (i: ListWatch<T>) => void; maxBackoffMs?: number } = {},
): ManagedInformer<T> {
  const informer = new ListWatch<T>(path, new Watch(kc), list, false, opts.labelSelector, opts.fieldSelector);
  opts.onSetup?.(informer);
  let synced = false;
  let connected = false;
  let stopped = false;
  let backoff = 500;
  let timer: NodeJS.Timeout | undefined;
  const max = opts.maxBackoffMs ?? 30_000;
  const start = () => {
    if (stopped) return;
    informer.start().then(
      () => { synced = true; connected = true; backoff = 500; },
      (err: unknown) => { connected = false; logger.warn({ informer: name, err }, "informer list failed"); schedule(); },
    );
  };
  const schedule = () => {
    if (stopped || timer) return;
    timer = setTimeout(() => { timer = undefined; start(); }, backoff);
    timer.unref?.();
    backoff = Math.min(max, backoff * 2);
  };
  informer.on("error", (err) => {
    connected = false;
    logger.warn({ informer: name, err }, "informer watch failed; restarting");
    schedule();
  });
  informer.on("connect", () => { connected = true; });
  start();
  return {
    informer, name,
    synced: () => synced,
    whenSynced: async (timeoutMs) => {
      const end = Date.now() + timeoutMs;
      while (!synced && Date.now() < end) await new Promise((r) => setTimeout(r, 20));
      return synced;
    },
    connected: () => connected,
    stop: () => { stopped = true; if (timer) clearTimeout(timer); void informer.stop(); },
  };
}
