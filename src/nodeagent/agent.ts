// The node agent's life cycle: install (snapshotter first, then containerd's
// config, restarting containerd only on change), supervise (health checks drive
// the node label), uninstall (label off, config restored, service removed).
import type { Logger } from "../observability/logger.js";
import { checkSnapshotter, type Health } from "./health.js";
import type { Installer } from "./installer.js";
import { LabelGate, type NodeLabeler } from "./label.js";
import type { ContainerRuntime } from "./runtime.js";
import type { SnapshotterService } from "./service.js";

export interface AgentDeps {
  installer: Installer;
  runtime: ContainerRuntime;
  service: SnapshotterService;
  labeler?: NodeLabeler;
  socket: string;
  checkIntervalMs: number;
  unhealthyThreshold: number;
  logger: Logger;
}

export class NodeAgent {
  private gate: LabelGate;
  private timer?: NodeJS.Timeout;
  private checking = false;

  constructor(private readonly d: AgentDeps) {
    this.gate = new LabelGate(d.unhealthyThreshold);
  }

  async install(): Promise<{ restarted: boolean }> {
    await this.d.service.ensureRunning();
    const changed = await this.d.installer.apply();
    if (changed) {
      this.d.logger.info("restarting containerd for the new configuration");
      await this.d.runtime.restart();
    }
    if (this.d.labeler) this.gate.labelled = await this.d.labeler.isLabelled().catch(() => false);
    return { restarted: changed };
  }

  async checkOnce(): Promise<Health> {
    const h = await checkSnapshotter(this.d.socket);
    const action = this.gate.observe(h.healthy);
    if (!h.healthy) {
      this.d.logger.warn({ reason: h.reason }, "snapshotter unhealthy");
      // Supervision: a dead process is started again (systemd does this by itself).
      await this.d.service.ensureRunning().catch((e: Error) => this.d.logger.error({ err: e.message }, "cannot start the snapshotter"));
    }
    if (action && this.d.labeler) {
      try {
        await this.d.labeler.set(action === "add", h.healthy ? `snapshotter answers (${h.snapshots} snapshots)` : h.reason ?? "unhealthy");
      } catch (e) {
        // Try again at the next check.
        this.gate.labelled = action !== "add";
        this.d.logger.error({ err: (e as Error).message }, "cannot change the node label");
      }
    }
    return h;
  }

  start(): void {
    const tick = async () => {
      if (this.checking) return;
      this.checking = true;
      try { await this.checkOnce(); } finally { this.checking = false; }
    };
    void tick();
    this.timer = setInterval(() => void tick(), this.d.checkIntervalMs);
  }

  stop(): void { if (this.timer) clearInterval(this.timer); }

  async uninstall(): Promise<void> {
    this.stop();
    if (this.d.labeler) await this.d.labeler.set(false, "apparate is being uninstalled").catch((e: Error) => this.d.logger.warn({ err: e.message }, "cannot remove the node label"));
    const changed = await this.d.installer.uninstall();
    if (changed) await this.d.runtime.restart();
    await this.d.service.remove();
  }
}
