// The help of `apparate record-prefetch`, apart from the command itself: the CLI lists every
// command's spec at start, and record-prefetch.ts loads the Kubernetes client (~70 MiB of
// RSS in every `apparate convert` when it was imported here).
import type { CommandSpec } from "../cli/command.js";
import { RECORDER_BINARY, STARGZ_ROOT } from "./prefetch-recorder.js";

export const recordPrefetchSpec: CommandSpec = {
  name: "record-prefetch",
  summary: "On a node: record the files a workload opens in its lazy layers at start, and publish them as the image's prefetch list for the converter.",
  usage: "IMAGE [options]",
  details: "Run in the node agent's pod (kubectl exec) after the image is pulled on that node, then start the workload there within --seconds. Publishes ConfigMap apparate-prefetch-<hash> (never overwrites one: delete it to record again).",
  positionals: { IMAGE: "the image (or its repository) the workload runs; the list is kept per repository" },
  options: {
    seconds: { type: "string", value: "N", default: "60", description: "length of the recording window" },
    max: { type: "string", value: "N", default: "0", description: "stop after this many files (0: no limit)" },
    "snapshotter-root": { type: "string", value: "DIR", default: STARGZ_ROOT, description: "the snapshotter's --root on the host (nodeAgent snapshotterRoot)" },
    "host-proc": { type: "string", value: "DIR", default: "/proc/1", description: "a host process's /proc entry: its mountinfo lists the layers, its root reaches them (hostPID)" },
    recorder: { type: "string", value: "FILE", default: RECORDER_BINARY, description: "the apparate-prefetch-recorder binary" },
    namespace: { type: "string", value: "NS", description: "where to publish the list (default: $POD_NAMESPACE)" },
    "print-only": { type: "boolean", default: false, description: "print the list, publish nothing" },
  },
  env: { POD_NAMESPACE: "see --namespace", NODE_NAME: "recorded on the ConfigMap" },
};
