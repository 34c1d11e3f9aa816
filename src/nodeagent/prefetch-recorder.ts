// Learns a prefetch list on a node: runs apparate-prefetch-recorder (src/nodeagent/recorder)
// on the lazy layer mounts of the stargz snapshotter while a workload starts, and returns the
// files it opened, in first-open order, once each: the list `apparate convert --prefetch` takes.
import { spawn } from "node:child_process";
import { createInterface } from "node:readline";
import { ApparateError } from "../errors.js";

export const RECORDER_BINARY = "/opt/apparate/bin/apparate-prefetch-recorder";
/** containerd-stargz-grpc's --root as the node agent installs it (nodeAgent snapshotterRoot); it mounts each lazy layer at <root>/snapshotter/snapshots/<id>/fs. */
export const STARGZ_ROOT = "/var/lib/apparate-stargz";

export class PrefetchRecorderError extends ApparateError {
  constructor(message: string) {
    super("prefetch-recorder", message);
  }
}

/** Unescapes a mountinfo field (space, tab, newline and backslash are written as \ooo). */
function unescapeMountField(s: string): string {
  return s.replace(/\\([0-7]{3})/g, (_m, o: string) => String.fromCharCode(Number.parseInt(o, 8)));
}

/**
 * The snapshotter's lazy layer mounts in a /proc/self/mountinfo text: FUSE filesystems
 * mounted at <root>/snapshots/<id>/fs. Pure, so the parsing is tested on real lines.
 */
export function lazyLayerMounts(mountinfo: string, snapshotterRoot: string): string[] {
  const prefix = `${snapshotterRoot.replace(/\/+$/, "")}/snapshotter/snapshots/`;
  const out: string[] = [];
  for (const line of mountinfo.split("\n")) {
    const fields = line.split(" ");
    const sep = fields.indexOf("-");
    if (sep < 0 || fields.length < sep + 2) continue;
    const mountPoint = unescapeMountField(fields[4] ?? "");
    const fsType = fields[sep + 1] ?? "";
    if (!fsType.startsWith("fuse")) continue;
    if (!mountPoint.startsWith(prefix)) continue;
    const rest = mountPoint.slice(prefix.length);
    if (!/^[^/]+\/fs$/.test(rest)) continue;
    out.push(mountPoint);
  }
  return out;
}

export interface RecordingOptions {
  /** Paths whose filesystems are watched (the lazy layer mounts). */
  paths: string[];
  /** The window: stop after this many seconds. */
  seconds: number;
  /** Stop after this many distinct files (0: no limit). */
  max?: number;
  binary?: string;
}

export interface Recording {
  /** The files opened so far when the recorder stops (window over, max reached, or stop()). */
  readonly files: Promise<string[]>;
  /** Ends the window now. */
  stop(): Promise<string[]>;
}

/** Starts the recorder; resolves once every mark is in place, so that a workload started afterwards is seen from its first open. */
export async function startRecording(o: RecordingOptions): Promise<Recording> {
  if (o.paths.length === 0) throw new PrefetchRecorderError("no lazy layer mounts to watch: is the image pulled through the stargz snapshotter?");
  const args = ["-seconds", String(o.seconds), "-max", String(o.max ?? 0), ...o.paths];
  const child = spawn(o.binary ?? RECORDER_BINARY, args, { stdio: ["ignore", "pipe", "pipe"] });
  const files: string[] = [];
  createInterface({ input: child.stdout }).on("line", (l) => { if (l) files.push(l); });
  let stderr = "";
  const ready = new Promise<void>((resolve, reject) => {
    child.stderr.on("data", (c: Buffer) => {
      stderr += c.toString();
      if (stderr.length > 4096) stderr = stderr.slice(-4096);
      if (/^ready$/m.test(stderr)) resolve();
    });
    child.on("error", (e) => reject(new PrefetchRecorderError(`cannot run ${o.binary ?? RECORDER_BINARY}: ${e.message}`)));
    child.on("exit", (code) => reject(new PrefetchRecorderError(`the recorder exited (${code}) before it was ready: ${stderr.trim()}`)));
  });
  const done = new Promise<string[]>((resolve, reject) => {
    child.on("close", (code) => {
      if (code === 0) resolve(files);
      else reject(new PrefetchRecorderError(`the recorder exited (${code}): ${stderr.trim()}`));
    });
  });
  done.catch(() => undefined);
  await ready;
  return {
    files: done,
    stop: () => { child.kill("SIGTERM"); return done; },
  };
}
