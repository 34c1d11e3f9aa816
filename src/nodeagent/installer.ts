// The careful part of the node agent (after kata-deploy): back the original
// containerd config up once, edit it as TOML, check the candidate with
// `containerd config dump` before it replaces the live file, record a hash of what
// was written, and on uninstall restore the backup only if the live file is still
// ours (otherwise remove just apparate's keys).
import { createHash } from "node:crypto";
import { existsSync, mkdirSync, readFileSync, renameSync, rmSync, writeFileSync, readdirSync } from "node:fs";
import { dirname, join } from "node:path";
import type { Logger } from "../observability/logger.js";
import { applyApparate, removeApparate, type EditOptions } from "./containerd-config.js";
import { renderHostsToml, renderSnapshotterConfig } from "./hosts.js";
import type { ContainerRuntime } from "./runtime.js";

export interface InstallerOptions {
  /** Where the host's / is mounted ("" when running on the host itself). */
  hostRoot: string;
  containerdConfig: string;
  certsDir: string;
  snapshotterSocket: string;
  snapshotterConfigDir: string;
  mirrors: Record<string, string[]>;
  plainHttp: string[];
}

interface State { originalExisted: boolean; writtenSha256: string; hostsDirs: string[] }

const MARKER = ".apparate";
const sha256 = (s: string) => createHash("sha256").update(s).digest("hex");

export class Installer {
  constructor(private readonly o: InstallerOptions, private readonly runtime: ContainerRuntime, private readonly logger: Logger) {}

  private host(p: string): string { return join(this.o.hostRoot || "/", p); }
  private get live() { return this.host(this.o.containerdConfig); }
  private get backup() { return `${this.live}.apparate-backup`; }
  private get stateFile() { return join(dirname(this.live), "apparate-state.json"); }

  private readState(): State | undefined {
    try { return JSON.parse(readFileSync(this.stateFile, "utf8")) as State; } catch { return undefined; }
  }

  /** Brings the node to the desired state; true when containerd must be restarted. */
  async apply(): Promise<boolean> {
    const major = await this.runtime.majorVersion();
    const liveExists = existsSync(this.live);
    const current = liveExists ? readFileSync(this.live, "utf8") : "";
    const state = this.readState();
    if (!state) {
      // Back up the original once: later runs must never overwrite it with our own output.
      if (liveExists && !existsSync(this.backup)) writeFileSync(this.backup, current, { mode: 0o600 });
    }
    const edit: EditOptions = { containerdMajor: major, snapshotterSocket: this.o.snapshotterSocket, certsDir: this.o.certsDir };
    const r = applyApparate(current, edit);
    // Legacy mirrors become hosts.toml (containerd refuses registry.mirrors together with config_path).
    const mirrors: Record<string, string[]> = { ...r.movedMirrors };
    for (const [h, m] of Object.entries(this.o.mirrors)) mirrors[h] = [...new Set([...(mirrors[h] ?? []), ...m])];
    const hostsChanged = this.writeHosts(mirrors);
    this.writeSnapshotterConfig(mirrors);

    let changed = false;
    if (r.changed) {
      mkdirSync(dirname(this.live), { recursive: true });
      const candidate = `${this.live}.apparate-candidate`;
      writeFileSync(candidate, r.text, { mode: 0o644 });
      try {
        await this.runtime.validate(this.hostPathOnNode(candidate));
      } catch (err) {
        // A rejected candidate never replaces the live file.
        rmSync(candidate, { force: true });
        throw err;
      }
      renameSync(candidate, this.live);
      changed = true;
      this.logger.info({ config: this.o.containerdConfig }, "containerd config updated");
    }
    const written = readFileSync(this.live, "utf8");
    const next: State = { originalExisted: state ? state.originalExisted : liveExists, writtenSha256: sha256(written), hostsDirs: Object.keys(mirrors) };
    writeFileSync(this.stateFile, JSON.stringify(next, null, 2));
    // hosts.toml is read per pull: no restart needed for it alone.
    if (hostsChanged) this.logger.info({ registries: Object.keys(mirrors) }, "registry mirrors written");
    return changed;
  }

  /** The candidate's path as containerd (in the host's mount namespace) sees it. */
  private hostPathOnNode(p: string): string {
    return this.o.hostRoot ? p.slice(this.o.hostRoot.replace(/\/$/, "").length) || "/" : p;
  }

  private writeHosts(mirrors: Record<string, string[]>): boolean {
    const plain = new Set(this.o.plainHttp);
    let changed = false;
    for (const [h, ms] of Object.entries(mirrors)) {
      if (ms.length === 0) continue;
      const dir = join(this.host(this.o.certsDir), h);
      mkdirSync(dir, { recursive: true });
      const file = join(dir, "hosts.toml");
      const text = renderHostsToml(h, ms, plain);
      if (!existsSync(file) || readFileSync(file, "utf8") !== text) { writeFileSync(file, text); changed = true; }
      writeFileSync(join(dir, MARKER), "written by apparate node-agent\n");
    }
    // Mirrors removed from the configuration: remove the directories apparate wrote.
    const root = this.host(this.o.certsDir);
    if (existsSync(root)) {
      for (const d of readdirSync(root)) {
        if (!(d in mirrors) && existsSync(join(root, d, MARKER))) { rmSync(join(root, d), { recursive: true, force: true }); changed = true; }
      }
    }
    return changed;
  }

  private writeSnapshotterConfig(mirrors: Record<string, string[]>): void {
    const dir = this.host(this.o.snapshotterConfigDir);
    mkdirSync(dir, { recursive: true });
    writeFileSync(join(dir, "config.toml"), renderSnapshotterConfig(mirrors, new Set(this.o.plainHttp)));
  }

  /** Undoes apply(); true when containerd must be restarted. */
  async uninstall(): Promise<boolean> {
    const state = this.readState();
    let changed = false;
    if (existsSync(this.live)) {
      const live = readFileSync(this.live, "utf8");
      if (state && sha256(live) === state.writtenSha256) {
        if (existsSync(this.backup)) { writeFileSync(this.live, readFileSync(this.backup, "utf8")); }
        else if (!state.originalExisted) rmSync(this.live);
        this.logger.info("containerd config restored from the backup");
      } else {
        // Someone changed the file after us: keep their changes, take out only ours.
        const major = await this.runtime.majorVersion();
        writeFileSync(this.live, removeApparate(live, { containerdMajor: major, snapshotterSocket: this.o.snapshotterSocket, certsDir: this.o.certsDir }));
        this.logger.warn("containerd config changed since apparate wrote it: removed apparate's keys only");
      }
      changed = true;
    }
    const root = this.host(this.o.certsDir);
    if (existsSync(root)) {
      for (const d of readdirSync(root)) if (existsSync(join(root, d, MARKER))) rmSync(join(root, d), { recursive: true, force: true });
    }
    rmSync(join(this.host(this.o.snapshotterConfigDir), "config.toml"), { force: true });
    rmSync(this.backup, { force: true });
    rmSync(this.stateFile, { force: true });
    return changed;
  }
}
