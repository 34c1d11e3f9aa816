// `apparate record-prefetch IMAGE` on a node (kubectl exec into the node agent's pod): watches
// the stargz snapshotter's lazy layer mounts for a window while the workload starts, prints the
// files it opened, and publishes them as the repository's learned prefetch list (a ConfigMap the
// converter reads on the next conversion: src/kube/prefetch-list.ts).
//
// The layers must be mounted before the window opens (the image pulled through the snapshotter,
// e.g. by a first run of the workload); start (or restart) the workload on this node inside it.
import { readFileSync } from "node:fs";
import { KubeConfig } from "@kubernetes/client-node";
import { parseCommandArgs, UsageError } from "../cli/command.js";
import { parseReference, repositoryName } from "../image/reference.js";
import { PrefetchLists, prefetchConfigMapName } from "../kube/prefetch-list.js";
import { lazyLayerMounts, type Recording, startRecording } from "./prefetch-recorder.js";
import { recordPrefetchSpec } from "./record-prefetch-spec.js";


export interface RecordPrefetchOptions {
  seconds: number;
  max: number;
  snapshotterRoot: string;
  hostProc: string;
  recorder: string;
  /** Called once the recorder watches every layer: start the workload now. */
  onReady?: (mounts: number) => void;
}

/** Opens one window on every lazy layer mounted on the host; its files come in first-open order. */
export async function recordPrefetch(o: RecordPrefetchOptions): Promise<Recording> {
  const mounts = lazyLayerMounts(readFileSync(`${o.hostProc}/mountinfo`, "utf8"), o.snapshotterRoot);
  const recording = await startRecording({ binary: o.recorder, paths: mounts.map((m) => `${o.hostProc}/root${m}`), seconds: o.seconds, max: o.max });
  o.onReady?.(mounts.length);
  return recording;
}

function positiveNumber(v: string, flag: string, min: number): number {
  const n = Number(v);
  if (!Number.isFinite(n) || n < min) throw new UsageError("record-prefetch", `--${flag} must be a number ≥ ${min}, not ${JSON.stringify(v)}`);
  return n;
}

export async function recordPrefetchCommand(argv: readonly string[], out: NodeJS.WritableStream): Promise<number> {
  const { values, positionals } = parseCommandArgs(recordPrefetchSpec, argv);
  const image = positionals[0];
  if (!image) throw new UsageError("record-prefetch", "IMAGE is required");
  const repository = repositoryName(parseReference(image));
  const printOnly = Boolean(values["print-only"]);
  const namespace = (values.namespace as string | undefined) ?? process.env.POD_NAMESPACE;
  if (!printOnly && !namespace) throw new UsageError("record-prefetch", "--namespace (or $POD_NAMESPACE) is required to publish; or --print-only");
  const recording = await recordPrefetch({
    seconds: positiveNumber(values.seconds as string, "seconds", 0.1),
    max: Math.floor(positiveNumber(values.max as string, "max", 0)),
    snapshotterRoot: values["snapshotter-root"] as string,
    hostProc: values["host-proc"] as string,
    recorder: values.recorder as string,
    onReady: (n) => process.stderr.write(`recording the files opened in ${n} lazy layer mount(s) for ${values.seconds as string} s: start the workload on this node now\n`),
  });
  const files = await recording.files;
  for (const f of files) out.write(`${f}\n`);
  if (printOnly) return 0;
  if (files.length === 0) {
    process.stderr.write("no file was opened in the window: nothing published\n");
    return 1;
  }
  const kc = new KubeConfig();
  kc.loadFromDefault();
  const r = await new PrefetchLists(kc, namespace!).publish(repository, files, process.env.NODE_NAME);
  process.stderr.write(r === "created" ? `published ${files.length} paths for ${repository}\n` : `a list for ${repository} exists already and was kept: delete ConfigMap ${prefetchConfigMapName(repository)} to record again\n`);
  return r === "created" ? 0 : 1;
}
