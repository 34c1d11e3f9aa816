// A private containerd for tests: its own root, state and socket under a temp dir,
// started from a config file, restartable (as the node agent restarts it).
import { spawn, execFile, type ChildProcess } from "node:child_process";
import { existsSync, mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { promisify } from "node:util";
import type { Table } from "../../src/nodeagent/containerd-config.js";
import type { ContainerRuntime } from "../../src/nodeagent/runtime.js";
import { HostContainerd } from "../../src/nodeagent/runtime.js";
import { type CriStatus, criStatus } from "../../src/nodeagent/cri.js";
import { probeDocument } from "../../src/nodeagent/probe.js";
import { stringify } from "smol-toml";

export const run = promisify(execFile);

export class TestContainerd implements ContainerRuntime {
  private child?: ChildProcess;
  restarts = 0;
  readonly socket: string;
  private readonly host: HostContainerd;
  constructor(readonly dir: string, readonly configPath: string) {
    this.socket = join(dir, "containerd.sock");
    mkdirSync(dir, { recursive: true });
    this.host = new HostContainerd({ hostPid: false, socket: this.socket, probeDir: join(dir, "probe") });
  }
  majorVersion() { return this.host.majorVersion(); }
  probe(effective: Table) { return this.host.probe(effective); }
  criStatus() { return this.host.criStatus(); }

  async start(): Promise<void> {
    const child = spawn("containerd", ["--config", this.configPath], { stdio: ["ignore", "ignore", "pipe"] });
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
 * A real containerd 1.6 that runs a node's config file as the live daemon would, but
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
  /** `etcDir` is bound onto /etc/containerd in a private mount namespace: the node's own files the config names. */
  constructor(readonly dir: string, private readonly live: () => Table, etcDir?: string) {
    mkdirSync(dir, { recursive: true });
    this.exec = etcDir ? ["unshare", "--mount", "--propagation", "private", "sh", "-c", 'mount --bind "$0" /etc/containerd && exec "$@"', etcDir] : [];
    this.probeHost = new HostContainerd({ hostPid: false, probeDir: join(dir, "probe"), probeExec: this.exec });
  }
  get socket() { return join(this.dir, "live", "c.sock"); }
  majorVersion() { return this.probeHost.majorVersion(); }
  probe(effective: Table) { return this.probeHost.probe(effective); }
  criStatus(): Promise<CriStatus> { return this.child && this.child.exitCode === null ? criStatus(this.socket) : Promise.resolve({ loaded: false, reason: "containerd is not running", unreachable: true }); }

  async start(): Promise<void> {
    const d = join(this.dir, "live");
    mkdirSync(d, { recursive: true });
    writeFileSync(join(d, "config.toml"), stringify(probeDocument(this.live(), d)));
    const args = [...this.exec, "containerd", "--config", join(d, "config.toml")];
    const child = spawn(args[0]!, args.slice(1), { stdio: ["ignore", "ignore", "pipe"] });
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
