// The node's container runtime as the agent drives it: version, config check,
// restart. On a node the commands run in the host's namespaces (nsenter -t 1).
import { execFile } from "node:child_process";
import { promisify } from "node:util";
import { ApparateError } from "../errors.js";

const run = promisify(execFile);

export class RuntimeError extends ApparateError {}

export interface ContainerRuntime {
  majorVersion(): Promise<number>;
  /** Fails when containerd would not load this config file. */
  validate(configPath: string): Promise<void>;
  restart(): Promise<void>;
}

export function parseContainerdVersion(out: string): { major: number; minor: number } {
  // "containerd github.com/containerd/containerd 1.6.20~ds1 ..." or "containerd containerd.io v2.0.0 ..."
  const m = /\bv?(\d+)\.(\d+)\.\d+/.exec(out);
  if (!m) throw new RuntimeError("containerd-version", `cannot read containerd's version from ${JSON.stringify(out.slice(0, 120))}`, out);
  return { major: Number(m[1]), minor: Number(m[2]) };
}

/** containerd on a node, through nsenter into PID 1's namespaces when hostPid is set. */
export class HostContainerd implements ContainerRuntime {
  constructor(private readonly opts: { hostPid: boolean; binary?: string; restartCommand?: string[] }) {}

  private cmd(args: string[]): [string, string[]] {
    return this.opts.hostPid ? ["nsenter", ["-t", "1", "-m", "-u", "-i", "-n", "-p", "--", ...args]] : [args[0]!, args.slice(1)];
  }

  async majorVersion(): Promise<number> {
    const [c, a] = this.cmd([this.opts.binary ?? "containerd", "--version"]);
    const { stdout } = await run(c, a);
    return parseContainerdVersion(stdout).major;
  }

  async validate(configPath: string): Promise<void> {
    const [c, a] = this.cmd([this.opts.binary ?? "containerd", "--config", configPath, "config", "dump"]);
    try {
      await run(c, a, { maxBuffer: 8 << 20 });
    } catch (err) {
      const e = err as { stderr?: string; message: string };
      throw new RuntimeError("containerd-config-invalid", `containerd rejects the candidate config: ${(e.stderr || e.message).trim().slice(0, 500)}`, configPath);
    }
  }

  async restart(): Promise<void> {
    const [c, a] = this.cmd(this.opts.restartCommand ?? ["systemctl", "restart", "containerd"]);
    await run(c, a);
  }
}
