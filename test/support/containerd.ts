// A private containerd for tests: its own root, state and socket under a temp dir,
// started from a config file, restartable (as the node agent restarts it).
import { spawn, execFile, type ChildProcess } from "node:child_process";
import { existsSync, mkdirSync } from "node:fs";
import { join } from "node:path";
import { promisify } from "node:util";
import type { ContainerRuntime } from "../../src/nodeagent/runtime.js";
import { HostContainerd } from "../../src/nodeagent/runtime.js";

export const run = promisify(execFile);

export class TestContainerd implements ContainerRuntime {
  private child?: ChildProcess;
  restarts = 0;
  readonly socket: string;
  private readonly host = new HostContainerd({ hostPid: false });
  constructor(readonly dir: string, readonly configPath: string) {
    this.socket = join(dir, "containerd.sock");
    mkdirSync(dir, { recursive: true });
  }
  majorVersion() { return this.host.majorVersion(); }
  validate(p: string) { return this.host.validate(p); }

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
