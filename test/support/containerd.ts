// A private containerd for tests: its own root, state and socket under a temp dir,
// started from a config file, restartable (as the node agent restarts it). Each of the
// containerd versions users run: Debian's 1.6 (the system's), 1.7 (trixie) and 2.1
// (unstable), the newer two unpacked by test/support/install-containerd.sh.
import { spawn, execFile, execFileSync, type ChildProcess } from "node:child_process";
import { existsSync, mkdirSync, writeFileSync } from "node:fs";
import { join, resolve } from "node:path";
import { promisify } from "node:util";
import { renderConfig, type Table } from "../../src/nodeagent/containerd-config.js";
import type { ContainerRuntime } from "../../src/nodeagent/runtime.js";
import { HostContainerd } from "../../src/nodeagent/runtime.js";
import { pathFor } from "../../src/nodeagent/probe.js";
import { type CriStatus, criStatus } from "../../src/nodeagent/cri.js";
import { probeDocument } from "../../src/nodeagent/probe.js";
import { parse } from "smol-toml";

export const run = promisify(execFile);

/** A containerd release under test: its daemon binary (the shim it ships is beside it). */
export interface ContainerdBinary { version: string; binary: string }

/** Every containerd the node agent must work with, oldest first: the system's, trixie's, unstable's. */
const BINARIES = ["/usr/bin/containerd", resolve(".tmp/debs/containerd-1.7/usr/bin/containerd"), resolve(".tmp/debs/containerd-2/usr/bin/containerd")];

function release(binary: string): ContainerdBinary | undefined {
  if (!existsSync(binary)) return undefined;
  const m = /\bv?(\d+\.\d+\.\d+)/.exec(execFileSync(binary, ["--version"], { encoding: "utf8" }));
  return { version: m?.[1] ?? "unknown", binary };
}
export const SYSTEM_CONTAINERD: ContainerdBinary = { version: "system", binary: "containerd" };

/**
 * The releases this run covers: all that are installed (CI fails earlier when one is
 * missing), or those whose version starts with one of APPARATE_CONTAINERD (e.g. "2" or
 * "1.6,2.1") while iterating.
 */
export function containerds(): ContainerdBinary[] {
  const only = process.env.APPARATE_CONTAINERD?.split(",").map((v) => v.trim()).filter((v) => v !== "");
  return BINARIES.map(release).filter((c): c is ContainerdBinary => c !== undefined && (!only || only.some((o) => c.version.startsWith(o))));
}

/** The binary's `containerd config dump` of a config file (imports merged, migration applied). */
export async function configDumpOf(c: ContainerdBinary, configFile: string, exec: string[] = []): Promise<Table> {
  const args = [...exec, c.binary, "--config", configFile, "config", "dump"];
  const { stdout } = await run(args[0]!, args.slice(1), { maxBuffer: 16 << 20, env: { ...process.env, PATH: pathFor(c.binary) } });
  return parse(stdout) as Table;
}

export class TestContainerd implements ContainerRuntime {
  private child?: ChildProcess;
  restarts = 0;
  readonly socket: string;
  private readonly host: HostContainerd;
  constructor(readonly dir: string, readonly configPath: string, readonly release: ContainerdBinary = SYSTEM_CONTAINERD) {
    this.socket = join(dir, "containerd.sock");
    mkdirSync(dir, { recursive: true });
    this.host = new HostContainerd({ hostPid: false, socket: this.socket, probeDir: join(dir, "probe"), binary: release.binary });
  }
  majorVersion() { return this.host.majorVersion(); }
  probe(effective: Table) { return this.host.probe(effective); }
  criStatus() { return this.host.criStatus(); }
  configDump(doc: Table) { return this.host.configDump(doc); }

  async start(): Promise<void> {
    const child = spawn(this.release.binary, ["--config", this.configPath], { stdio: ["ignore", "ignore", "pipe"], env: { ...process.env, PATH: pathFor(this.release.binary) } });
    let err = "";
    child.stderr?.on("data", (d: Buffer) => { err = (err + d.toString()).slice(-4000); });
    this.child = child;
    for (let i = 0; i < 200; i++) {
      if (child.exitCode !== null) throw new Error(`containerd exited: ${err}`);
      if (existsSync(this.socket)) {
        try { await this.ctr(["version"]); return; } catch { /* not serving yet */ }
      }
      await new Promise((r) => setTimeout(r, 50));
    }
    throw new Error(`containerd did not start: ${err}`);
  }

  async stop(): Promise<void> {
    const c = this.child;
    if (!c || c.exitCode !== null) return;
    const done = new Promise((r) => c.once("exit", r));
    c.kill("SIGTERM");
    await Promise.race([done, new Promise((r) => setTimeout(r, 5000))]);
    if (c.exitCode === null) c.kill("SIGKILL");
  }

  async restart(): Promise<void> {
    this.restarts++;
    await this.stop();
    await this.start();
  }

  /** ctr-remote against this containerd (namespace "apparate-test"). */
  async ctr(args: string[], timeoutMs = 120_000): Promise<string> {
    const { stdout } = await run("ctr-remote", ["--address", this.socket, "--namespace", "apparate-test", ...args], { timeout: timeoutMs, maxBuffer: 16 << 20 });
    return stdout;
  }
}

/**
 * A real containerd (any release) that runs a node's config file as the live daemon would, but
 * beside everything else: the same probe rewrite (own root, state and sockets, no TCP
 * listeners) applied to whatever the live file says at each restart. For configs from
 * other projects whose paths (/var/lib/containerd, /run/containerd) are the machine's.
 */
export class SandboxedContainerd implements ContainerRuntime {
  private child?: ChildProcess;
  restarts = 0;
  log = "";
  private readonly probeHost: HostContainerd;
  private readonly exec: string[];
  /**
   * `etcDir` is bound onto /etc/containerd in a private mount namespace: the node's own files the config names.
   * `o.hostRoot`: instead, the node's etc, var and run (those it has) are laid read-only over the machine's in that
   * namespace, and with `o.keepImports` the live daemon reads the node's `imports` itself (the binary's own merge).
   */
  constructor(readonly dir: string, private readonly live: () => Table, etcDir?: string, readonly release: ContainerdBinary = SYSTEM_CONTAINERD, private readonly o: { hostRoot?: string; keepImports?: boolean } = {}) {
    mkdirSync(dir, { recursive: true });
    // The overlays' upper layers live on a tmpfs of the namespace: what containerd writes there (CRI creates /etc/cni) is thrown away.
    if (o.hostRoot) mkdirSync(join(dir, "overlay"), { recursive: true });
    this.exec = o.hostRoot
      ? ["unshare", "--mount", "--propagation", "private", "sh", "-c",
        'r="$0"; s="$1"; shift; mount -t tmpfs tmpfs "$s" || exit 1; for d in etc var run; do if [ -d "$r/$d" ]; then mkdir -p "$s/$d/u" "$s/$d/w" && mount -t overlay overlay -o "lowerdir=$r/$d:/$d,upperdir=$s/$d/u,workdir=$s/$d/w" "/$d" || exit 1; fi; done; exec "$@"',
        o.hostRoot, join(dir, "overlay")]
      : etcDir ? ["unshare", "--mount", "--propagation", "private", "sh", "-c", 'mount --bind "$0" /etc/containerd && exec "$@"', etcDir] : [];
    this.probeHost = new HostContainerd({ hostPid: false, probeDir: join(dir, "probe"), probeExec: this.exec, binary: release.binary });
  }
  get socket() { return join(this.dir, "live", "c.sock"); }
  majorVersion() { return this.probeHost.majorVersion(); }
  probe(effective: Table) { return this.probeHost.probe(effective); }
  configDump(doc: Table) { return this.probeHost.configDump(doc); }
  criStatus(): Promise<CriStatus> { return this.child && this.child.exitCode === null ? criStatus(this.socket) : Promise.resolve({ loaded: false, reason: "containerd is not running", unreachable: true }); }

  async start(): Promise<void> {
    const d = join(this.dir, "live");
    mkdirSync(d, { recursive: true });
    const live = this.live();
    const doc = probeDocument(live, d);
    if (this.o.keepImports && live.imports !== undefined) doc.imports = live.imports;
    writeFileSync(join(d, "config.toml"), renderConfig(doc));
    const args = [...this.exec, this.release.binary, "--config", join(d, "config.toml")];
    const child = spawn(args[0]!, args.slice(1), { stdio: ["ignore", "ignore", "pipe"], env: { ...process.env, PATH: pathFor(this.release.binary) } });
    child.stderr?.on("data", (b: Buffer) => { this.log = (this.log + b.toString()).slice(-20_000); });
    this.child = child;
    for (let i = 0; i < 200 && child.exitCode === null; i++) {
      if (existsSync(this.socket)) {
        const st = await criStatus(this.socket, 1000);
        if (st.loaded || !st.unreachable) return;
      }
      await new Promise((r) => setTimeout(r, 50));
    }
  }

  async stop(): Promise<void> {
    const c = this.child;
    if (!c || c.exitCode !== null || c.signalCode !== null) return;
    const done = new Promise((r) => c.once("exit", r));
    c.kill("SIGTERM");
    await Promise.race([done, new Promise((r) => setTimeout(r, 5000))]);
    if (c.exitCode === null && c.signalCode === null) { c.kill("SIGKILL"); await done; }
  }

  async restart(): Promise<void> {
    this.restarts++;
    await this.stop();
    await this.start();
  }
}
