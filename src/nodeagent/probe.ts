// Proof before the live file changes: a throw-away containerd started on the candidate
// config with its own root, state and sockets must load its CRI plugin. `containerd
// config dump` does not load plugins, so it passes configs CRI refuses (e.g. legacy
// `configs.tls` next to `config_path`); starting the daemon is the only faithful check.
import { spawn } from "node:child_process";
import { mkdirSync, rmSync, writeFileSync } from "node:fs";
import { dirname, isAbsolute, join } from "node:path";
import { ApparateError } from "../errors.js";
import { get, renderConfig, type Table, versionOf } from "./containerd-config.js";
import { waitForCri } from "./cri.js";

export class ProbeError extends ApparateError {}

/** PATH with the binary's own directory first, so containerd finds the shim it ships with. */
export function pathFor(binary: string, path = process.env.PATH ?? ""): string {
  return isAbsolute(binary) ? `${dirname(binary)}:${path}` : path;
}

// Plugins that would touch the live node's shared state (block devices, pools, the NRI
// socket) and that CRI does not need to load.
const PROBE_DISABLED = ["io.containerd.snapshotter.v1.devmapper", "io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.aufs", "io.containerd.nri.v1.nri"];

/**
 * The candidate (effective, imports already merged) rewritten to run beside the live
 * containerd: own root/state/sockets, no TCP listeners, no shared snapshotter roots
 * (a shared bolt file would block on the live daemon's lock). Pure.
 */
export function probeDocument(effective: Table, dir: string): Table {
  const doc = structuredClone(effective);
  delete doc.imports;
  doc.root = join(dir, "root");
  doc.state = join(dir, "state");
  doc.temp = "";
  doc.grpc = { ...(doc.grpc ?? {}), address: join(dir, "c.sock"), tcp_address: "" };
  doc.ttrpc = { ...(doc.ttrpc ?? {}), address: join(dir, "c.sock.ttrpc") };
  doc.debug = { ...(doc.debug ?? {}), address: "" };
  doc.metrics = { ...(doc.metrics ?? {}), address: "" };
  delete doc.cgroup;
  const v = versionOf(doc);
  const disabled = new Set<string>(Array.isArray(doc.disabled_plugins) ? doc.disabled_plugins : []);
  for (const p of PROBE_DISABLED) disabled.add(v === 1 ? p.split(".").pop()! : p);
  doc.disabled_plugins = [...disabled];
  doc.required_plugins = [];
  for (const [k, t] of Object.entries((doc.plugins ?? {}) as Table)) {
    if (t && typeof t === "object" && (k.includes("snapshotter") || ["overlayfs", "native"].includes(k))) delete t.root_path;
  }
  // CRI's stream server binds a TCP port; a fixed one is taken by the live daemon.
  const cri = get(doc, ["plugins", v === 1 ? "cri" : v === 2 ? "io.containerd.grpc.v1.cri" : "io.containerd.cri.v1.runtime"]) as Table | undefined;
  if (cri) { cri.stream_server_port = "0"; cri.stream_server_address = "127.0.0.1"; }
  const grpcCri = v === 3 ? (get(doc, ["plugins", "io.containerd.grpc.v1.cri"]) as Table | undefined) : undefined;
  if (grpcCri) { grpcCri.stream_server_port = "0"; grpcCri.stream_server_address = "127.0.0.1"; }
  return doc;
}

/** Which plugin the CRI Status comes from does not matter; the log line names the failure. */
function criFailure(log: string): string | undefined {
  // 1.x: `failed to load plugin io.containerd.grpc.v1.cri" error="..."`; 2.x: `failed to load plugin" error="..." id=io.containerd.cri.v1.runtime`.
  const m = /failed to load plugin io\.containerd\.(?:grpc\.v1\.cri|cri\.v1\.\w+)"? error="((?:[^"\\]|\\.)*)"/.exec(log)
    ?? /failed to load plugin" error="((?:[^"\\]|\\.)*)" id=io\.containerd\.(?:grpc\.v1\.cri|cri\.v1\.\w+)\b/.exec(log);
  return m?.[1]?.replace(/\\"/g, '"');
}

export interface ProbeOptions {
  /** The probe's directory as this process sees it. */
  dir: string;
  /** The same directory as containerd sees it (in the host's mount namespace). */
  dirOnHost: string;
  /** Command prefix that runs a host binary (e.g. nsenter -t 1 -m --), [] locally. */
  exec: string[];
  binary: string;
  timeoutMs?: number;
}

/** Starts containerd on the document, requires CRI to load, stops it. Throws ProbeError with containerd's reason. */
export async function probeCri(effective: Table, o: ProbeOptions): Promise<void> {
  rmSync(o.dir, { recursive: true, force: true });
  mkdirSync(o.dir, { recursive: true, mode: 0o700 });
  const doc = probeDocument(effective, o.dirOnHost);
  writeFileSync(join(o.dir, "config.toml"), renderConfig(doc), { mode: 0o600 });
  const args = [...o.exec, o.binary, "--config", join(o.dirOnHost, "config.toml")];
  const child = spawn(args[0]!, args.slice(1), { stdio: ["ignore", "ignore", "pipe"], env: { ...process.env, PATH: pathFor(o.binary) } });
  let log = "";
  child.stderr?.on("data", (d: Buffer) => { log = (log + d.toString()).slice(-64_000); });
  const exited = new Promise<void>((r) => child.once("exit", () => r()));
  child.once("error", (e) => { log += `\n${e.message}`; });
  try {
    const st = await waitForCri(join(o.dir, "c.sock"), o.timeoutMs ?? 30_000, () => child.exitCode === null && child.signalCode === null);
    if (st.loaded) return;
    const why = criFailure(log) ?? (child.exitCode !== null ? `containerd exited (${child.exitCode}): ${log.trim().split("\n").slice(-3).join(" | ").slice(0, 600)}` : st.reason);
    throw new ProbeError("cri-not-loaded", `containerd does not load its CRI plugin with the candidate config: ${why}`, why);
  } finally {
    if (child.exitCode === null && child.signalCode === null) {
      child.kill("SIGTERM");
      await Promise.race([exited, new Promise((r) => setTimeout(r, 5000))]);
      if (child.exitCode === null && child.signalCode === null) { child.kill("SIGKILL"); await exited; }
    }
    rmSync(o.dir, { recursive: true, force: true });
  }
}
