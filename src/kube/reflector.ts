// A list-and-watch that keeps no objects: each one is handed to a sink that keeps
// what it needs (a name, a compact record) and drops the rest. client-node's
// ListWatch keeps every object it has seen and lists in one request, so a cluster's
// pods (100,000 of them, several KiB each) would be held whole and arrive as one
// response; here the list is paged (limit/continue, as client-go's reflector does)
// and nothing is kept. With metadataOnly, the API server sends only metadata
// (PartialObjectMetadata, as client-go's metadata informers ask for it).
import { type KubeConfig, type KubernetesListObject, type KubernetesObject, Watch } from "@kubernetes/client-node";
import type { Logger } from "../observability/logger.js";
import { apiStatus } from "./status.js";

/** What the API server is asked for when only metadata is wanted (client-go's metadata client). */
export const ACCEPT_METADATA_LIST = "application/json;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1,application/json";
export const ACCEPT_METADATA_WATCH = "application/json;as=PartialObjectMetadata;g=meta.k8s.io;v=v1,application/json";

export interface ReflectorSink<T> {
  /** A full list begins: whatever the sink holds may be gone; the list re-sends the rest. */
  reset(): void;
  upsert(object: T): void;
  remove(object: T): void;
}

export interface ListPage { limit: number; _continue?: string }

export interface ReflectorOptions<T extends KubernetesObject> {
  name: string;
  /** The collection's path, for the watch (e.g. /api/v1/pods). */
  path: string;
  /** One page of the list, with the same selectors as the watch. */
  list(page: ListPage): Promise<KubernetesListObject<T>>;
  labelSelector?: string;
  fieldSelector?: string;
  /** Ask for PartialObjectMetadata on the watch (the list function asks for it itself). */
  metadataOnly?: boolean;
  pageSize?: number;
  maxBackoffMs?: number;
}

export interface Reflector {
  readonly name: string;
  /** The first full list has been handed to the sink (and no relist is under way). */
  synced(): boolean;
  connected(): boolean;
  stop(): void;
}

/** A KubeConfig whose fetches ask for `accept` (client-node's Watch sets no Accept header of its own). */
function accepting(kc: KubeConfig, accept: string): KubeConfig {
  return {
    getCurrentCluster: () => kc.getCurrentCluster(),
    applyToFetchOptions: (opts: { headers?: Record<string, string> }) => kc.applyToFetchOptions({ ...opts, headers: { ...opts.headers, Accept: accept } }),
  } as unknown as KubeConfig;
}

const sleep = (ms: number) => new Promise<void>((r) => { const t = setTimeout(r, ms); t.unref?.(); });

export function startReflector<T extends KubernetesObject>(kc: KubeConfig, sink: ReflectorSink<T>, logger: Logger, opts: ReflectorOptions<T>): Reflector {
  const watch = new Watch(opts.metadataOnly ? accepting(kc, ACCEPT_METADATA_WATCH) : kc);
  const pageSize = opts.pageSize ?? 500;
  const maxBackoff = opts.maxBackoffMs ?? 30_000;
  let stopped = false;
  let synced = false;
  let connected = false;
  let abort: AbortController | undefined;
  let wake: (() => void) | undefined;

  /** Every page, into the sink; returns the list's resourceVersion. */
  const listAll = async (): Promise<string> => {
    synced = false;
    sink.reset();
    let cont: string | undefined;
    let rv = "";
    do {
      const page = await opts.list({ limit: pageSize, ...(cont ? { _continue: cont } : {}) });
      if (stopped) return rv;
      rv ||= page.metadata?.resourceVersion ?? "";
      for (const o of page.items) sink.upsert(o);
      cont = page.metadata?._continue || undefined;
    } while (cont);
    return rv;
  };

  /** One watch connection from `rv`; resolves with the last resourceVersion seen, or "gone" on 410. */
  const watchOnce = (rv: string): Promise<{ rv: string; gone: boolean; err?: unknown }> => new Promise((resolve) => {
    let last = rv;
    let gone = false;
    const query: Record<string, string | number | boolean> = {
      resourceVersion: rv, allowWatchBookmarks: true,
      // Renewed every 5-10 minutes, as client-go does, so that a silently dead connection does not last.
      timeoutSeconds: 300 + Math.floor(Math.random() * 300),
      ...(opts.labelSelector ? { labelSelector: opts.labelSelector } : {}),
      ...(opts.fieldSelector ? { fieldSelector: opts.fieldSelector } : {}),
    };
    void watch.watch(opts.path, query, (type, object: T & { code?: number }) => {
      const version = object?.metadata?.resourceVersion;
      switch (type) {
        case "ADDED": case "MODIFIED": sink.upsert(object); break;
        case "DELETED": sink.remove(object); break;
        case "BOOKMARK": break;
        case "ERROR": if (object?.code === 410) gone = true; return;
        default: return;
      }
      if (version) last = version;
    }, (err) => resolve({ rv: last, gone, ...(err ? { err } : {}) })).then((c) => {
      abort = c;
      if (stopped) c.abort();
      else connected = true;
    });
  });

  const run = async () => {
    let backoff = 500;
    const pause = async () => {
      await new Promise<void>((r) => { wake = r; void sleep(backoff).then(r); });
      wake = undefined;
      backoff = Math.min(maxBackoff, backoff * 2);
    };
    while (!stopped) {
      let rv: string;
      try {
        rv = await listAll();
      } catch (err) {
        connected = false;
        if (stopped) return;
        // A continue token the server no longer knows (410) means: list again from the start.
        logger.warn({ reflector: opts.name, err, status: apiStatus(err) }, "list failed; retrying");
        await pause();
        continue;
      }
      if (stopped) return;
      synced = true;
      connected = true;
      backoff = 500;
      for (;;) {
        const r = await watchOnce(rv);
        abort = undefined;
        if (stopped) return;
        if (r.gone) { logger.info({ reflector: opts.name }, "watch expired (410); listing again"); break; }
        if (r.err) {
          connected = false;
          logger.warn({ reflector: opts.name, err: r.err }, "watch failed; watching again");
          await pause();
          if (stopped) return;
        }
        rv = r.rv;
      }
    }
  };
  void run();

  return {
    name: opts.name,
    synced: () => synced,
    connected: () => connected,
    stop: () => { stopped = true; synced = false; abort?.abort(); wake?.(); },
  };
}
