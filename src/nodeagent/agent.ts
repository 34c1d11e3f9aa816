// The node agent's life cycle: install (snapshotter first, then containerd's config,
// converging with what containerd really runs), supervise (the node label follows the
// snapshotter's health *and* the live CRI using it), uninstall (label off, config
// restored, service removed). Readiness is a status file, not a process.
import { mkdirSync, rmSync, writeFileSync } from "node:fs";
import { dirname } from "node:path";
import type { Logger } from "../observability/logger.js";
import { checkSnapshotter, type Health } from "./health.js";
import type { ApplyResult, Installer, UninstallResult } from "./installer.js";
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
  /** Written while the node is ready (the readiness probe reads it), removed otherwise. */
  readyFile?: string;
  snapshotterName?: string;
}

export class NodeAgent {
  private gate: LabelGate;
  private timer?: NodeJS.Timeout;
  private checking = false;
  /** Why apparate does not run on this node (refused or failed install), if so. */
  private blocked?: { reason: string; message: string };
  private lastCondition?: string;

  constructor(private readonly d: AgentDeps) {
    this.gate = new LabelGate(d.unhealthyThreshold);
  }

  private get name() { return this.d.snapshotterName ?? "stargz"; }

  async install(): Promise<ApplyResult> {
    await this.d.service.ensureRunning();
    if (this.d.labeler) this.gate.labelled = await this.d.labeler.isLabelled().catch(() => false);
    let r: ApplyResult;
    try {
      r = await this.d.installer.apply();
    } catch (e) {
      const err = e as Error & { code?: string };
      this.blocked = { reason: "InstallFailed", message: err.message };
      await this.report(false, "InstallFailed", err.message, true);
      throw e;
    }
    if (r.status === "refused") {
      this.blocked = { reason: r.reason, message: r.message };
      await this.report(false, r.reason, r.message, true);
    } else this.blocked = undefined;
    return r;
  }

  /** Condition + event (+ label off) for a state the operator must know about. */
  private async report(ok: boolean, reason: string, message: string, event: boolean): Promise<void> {
    const key = `${ok}/${reason}/${message}`;
    if (!ok && this.gate.labelled && this.d.labeler) {
      await this.d.labeler.set(false, message).then(() => { this.gate.labelled = false; }, (e: Error) => this.d.logger.warn({ err: e.message }, "cannot remove the node label"));
    }
    if (!this.d.labeler || key === this.lastCondition) return;
    this.lastCondition = key;
    await this.d.labeler.condition(ok, reason, message).catch((e: Error) => this.d.logger.warn({ err: e.message }, "cannot set the node condition"));
    if (event) await this.d.labeler.event(`Apparate${reason}`, message, ok ? "Normal" : "Warning").catch((e: Error) => this.d.logger.warn({ err: e.message }, "cannot emit node event"));
  }

  async checkOnce(): Promise<Health> {
    // A containerd 1.x drop-in copies the node's CRI section: when the node rewrites it, apply again.
    if (!this.blocked && this.d.installer.dropInStale()) {
      this.d.logger.info({}, "the node's CRI settings changed under apparate's drop-in: applying again");
      await this.install().catch((e: Error) => this.d.logger.error({ err: e.message }, "applying again failed"));
    }
    const sn = await checkSnapshotter(this.d.socket);
    const cri = await this.d.runtime.criStatus();
    const criOk = cri.loaded && cri.snapshotter === this.name;
    const h: Health = this.blocked
      ? { healthy: false, reason: this.blocked.message }
      : !sn.healthy ? sn
      : !criOk ? { healthy: false, reason: cri.loaded ? `containerd's CRI uses the ${JSON.stringify(cri.snapshotter)} snapshotter, not ${this.name}` : cri.reason }
      : sn;
    // A CRI that does not use the snapshotter loses the label at once; a snapshotter hiccup after the threshold.
    const action = this.gate.observe(h.healthy, !criOk || Boolean(this.blocked));
    if (!sn.healthy) {
      this.d.logger.warn({ reason: sn.reason }, "snapshotter unhealthy");
      // Supervision: a dead process is started again (systemd does this by itself).
      await this.d.service.ensureRunning().catch((e: Error) => this.d.logger.error({ err: e.message }, "cannot start the snapshotter"));
    }
    if (action && this.d.labeler) {
      try {
        await this.d.labeler.set(action === "add", h.healthy ? `snapshotter answers (${h.snapshots} snapshots) and CRI uses it` : h.reason ?? "unhealthy");
      } catch (e) {
        // Try again at the next check.
        this.gate.labelled = action !== "add";
        this.d.logger.error({ err: (e as Error).message }, "cannot change the node label");
      }
    }
    if (!this.blocked) await this.report(h.healthy, h.healthy ? "Ready" : criOk ? "SnapshotterUnhealthy" : "CriNotUsingSnapshotter", h.healthy ? "lazy loading ready" : h.reason ?? "unhealthy", false);
    this.writeReady(h.healthy && (!this.d.labeler || this.gate.labelled));
    return h;
  }

  private writeReady(ready: boolean): void {
    const f = this.d.readyFile;
    if (!f) return;
    try {
      if (ready) { mkdirSync(dirname(f), { recursive: true }); writeFileSync(f, `${new Date().toISOString()}\n`); }
      else rmSync(f, { force: true });
    } catch (e) { this.d.logger.warn({ err: (e as Error).message, file: f }, "cannot write the readiness file"); }
  }

  start(): void {
    const tick = async () => {
      if (this.checking) return;
      this.checking = true;
      try { await this.checkOnce(); } catch (e) { this.d.logger.error({ err: (e as Error).message }, "health check failed"); } finally { this.checking = false; }
    };
    void tick();
    this.timer = setInterval(() => void tick(), this.d.checkIntervalMs);
  }

  stop(): void { if (this.timer) clearInterval(this.timer); }

  async uninstall(): Promise<UninstallResult> {
    this.stop();
    this.writeReady(false);
    if (this.d.labeler) await this.d.labeler.set(false, "apparate is being uninstalled").catch((e: Error) => this.d.logger.warn({ err: e.message }, "cannot remove the node label"));
    const r = await this.d.installer.uninstall();
    await this.d.service.remove();
    return r;
  }
}
