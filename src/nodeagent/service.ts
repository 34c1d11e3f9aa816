// The snapshotter as a service. On nodes it is a systemd unit on the host, so its
// FUSE mounts outlive a restart of the DaemonSet pod; for tests and local runs the
// agent supervises it as a child process.
import { spawn, execFile, type ChildProcess } from "node:child_process";
import { createHash } from "node:crypto";
import { existsSync, mkdirSync, readFileSync, renameSync, rmSync, writeFileSync, chmodSync } from "node:fs";
import { dirname, join } from "node:path";
import { promisify } from "node:util";
import type { Logger } from "../observability/logger.js";

const run = promisify(execFile);
const sha256 = (b: Buffer) => createHash("sha256").update(b).digest("hex");

export interface SnapshotterService {
  /** Installs (idempotently) and makes sure it runs; `updated` when a new binary or unit was put in place. */
  ensureRunning(): Promise<{ updated: boolean } | undefined>;
  remove(): Promise<void>;
}

export const UNIT_NAME = "apparate-stargz.service";

export function renderUnit(o: { binary: string; socket: string; root: string; configDir: string; dockerConfigDir?: string }): string {
  return `# written by apparate node-agent
[Unit]
Description=apparate lazy-loading snapshotter (stargz-snapshotter)
Before=containerd.service
After=network.target

[Service]
Type=simple
${o.dockerConfigDir ? `Environment=DOCKER_CONFIG=${o.dockerConfigDir}\n` : ""}ExecStart=${o.binary} --address ${o.socket} --root ${o.root} --config ${join(o.configDir, "config.toml")} --log-level info
Restart=always
RestartSec=1
# FUSE mounts live as long as this service, not as long as the agent's pod.
KillMode=process

[Install]
WantedBy=multi-user.target
`;
}

/** stargz-snapshotter as a systemd unit on the host (through nsenter into PID 1). */
export class SystemdSnapshotter implements SnapshotterService {
  constructor(private readonly o: { hostRoot: string; sourceBinary: string; binary: string; socket: string; root: string; configDir: string; dockerConfigDir?: string }, private readonly logger: Logger) {}

  private host(p: string) { return join(this.o.hostRoot || "/", p); }
  private systemctl(...args: string[]) { return run("nsenter", ["-t", "1", "-m", "-u", "-i", "-n", "-p", "--", "systemctl", ...args]); }

  /**
   * Installs binary and unit only when their content differs (by hash), and restarts the
   * service when either changed: `enable --now` alone leaves an old binary running after
   * an upgrade.
   */
  async ensureRunning(): Promise<{ updated: boolean }> {
    const bin = this.host(this.o.binary);
    const unitFile = this.host(`/etc/systemd/system/${UNIT_NAME}`);
    const want = readFileSync(this.o.sourceBinary);
    const unit = renderUnit(this.o);
    const binChanged = !existsSync(bin) || sha256(readFileSync(bin)) !== sha256(want);
    const unitChanged = !existsSync(unitFile) || readFileSync(unitFile, "utf8") !== unit;
    if (binChanged) {
      mkdirSync(dirname(bin), { recursive: true });
      // A new inode by rename: the running binary is never written in place ("text file busy").
      writeFileSync(`${bin}.new`, want, { mode: 0o755 });
      chmodSync(`${bin}.new`, 0o755);
      renameSync(`${bin}.new`, bin);
    }
    if (unitChanged) {
      mkdirSync(dirname(unitFile), { recursive: true });
      writeFileSync(unitFile, unit);
      await this.systemctl("daemon-reload");
    }
    if (binChanged || unitChanged) {
      this.logger.info({ binary: binChanged, unit: unitChanged }, "snapshotter service updated: restarting it");
      await this.systemctl("enable", UNIT_NAME);
      await this.systemctl("restart", UNIT_NAME);
    } else {
      await this.systemctl("enable", "--now", UNIT_NAME);
    }
    return { updated: binChanged || unitChanged };
  }

  async remove(): Promise<void> {
    await this.systemctl("disable", "--now", UNIT_NAME).catch((e: Error) => this.logger.warn({ err: e.message }, "cannot stop the snapshotter service"));
    rmSync(this.host(`/etc/systemd/system/${UNIT_NAME}`), { force: true });
    rmSync(this.host(this.o.binary), { force: true });
    await this.systemctl("daemon-reload").catch(() => undefined);
  }
}

/** The snapshotter as a supervised child process (tests, local runs). */
export class ProcessSnapshotter implements SnapshotterService {
  private child?: ChildProcess;
  private stopping = false;
  constructor(private readonly o: { binary: string; args: string[]; socket: string; root?: string }, private readonly logger: Logger) {}

  private startedSha?: string;

  async ensureRunning(): Promise<{ updated: boolean } | undefined> {
    const sha = sha256(readFileSync(this.o.binary));
    const alive = this.child && this.child.exitCode === null && this.child.signalCode === null;
    // An upgraded binary replaces the running one, as the systemd service is restarted.
    if (alive && sha === this.startedSha) return { updated: false };
    const updated = alive || (this.startedSha !== undefined && sha !== this.startedSha);
    if (alive) await this.stopChild();
    this.startedSha = sha;
    this.stopping = false;
    mkdirSync(dirname(this.o.socket), { recursive: true });
    // A killed process leaves its socket behind: wait for the new one, not the stale one.
    rmSync(this.o.socket, { force: true });
    if (this.o.root) await detachStaleFuseMounts(this.o.root, this.logger);
    const child = spawn(this.o.binary, this.o.args, { stdio: ["ignore", "ignore", "pipe"] });
    let tail = "";
    child.stderr?.on("data", (d: Buffer) => { tail = (tail + d.toString()).slice(-2000); });
    child.once("exit", (code) => {
      if (!this.stopping) this.logger.warn({ code, stderr: tail }, "snapshotter exited");
    });
    this.child = child;
    for (let i = 0; i < 200 && !existsSync(this.o.socket); i++) await new Promise((r) => setTimeout(r, 50));
    return { updated };
  }

  get pid(): number | undefined { return this.child?.exitCode === null ? this.child.pid : undefined; }

  /** Kills it without removal, as a crash would. */
  kill(): void { this.child?.kill("SIGKILL"); }

  async remove(): Promise<void> {
    await this.stopChild();
    rmSync(this.o.socket, { force: true });
  }

  private async stopChild(): Promise<void> {
    this.stopping = true;
    const c = this.child;
    if (c && c.exitCode === null) {
      const done = new Promise((r) => c.once("exit", r));
      c.kill("SIGTERM");
      await Promise.race([done, new Promise((r) => setTimeout(r, 5000))]);
      if (c.exitCode === null) c.kill("SIGKILL");
    }
  }
}

/**
 * FUSE mounts of a snapshotter that died are dead ("transport endpoint is not
 * connected") and block the next one's restore: detach them first (umount -l).
 */
export async function detachStaleFuseMounts(root: string, logger: Logger): Promise<number> {
  const { readFileSync } = await import("node:fs");
  const mounts = readFileSync("/proc/mounts", "utf8").split("\n").map((l) => l.split(" ")).filter((f) => f[1]?.startsWith(root) && f[2]?.startsWith("fuse"));
  for (const m of mounts) {
    await run("umount", ["-l", m[1]!]).catch((e: Error) => logger.warn({ mount: m[1], err: e.message }, "cannot detach a stale FUSE mount"));
  }
  if (mounts.length > 0) logger.info({ count: mounts.length }, "detached stale FUSE mounts of a previous snapshotter");
  return mounts.length;
}
