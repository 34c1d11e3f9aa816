// The node's container runtime as the agent drives it: version, a throw-away probe of
// a candidate config, restart, and what CRI really runs (CRI status). On a node the
// commands run in the host's namespaces (nsenter -t 1).
import { execFile } from "node:child_process";
import { mkdirSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { promisify } from "node:util";
import { ApparateError } from "../errors.js";
import { parseConfig, renderConfig, type Table } from "./containerd-config.js";
import { type CriStatus, criStatus } from "./cri.js";
import { pathFor, probeCri } from "./probe.js";

const run = promisify(execFile);

export class RuntimeError extends ApparateError {}

export interface ContainerRuntime {
  majorVersion(): Promise<number>;
  /** Starts a throw-away containerd on this (effective) config; fails unless CRI loads. */
  probe(effective: Table): Promise<void>;
  restart(): Promise<void>;
  /** What the running containerd's CRI uses (snapshotter, config_path), or why it is not there. */
  criStatus(): Promise<CriStatus>;
  /**
   * The config this containerd binary would run with the given document (`containerd
   * config dump`: imports merged, a 2.x binary's migration of an older schema applied).
   * Imports must be absolute paths.
   */
  configDump(doc: Table): Promise<Table>;
}


export function parseContainerdVersion(out: string): { major: number; minor: number } {
  // "containerd github.com/containerd/containerd 1.6.20~ds1 ..." or "containerd containerd.io v2.0.0 ..."
  const m = /\bv?(\d+)\.(\d+)\.\d+/.exec(out);
  if (!m) throw new RuntimeError("containerd-version", `cannot read containerd's version from ${JSON.stringify(out.slice(0, 120))}`, out);
  return { major: Number(m[1]), minor: Number(m[2]) };
}

export interface HostContainerdOptions {
  /** Run commands in PID 1's namespaces (the agent's pod on a node). */
  hostPid: boolean;
  /** Where the host's / is mounted in this process ("" on the host). */
  hostRoot?: string;
  binary?: string;
  /** containerd's socket (host path). */
  socket?: string;
  restartCommand?: string[];
  /** A host directory for the probe's root, state and socket. */
  probeDir?: string;
  /** Runs the probe's containerd through this prefix instead of nsenter (tests: a private mount namespace). */
  probeExec?: string[];
}

/** containerd on a node, through nsenter into PID 1's namespaces when hostPid is set. */
export class HostContainerd implements ContainerRuntime {
  constructor(private readonly opts: HostContainerdOptions) {}

  private cmd(args: string[]): [string, string[]] {
    return this.opts.hostPid ? ["nsenter", ["-t", "1", "-m", "-u", "-i", "-n", "-p", "--", ...args]] : [args[0]!, args.slice(1)];
  }
  private get binary() { return this.opts.binary ?? "containerd"; }
  private local(p: string) { return this.opts.hostRoot ? join(this.opts.hostRoot, p) : p; }

  async majorVersion(): Promise<number> {
    const [c, a] = this.cmd([this.binary, "--version"]);
    const { stdout } = await run(c, a);
    return parseContainerdVersion(stdout).major;
  }

  async probe(effective: Table): Promise<void> {
    const dir = this.opts.probeDir ?? "/var/lib/apparate-node/probe";
    // Mount namespace only: nsenter then execs containerd itself, so the signal that stops the probe reaches it.
    await probeCri(effective, { dir: this.local(dir), dirOnHost: dir, exec: this.probeExec, binary: this.binary });
  }

  private get probeExec() { return this.opts.probeExec ?? (this.opts.hostPid ? ["nsenter", "-t", "1", "-m", "--"] : []); }

  async configDump(doc: Table): Promise<Table> {
    const dir = join(this.opts.probeDir ?? "/var/lib/apparate-node/probe", "..", "dump");
    mkdirSync(this.local(dir), { recursive: true, mode: 0o700 });
    writeFileSync(this.local(join(dir, "config.toml")), renderConfig(doc), { mode: 0o600 });
    const args = [...this.probeExec, this.binary, "--config", join(dir, "config.toml"), "config", "dump"];
    try {
      const { stdout } = await run(args[0]!, args.slice(1), { maxBuffer: 16 << 20, timeout: 30_000, env: { ...process.env, PATH: pathFor(this.binary) } });
      return parseConfig(stdout, `${this.binary} config dump`);
    } catch (err) {
      const e = err as { stderr?: string; message: string; code?: string };
      if (e.code === "config-toml") throw err;
      throw new RuntimeError("containerd-config-dump", `containerd config dump of the candidate failed: ${(e.stderr || e.message).trim().slice(0, 400)}`, doc);
    } finally {
      rmSync(this.local(dir), { recursive: true, force: true });
    }
  }

  criStatus(): Promise<CriStatus> {
    return criStatus(this.local(this.opts.socket ?? "/run/containerd/containerd.sock"));
  }

  async restart(): Promise<void> {
    const [c, a] = this.cmd(this.opts.restartCommand ?? ["systemctl", "restart", "containerd"]);
    try {
      await run(c, a);
    } catch (err) {
      const e = err as { stderr?: string; message: string };
      throw new RuntimeError("containerd-restart", `restarting containerd (${(this.opts.restartCommand ?? ["systemctl", "restart", "containerd"]).join(" ")}) failed: ${(e.stderr || e.message).trim().slice(0, 300)}`, this.opts.restartCommand);
    }
  }
}
