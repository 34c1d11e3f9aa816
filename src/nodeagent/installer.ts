// The careful part of the node agent (after kata-deploy's node installer): back the
// original containerd config up once, edit it as TOML, prove the candidate with a
// throw-away containerd before the live file changes, restart containerd when what it
// *runs* (CRI status) differs from what is wanted, roll back when the live CRI does not
// come up with the snapshotter, and undo all of it on uninstall. Every step is written
// to a journal in the state file first, so a crash at any point converges on the next
// start. Moved legacy mirrors live in the state file, never only in memory.
import { existsSync, mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { basename, dirname, isAbsolute, join } from "node:path";
import { ApparateError } from "../errors.js";
import type { Logger } from "../observability/logger.js";
import {
  applyApparate, criPaths, criSnapshotter, DEFAULT_SNAPSHOTTER, type EditOptions, type EditRecord, type EditResult, effectiveConfig, get, type HostsEntry,
  legacyToHosts, parseConfig, registryConfigDirs, removeApparate, renderConfig, sameValue, schemaVersionFor, type Table, versionOf,
} from "./containerd-config.js";
import { DROPIN_HEADER, type DropInPlace, decideDropIn, type ImportedFile, withDropIn } from "./dropin.js";
import { type FileMeta, inHost, metaOf, readIf, resolveHostPath, sha256, writeAtomic } from "./files.js";
import { configuredHosts, mergeHosts, renderHostsEntry, renderSnapshotterConfig } from "./hosts.js";
import type { ContainerRuntime } from "./runtime.js";

export class InstallError extends ApparateError {}

export interface InstallerOptions {
  /** Where the host's / is mounted ("" when running on the host itself). */
  hostRoot: string;
  /** The config containerd runs with (host path; a symlink's target is edited). */
  containerdConfig: string;
  certsDir: string;
  snapshotterSocket: string;
  snapshotterConfigDir: string;
  mirrors: Record<string, string[]>;
  plainHttp: string[];
  /** When the config does not exist yet, the file it starts from (k3s: the rendered config.toml for config.toml.tmpl). */
  seedFrom?: string;
  /** State, journal and probe directory on the host. */
  stateDir?: string;
  replaceSnapshotter?: boolean;
  /** Called after each journal step: fault injection (tests, APPARATE_CRASH_AFTER). */
  afterStep?: (step: string) => void;
  /** How long the restarted containerd gets to bring CRI up with the snapshotter. */
  verifyTimeoutMs?: number;
}

export interface State {
  version: 2;
  /** The file apparate edits (host path, symlinks resolved). */
  target: string;
  originalExisted: boolean;
  original?: FileMeta & { sha256: string };
  writtenSha256?: string;
  /** The node's own text apparate's first and latest writes were made from: when they differ, the file was regenerated meanwhile and the backup is older than it. */
  firstBaseSha256?: string;
  baseSha256?: string;
  record: EditRecord;
  hostsDir: string;
  /** hosts.toml directories apparate created (names under hostsDir). */
  hostsOwned: string[];
  /** Legacy registry entries moved out of config.toml: hosts.toml forever after, given back at uninstall. */
  legacyHosts: HostsEntry[];
  /** apparate's own drop-in (host path) and what was written to it, when the keys live there instead of in `target`. */
  dropIn?: { path: string; sha256: string };
  /** The drop-in was written and containerd has not been restarted on it yet. */
  dropInRestart?: boolean;
  /** A candidate that failed after the restart (rolled back): not tried again. */
  failed?: { sha256: string; reason: string };
  journal: { step: string; at: string }[];
}

export type ApplyResult =
  | { status: "installed"; restarted: boolean; changed: boolean }
  | { status: "refused"; reason: string; message: string };

/**
 * `restored`: the node's own file is back byte for byte. `keys-removed`: the file was
 * regenerated after install (config management) and apparate re-applied, so the backup
 * is older than the node's current config: apparate took its own keys out of the live
 * file instead and deleted that backup. `edited`: someone changed apparate's output;
 * its keys are taken out, the backup is kept for the operator.
 */
export type UninstallOutcome = "restored" | "keys-removed" | "edited";
export interface UninstallResult { outcome: UninstallOutcome; restored: boolean; restarted: boolean; notes: string[] }

export const INSTALL_STEPS = ["backup", "hosts", "probe", "write", "restart", "verify"] as const;
export const UNINSTALL_STEPS = ["config", "restart", "hosts", "cleanup"] as const;

const MARKER = ".apparate";
const CRI_V2 = "io.containerd.grpc.v1.cri";
const SNAPSHOTTER = "stargz";

export class Installer {
  constructor(private readonly o: InstallerOptions, private readonly runtime: ContainerRuntime, private readonly logger: Logger) {}

  private h(p: string): string { return inHost(this.o.hostRoot, p); }
  private get stateDir() { return this.o.stateDir ?? "/var/lib/apparate-node"; }
  private get stateFile() { return this.h(join(this.stateDir, "state.json")); }
  /** The file apparate edits: the config's symlink target, as the host resolves it. */
  get target(): string { return resolveHostPath(this.o.hostRoot, this.o.containerdConfig); }
  private backupOf(target: string) { return this.h(`${target}.apparate-backup`); }

  readState(): State | undefined {
    const t = readIf(this.stateFile);
    if (t === undefined) return undefined;
    try { return JSON.parse(t) as State; } catch (e) {
      throw new InstallError("state-corrupt", `the node agent's state file ${this.stateFile} is not JSON (${(e as Error).message}); move it away to start over`, this.stateFile);
    }
  }

  private saveState(s: State): void {
    mkdirSync(dirname(this.stateFile), { recursive: true, mode: 0o700 });
    // TOML integers are BigInt in parsed configs (see renderConfig); JSON has one number type.
    writeAtomic(this.stateFile, `${JSON.stringify(s, (_k, v) => (typeof v === "bigint" ? Number(v) : v), 2)}\n`, { mode: 0o600, uid: 0, gid: 0 });
  }

  private step(s: State, step: string): void {
    s.journal.push({ step, at: new Date().toISOString() });
    if (s.journal.length > 50) s.journal.splice(0, s.journal.length - 50);
    this.saveState(s);
    this.o.afterStep?.(step);
  }

  /** The `imports` patterns as host paths. A relative one is relative to the directory of the path containerd was given (`--config`), not of a symlink's target. */
  private importPatterns(doc: Table): string[] {
    return (Array.isArray(doc.imports) ? (doc.imports as string[]) : []).map((p) => (isAbsolute(p) ? p : join(dirname(this.o.containerdConfig), p)));
  }

  /**
   * containerd's `imports` (globs), parsed, in containerd's order. apparate's own drop-in
   * is left out unless `withOwn`: decisions are made on the node's own files.
   */
  private importFiles(doc: Table, withOwn = false): ImportedFile[] {
    const out: ImportedFile[] = [];
    const own = this.readStateQuiet()?.dropIn?.path;
    this.importPatterns(doc).forEach((pat, i) => {
      for (const local of globOne(this.h(dirname(pat)), basename(pat))) {
        const path = join(dirname(pat), basename(local));
        const text = readFileSync(local, "utf8");
        if (!withOwn && (path === own || text.startsWith(DROPIN_HEADER))) continue;
        out.push({ path, pattern: i, doc: parseConfig(text, local) });
      }
    });
    return out;
  }

  private imports(doc: Table, _target: string): Table[] {
    return this.importFiles(doc).map((f) => f.doc);
  }

  private readStateQuiet(): State | undefined {
    try { return this.readState(); } catch { return undefined; }
  }

  /** The live config as containerd runs it (imports merged, apparate's drop-in included; plugin sections merged as `major` does). */
  effectiveLive(major = this.major ?? 1): Table {
    const target = this.target;
    const doc = parseConfig(readIf(this.h(target)) ?? "", target);
    const imports = this.importFiles(doc, true).map((f) => f.doc);
    return imports.length > 0 ? effectiveConfig(doc, imports, major) : doc;
  }

  /** The containerd major version the last apply() ran against. */
  private major?: number;

  private editOptions(major: number): EditOptions {
    return { containerdMajor: major, snapshotterSocket: this.o.snapshotterSocket, certsDir: this.o.certsDir, snapshotterName: SNAPSHOTTER, ...(this.o.replaceSnapshotter ? { replaceSnapshotter: true } : {}) };
  }

  /** Brings the node to the desired state; restarts containerd when what it runs differs. */
  async apply(): Promise<ApplyResult> {
    const major = await this.runtime.majorVersion();
    this.major = major;
    const target = this.target;
    const live = this.h(target);
    let state = this.readState();
    const liveBefore = readIf(live);
    const current = liveBefore ?? (this.o.seedFrom ? readIf(this.h(this.o.seedFrom)) ?? "" : "");
    if (!state) {
      state = { version: 2, target, originalExisted: existsSync(live), record: { previous: [], moved: [] }, hostsDir: this.o.certsDir, hostsOwned: [], legacyHosts: [], journal: [] };
    }
    const doc = parseConfig(current, target);
    const files = this.importFiles(doc);
    const decision = decideDropIn(doc, this.importPatterns(doc), files, major, (d) => existsSync(this.h(d)));
    if (decision.mode === "refuse") {
      this.logger.warn({ reason: decision.reason, config: target }, decision.message);
      await this.withdrawDropIn(state);
      return { status: "refused", reason: decision.reason, message: decision.message };
    }
    if (decision.mode === "dropin") {
      // The main file is not written: what it is now is what uninstall checks it against, no backup needed.
      if (!state.original && state.originalExisted) state.original = { ...(metaOf(live) ?? { mode: 0o644, uid: 0, gid: 0 }), sha256: sha256(readFileSync(live)) };
      this.step(state, "backup");
      return this.applyDropIn(state, doc, files, decision.place, major);
    }
    // The keys go into the main file now (the node's imports changed): apparate's old drop-in goes.
    if (state.dropIn) {
      rmSync(this.h(state.dropIn.path), { force: true });
      state.dropIn = undefined;
    }
    const imports = files.map((f) => f.doc);
    // containerd 2.x reads older schemas through its own migration: decide on what that
    // binary dumps, never on apparate's reading of the file.
    const fromDump = major >= 2;
    const effective = fromDump ? await this.runtime.configDump(absoluteImports(doc, this.o.containerdConfig)) : imports.length > 0 ? effectiveConfig(doc, imports, major) : undefined;
    // On 2.x the imports merge onto the main file key by key: where a key goes, and whether an import already sets config_path, is read from that merge.
    const mergedOnto = fromDump && imports.length > 0 ? { mergedOnto: effectiveConfig(doc, imports, major) } : {};
    const edit = applyApparate(current, { ...this.editOptions(major), ...(fromDump ? { effectiveIsDump: true } : {}), ...mergedOnto }, effective);
    if (!edit.refused && edit.changed) {
      // What the binary will read from the candidate, before anything on the node changes.
      const dumped = await this.runtime.configDump(absoluteImports(parseConfig(edit.text), this.o.containerdConfig));
      const why = notApplied(dumped, major, this.o.snapshotterSocket);
      if (why) edit.refused = { reason: "EditNotEffective", message: `containerd ${major}.x would not run apparate's edit of ${target}: ${why} (containerd config dump of the candidate); the node is left as it is` };
    }
    if (edit.refused) {
      this.logger.warn({ reason: edit.refused.reason, config: target }, edit.refused.message);
      return { status: "refused", ...edit.refused };
    }
    // 1. Back the original up once (after the decision: a refused node keeps no backup); a
    // later run never overwrites it with apparate's output.
    const backup = this.backupOf(target);
    if (!state.original && state.originalExisted) {
      if (!existsSync(backup)) writeAtomic(backup, readFileSync(live), { ...metaOf(live)!, mode: 0o600 });
      const b = readFileSync(backup);
      state.original = { ...(metaOf(live) ?? { mode: 0o644, uid: 0, gid: 0 }), sha256: sha256(b) };
    }
    this.step(state, "backup");

    // 2. Moved legacy entries are saved before the file that held them changes. A value
    // this edit replaces is the node's newest (the file was regenerated since): it wins.
    for (const p of edit.record.previous) {
      // Except where the replaced value is apparate's own (an older socket): the node's value stays.
      const own = (p.path[0] === "proxy_plugins" && p.path[1] === SNAPSHOTTER && p.value !== null) || (p.path[p.path.length - 1] === "snapshotter" && p.value === SNAPSHOTTER);
      if (!own || !state.record.previous.some((x) => same(x.path, p.path))) upsert(state.record.previous, p);
    }
    for (const m of edit.record.moved) upsert(state.record.moved, m);
    if (edit.record.migratedFromV1) state.record.migratedFromV1 = true;
    if (edit.record.ignoredV1 && !state.record.ignoredV1) {
      state.record.ignoredV1 = edit.record.ignoredV1;
      this.logger.warn({ config: target, ignored: edit.record.ignoredV1 }, "version-1 config: sections containerd 1.x never reads in a version-1 file are left out of the migrated file (the original stays in the backup)");
    }
    // Derived again from the moved tables each time, so that a node installed by an older
    // agent gets hosts.toml with today's conversion (override_path, the localhost scheme).
    const fresh = mergeHosts(legacyToHosts(movedTable(state.record, "mirrors"), movedTable(state.record, "configs")), edit.hosts);
    const known = new Set(fresh.map((e) => e.dir));
    state.legacyHosts = mergeHosts(fresh, state.legacyHosts.filter((e) => !known.has(e.dir)));
    state.hostsDir = edit.hostsDir;
    const hosts = mergeHosts(state.legacyHosts, configuredHosts(this.o.mirrors, new Set(this.o.plainHttp)));
    this.writeHosts(state, hosts);
    this.writeSnapshotterConfig();
    this.step(state, "hosts");

    // 3. Prove the candidate before the live file changes.
    const candidateSha = sha256(edit.text);
    const mustWrite = edit.changed || (!existsSync(live) && this.o.seedFrom !== undefined);
    if (mustWrite) {
      if (state.failed?.sha256 === candidateSha) {
        throw new InstallError("candidate-failed-before", `this config was tried and rolled back before: ${state.failed.reason}`, target);
      }
      const cand = parseConfig(edit.text);
      await this.probeOrTakeBack(state, imports.length > 0 ? effectiveConfig(cand, imports, major) : cand, current);
      this.step(state, "probe");
      // 4. The live file: same mode and owner, a symlink stays a symlink (its target is written).
      state.writtenSha256 = candidateSha;
      state.baseSha256 = sha256(current);
      state.firstBaseSha256 ??= state.baseSha256;
      this.saveState(state);
      writeAtomic(live, edit.text, metaOf(live) ?? { mode: 0o644, uid: 0, gid: 0 });
      this.logger.info({ config: target }, "containerd config updated");
    } else if (state.writtenSha256 === undefined && current !== "") {
      state.writtenSha256 = sha256(current);
    }
    this.step(state, "write");

    // 5. Restart when the running CRI is not what the file says (also after a crash here).
    const { restarted, failed } = await this.restartUnlessRunning(state, registryConfigDirs(parseConfig(edit.text), major).join(":"), false);
    if (failed !== undefined) await this.rollback(state, live, failed, candidateSha, mustWrite ? { text: liveBefore } : undefined);
    this.step(state, "verify");
    return { status: "installed", restarted, changed: mustWrite };
  }

  /**
   * apply() where apparate's keys go into its own drop-in (see dropin.ts): the node's
   * files are not changed. The same steps as for the main file: decide on what the binary
   * runs without the drop-in, check the candidate's dump, probe, write, restart, verify.
   */
  private async applyDropIn(state: State, doc: Table, files: ImportedFile[], place: DropInPlace, major: number): Promise<ApplyResult> {
    const local = this.h(place.path);
    const existing = readIf(local);
    let edit: EditResult;
    if (major >= 2) {
      // Merged key by key: apparate's keys only, in the main file's schema.
      const effective = await this.runtime.configDump(explicitImports(doc, files));
      edit = applyApparate(`version = ${versionOf(doc)}\n`, { ...this.editOptions(major), effectiveIsDump: true, mergedOnto: effectiveConfig(doc, files.map((f) => f.doc), major) }, effective);
    } else {
      edit = this.dropInEdit1(doc, files);
    }
    const text = `${DROPIN_HEADER}${edit.text}`;
    const cand = (path: string) => withDropIn(files, { path, pattern: place.pattern, doc: parseConfig(edit.text) });
    if (!edit.refused && existing !== text) {
      // What the binary reads with the candidate drop-in at its place, before anything on the node changes.
      const tmp = join(this.stateDir, "dropin-candidate.toml");
      mkdirSync(dirname(this.h(tmp)), { recursive: true, mode: 0o700 });
      writeFileSync(this.h(tmp), text, { mode: 0o600 });
      try {
        const dumped = await this.runtime.configDump(explicitImports(doc, cand(place.path).map((f) => (f.path === place.path ? { ...f, path: tmp } : f))));
        const why = notApplied(dumped, major, this.o.snapshotterSocket);
        if (why) edit.refused = { reason: "EditNotEffective", message: `containerd ${major}.x would not run apparate's drop-in ${place.path}: ${why} (containerd config dump of the candidate); the node is left as it is` };
      } finally { rmSync(this.h(tmp), { force: true }); }
    }
    if (edit.refused) {
      this.logger.warn({ reason: edit.refused.reason, config: state.target, dropIn: place.path }, edit.refused.message);
      await this.withdrawDropIn(state);
      return { status: "refused", ...edit.refused };
    }
    state.legacyHosts = edit.hosts;
    state.hostsDir = edit.hostsDir;
    this.writeHosts(state, mergeHosts(state.legacyHosts, configuredHosts(this.o.mirrors, new Set(this.o.plainHttp))));
    this.writeSnapshotterConfig();
    this.step(state, "hosts");

    const sha = sha256(text);
    const mustWrite = existing !== text;
    const merged = effectiveConfig(doc, cand(place.path).map((f) => f.doc), major);
    if (mustWrite) {
      if (state.failed?.sha256 === sha) throw new InstallError("candidate-failed-before", `this drop-in was tried and rolled back before: ${state.failed.reason}`, place.path);
      await this.probeOrTakeBack(state, merged, readIf(this.h(state.target)) ?? "");
      this.step(state, "probe");
      state.dropIn = { path: place.path, sha256: sha };
      // A rewrite (the node's CRI section changed under a 1.x copy) needs containerd to read it even where CRI already runs stargz; kept across a crash.
      state.dropInRestart = true;
      this.saveState(state);
      // 0600: on 1.x it carries a copy of the node's CRI section, registry credentials included (Talos keeps them 0600).
      writeAtomic(local, text, { mode: 0o600, uid: 0, gid: 0 });
      this.logger.info({ config: state.target, dropIn: place.path }, "containerd drop-in written");
    }
    state.dropIn ??= { path: place.path, sha256: sha };
    this.step(state, "write");

    const { restarted, failed } = await this.restartUnlessRunning(state, registryConfigDirs(merged, major).join(":"), Boolean(state.dropInRestart));
    if (failed !== undefined) {
      state.dropIn = undefined;
      state.dropInRestart = undefined;
      await this.rollback(state, local, failed, sha, { text: mustWrite ? existing : undefined });
    }
    state.dropInRestart = undefined;
    this.step(state, "verify");
    return { status: "installed", restarted, changed: mustWrite };
  }

  /** containerd 1.x: the whole CRI section replaces the imported one, so the drop-in is that section as the node's files make it, plus apparate's keys. */
  private dropInEdit1(doc: Table, files: ImportedFile[]): EditResult {
    const effective = effectiveConfig(doc, files.map((f) => f.doc));
    const skeleton: Table = { version: 2n, plugins: { [CRI_V2]: structuredClone(get(effective, ["plugins", CRI_V2])) } };
    return applyApparate(renderConfig(skeleton), this.editOptions(1), effective);
  }

  /**
   * Whether apparate's containerd 1.x drop-in no longer carries the CRI section the node's
   * files make (Talos or config management rewrote an imported file): containerd would
   * keep running the old copy at its next restart. The agent checks this on every health
   * tick and applies again (rewrite, restart). File reads only; 2.x drop-ins hold apparate's
   * keys alone and do not go stale this way.
   */
  dropInStale(): boolean {
    const state = this.readStateQuiet();
    if (!state?.dropIn || (this.major ?? 1) >= 2) return false;
    const written = readIf(this.h(state.dropIn.path));
    if (written === undefined) return true;
    try {
      const doc = parseConfig(readIf(this.h(state.target)) ?? "", state.target);
      const edit = this.dropInEdit1(doc, this.importFiles(doc));
      return edit.refused !== undefined || `${DROPIN_HEADER}${edit.text}` !== written;
    } catch { return true; }
  }

  /**
   * The node changed so that apparate now refuses it while its drop-in is in place (a 1.x
   * copy would keep shadowing the node's new CRI section): the drop-in goes and containerd
   * restarts on the node's own files. The rest (hosts.toml, state) stays for uninstall.
   */
  private async withdrawDropIn(state: State): Promise<void> {
    if (!state.dropIn) return;
    rmSync(this.h(state.dropIn.path), { force: true });
    this.logger.warn({ dropIn: state.dropIn.path }, "apparate refuses this node now: its drop-in removed, containerd restarted on the node's own config");
    state.dropIn = undefined;
    state.dropInRestart = undefined;
    this.saveState(state);
    await this.runtime.restart();
  }

  /** Deletes apparate's drop-in (the state's, or any imported file with apparate's header when the state is lost). */
  private removeDropIns(state: State | undefined, notes: string[]): boolean {
    const paths = new Set<string>(state?.dropIn ? [state.dropIn.path] : []);
    const main = readIf(this.h(state?.target ?? this.target));
    if (main !== undefined) {
      try {
        for (const f of this.importFiles(parseConfig(main), true)) if (readIf(this.h(f.path))?.startsWith(DROPIN_HEADER)) paths.add(f.path);
      } catch { /* an unreadable main config: only the state's drop-in */ }
    }
    let removed = false;
    for (const p of paths) {
      const now = readIf(this.h(p));
      if (now === undefined) continue;
      if (now.startsWith(DROPIN_HEADER) || (state?.dropIn?.path === p && sha256(now) === state.dropIn.sha256)) {
        rmSync(this.h(p), { force: true });
        removed = true;
      } else notes.push(`${p} was apparate's drop-in but someone rewrote it: left as it is`);
    }
    return removed;
  }

  /**
   * The candidate must load CRI in a throw-away containerd before any live file changes. When
   * it does not and no edit of apparate's is live yet (none written, no drop-in, no apparate
   * keys in the node's file), what the attempt wrote is taken back: hosts.toml (containerd
   * reads it for pulls at once), the snapshotter's config, the backup, the state. The node is
   * left exactly as it was, and the error stands.
   */
  private async probeOrTakeBack(state: State, effective: Table, liveText: string): Promise<void> {
    try {
      await this.runtime.probe(effective);
    } catch (err) {
      if (state.writtenSha256 === undefined && state.dropIn === undefined && !hasApparateKeys(liveText, this.o.snapshotterSocket)) {
        this.removeHostsAndSnapshotterConfig(state);
        // The backup is the live file's copy here (nothing was written): redundant, unless it differs.
        const backup = readIf(this.backupOf(state.target));
        if (backup !== undefined && backup === readIf(this.h(state.target))) rmSync(this.backupOf(state.target), { force: true });
        rmSync(this.stateFile, { force: true });
        this.logger.warn({ config: state.target }, "the candidate config failed its probe and no edit of apparate's is live: what this attempt wrote is removed");
      }
      throw err;
    }
  }

  /** Deletes the hosts.toml directories apparate owns (marked), never one the node took over, and the snapshotter's config. */
  private removeHostsAndSnapshotterConfig(state: State | undefined): void {
    const root = this.h(state?.hostsDir ?? this.o.certsDir);
    const owned = state?.hostsOwned ?? (existsSync(root) ? readdirSync(root).filter((d) => existsSync(join(root, d, MARKER))) : []);
    for (const d of owned) {
      if (existsSync(join(root, d, MARKER))) rmSync(join(root, d), { recursive: true, force: true });
    }
    rmSync(join(this.h(this.o.snapshotterConfigDir), "config.toml"), { force: true });
  }

  /**
   * Restarts containerd unless its CRI already runs stargz with these registry dirs (a
   * drop-in rewritten in place must restart whatever CRI says: `force`). `failed` is why
   * CRI did not come up as wanted after the restart; the caller rolls back.
   */
  private async restartUnlessRunning(state: State, wantedPath: string, force: boolean): Promise<{ restarted: boolean; failed?: string }> {
    const before = await this.runtime.criStatus();
    const running = !force && before.loaded && before.snapshotter === SNAPSHOTTER && (before.configPath === undefined || before.configPath === wantedPath);
    if (running) return { restarted: false };
    this.logger.info({ cri: before }, "restarting containerd: its CRI does not run the wanted config yet");
    await this.runtime.restart();
    this.step(state, "restart");
    const after = await this.waitCri(wantedPath);
    return after.ok ? { restarted: true } : { restarted: true, failed: after.reason };
  }

  private async waitCri(wantedPath: string): Promise<{ ok: true } | { ok: false; reason: string }> {
    const end = Date.now() + (this.o.verifyTimeoutMs ?? 30_000);
    let reason = "";
    while (Date.now() < end) {
      const st = await this.runtime.criStatus();
      // containerd 2.x does not report config_path; its dump of the candidate was checked before the write.
      if (st.loaded && st.snapshotter === SNAPSHOTTER && (st.configPath === undefined || st.configPath === wantedPath)) return { ok: true };
      reason = st.loaded ? `CRI runs with snapshotter ${JSON.stringify(st.snapshotter)} and config_path ${JSON.stringify(st.configPath)}` : st.reason;
      await new Promise((r) => setTimeout(r, 250));
    }
    return { ok: false, reason };
  }

  /**
   * The live CRI did not come up: put back the file this write replaced (the node's own
   * config as it was a moment ago, never an older backup), restart, report.
   */
  private async rollback(state: State, live: string, reason: string, candidateSha: string, replaced: { text: string | undefined } | undefined): Promise<never> {
    if (replaced) {
      // This run wrote the file: what it replaced (absent: it did not exist).
      if (replaced.text !== undefined) writeAtomic(live, replaced.text, metaOf(live) ?? state.original);
      else rmSync(live, { force: true });
    } else {
      // An earlier run wrote it (a crash before the restart): the node's own config as in uninstall.
      this.giveBack(state, live, readIf(live));
    }
    state.failed = { sha256: candidateSha, reason };
    state.writtenSha256 = undefined;
    this.saveState(state);
    await this.runtime.restart();
    this.logger.error({ reason }, "containerd did not run CRI with the snapshotter after the restart: the node's previous config restored");
    throw new InstallError("cri-verify-failed", `containerd did not run CRI with the snapshotter after the restart (${reason}); the node's previous config was restored and containerd restarted`, reason);
  }

  private writeHosts(state: State, hosts: HostsEntry[]): void {
    const root = this.h(state.hostsDir);
    const wanted = new Set(hosts.map((e) => e.dir));
    for (const e of hosts) {
      const dir = join(root, e.dir);
      const owned = state.hostsOwned.includes(e.dir);
      if (existsSync(join(dir, "hosts.toml")) && !owned && !existsSync(join(dir, MARKER))) {
        // The node's own hosts.toml wins; apparate does not overwrite it.
        this.logger.warn({ registry: e.dir, dir }, "a hosts.toml apparate did not write exists: left as it is");
        continue;
      }
      mkdirSync(dir, { recursive: true });
      const text = renderHostsEntry(e);
      if (readIf(join(dir, "hosts.toml")) !== text) writeAtomic(join(dir, "hosts.toml"), text, { mode: 0o644, uid: 0, gid: 0 });
      writeFileSync(join(dir, MARKER), "written by apparate node-agent\n");
      if (!owned) state.hostsOwned.push(e.dir);
    }
    // Mirrors dropped from the configuration: only directories apparate owns, never a moved legacy one.
    for (const d of [...state.hostsOwned]) {
      if (!wanted.has(d)) {
        rmSync(join(root, d), { recursive: true, force: true });
        state.hostsOwned = state.hostsOwned.filter((x) => x !== d);
      }
    }
  }

  private writeSnapshotterConfig(): void {
    const dir = this.h(this.o.snapshotterConfigDir);
    mkdirSync(dir, { recursive: true });
    writeFileSync(join(dir, "config.toml"), renderSnapshotterConfig(this.o.mirrors, new Set(this.o.plainHttp)));
  }

  /**
   * Undoes apply(). Restores the original bytes, mode and owner when the live file is
   * still what apparate wrote; otherwise takes out only apparate's keys and gives the
   * moved entries back. A backup is deleted only once it is restored (or equal to the live file).
   */
  async uninstall(): Promise<UninstallResult> {
    const state = this.readState();
    const target = state?.target ?? this.target;
    const live = this.h(target);
    const backup = this.backupOf(target);
    const notes: string[] = [];
    const current = readIf(live);
    const backupBytes = existsSync(backup) ? readFileSync(backup) : undefined;
    let restored = false;
    let keysRemoved = false;
    // Installed into a drop-in only: the main file was never apparate's to give back (k0s may have regenerated it meanwhile).
    const mainUntouched = state?.dropIn !== undefined && state.writtenSha256 === undefined;
    if (this.removeDropIns(state, notes)) this.logger.info({ config: target }, "apparate's containerd drop-in removed");
    if (state) state.dropIn = undefined;
    if (mainUntouched) {
      restored = true;
    } else if (current === undefined) {
      restored = !state?.originalExisted;
      if (!restored) notes.push(`${target} is gone; the backup stays at ${target}.apparate-backup`);
    } else if (state?.original && sha256(current) === state.original.sha256) {
      restored = true; // already the original (restored before a crash, or never written)
    } else if (state?.writtenSha256 && sha256(current) === state.writtenSha256) {
      if (this.giveBack(state, live, current) === "keys-removed") {
        keysRemoved = true;
        notes.push(`${target} was rewritten after apparate installed (config management) and apparate re-applied to it: the backup from install time is older than that config, so apparate removed its own keys from the live file instead of restoring the backup, and deleted the backup`);
        this.logger.warn({ config: target }, "containerd config regenerated since install: removed apparate's keys, did not restore the older backup");
      } else {
        restored = Boolean(backupBytes) || !state.originalExisted;
        this.logger.info({ config: target }, "containerd config restored from the backup");
      }
    } else {
      // Someone changed the file after apparate (or the state is lost): keep their changes.
      const record = state?.record ?? (backupBytes ? this.recordFromBackup(backupBytes.toString("utf8")) : undefined);
      const next = removeApparate(current, { snapshotterSocket: this.o.snapshotterSocket, snapshotterName: SNAPSHOTTER }, record);
      if (!sameValue(parseConfig(next), parseConfig(current))) writeAtomic(live, next, metaOf(live));
      const now = readFileSync(live, "utf8");
      restored = backupBytes ? sha256(now) === sha256(backupBytes) : !state && !hasApparateKeys(current, this.o.snapshotterSocket);
      if (!restored && !backupBytes) notes.push(`${target}: apparate's keys removed; no backup was there to restore`);
      if (!restored && backupBytes) notes.push(`${target} changed since apparate wrote it: apparate's keys removed, the original kept at ${target}.apparate-backup`);
      this.logger.warn({ config: target }, "containerd config changed since apparate wrote it: removed apparate's keys only");
    }
    if (state) this.step(state, "config");

    const st = await this.runtime.criStatus();
    let restarted = false;
    if (!st.loaded || st.snapshotter === SNAPSHOTTER) {
      await this.runtime.restart();
      restarted = true;
    }
    if (state) this.step(state, "restart");

    this.removeHostsAndSnapshotterConfig(state);
    if (state) this.step(state, "hosts");

    if (backupBytes && (restored || keysRemoved || (current !== undefined && sha256(readFileSync(live)) === sha256(backupBytes)))) rmSync(backup, { force: true });
    if (state) this.step(state, "cleanup");
    if (restored || keysRemoved || !backupBytes) rmSync(this.stateFile, { force: true });
    return { outcome: restored ? "restored" : keysRemoved ? "keys-removed" : "edited", restored, restarted, notes };
  }

  /** The node's config was regenerated after install: the backup is older than what apparate's last write was made from. */
  private staleBackup(state: State): boolean {
    return state.baseSha256 !== undefined && state.firstBaseSha256 !== undefined && state.baseSha256 !== state.firstBaseSha256;
  }

  /**
   * The live file is apparate's last write: gives the node's own config back. The backup
   * only when it is what that write was made from; otherwise apparate's keys come out of
   * the live file (the record holds the values they replaced in the newer config).
   */
  private giveBack(state: State, live: string, current: string | undefined): "restored" | "keys-removed" {
    if (current !== undefined && this.staleBackup(state)) {
      writeAtomic(live, removeApparate(current, { snapshotterSocket: this.o.snapshotterSocket, snapshotterName: SNAPSHOTTER }, state.record), metaOf(live));
      return "keys-removed";
    }
    const backup = this.backupOf(state.target);
    if (state.originalExisted && existsSync(backup)) writeAtomic(live, readFileSync(backup), state.original ?? metaOf(live));
    else if (!state.originalExisted) rmSync(live, { force: true });
    return "restored";
  }

  /** Without a state file: what apparate would have changed in the original (the backup) is what to give back. */
  private recordFromBackup(original: string): EditRecord | undefined {
    try {
      const v = original.trim() === "" ? 2 : versionOf(parseConfig(original));
      const r = applyApparate(original, { ...this.editOptions(v >= 3 ? 2 : 1), replaceSnapshotter: true });
      return r.record;
    } catch { return undefined; }
  }

  /** Which snapshotter the file on disk selects (for reports). */
  fileSnapshotter(major: number): string {
    const t = readIf(this.h(this.target)) ?? "";
    const doc = parseConfig(t);
    return criSnapshotter(doc, t.trim() === "" ? schemaVersionFor(major) : versionOf(doc));
  }
}

/** Whether a config text carries apparate's proxy plugin (its socket). */
function hasApparateKeys(text: string, socket: string): boolean {
  try { return parseConfig(text).proxy_plugins?.[SNAPSHOTTER]?.address === socket; } catch { return false; }
}

/** The document with its `imports` made absolute (relative ones are relative to the directory of the path containerd is given). */
function absoluteImports(doc: Table, configPath: string): Table {
  if (!Array.isArray(doc.imports)) return doc;
  return { ...doc, imports: (doc.imports as string[]).map((i) => (isAbsolute(i) ? i : join(dirname(configPath), i))) };
}

/** The main document with its imports as the explicit, ordered list of files (what containerd would expand them to). */
function explicitImports(doc: Table, files: { path: string }[]): Table {
  return { ...doc, imports: files.map((f) => f.path) };
}

/** Why a dumped config does not run apparate's snapshotter for CRI, if it does not. */
function notApplied(dumped: Table, major: number, socket: string): string | undefined {
  const p = criPaths(versionOf(dumped) >= 3 ? 3 : 2);
  const snap = get(dumped, [...p.images, "snapshotter"]);
  if (snap !== SNAPSHOTTER) return `CRI's snapshotter would be ${JSON.stringify(snap ?? DEFAULT_SNAPSHOTTER)}`;
  if (get(dumped, [...p.images, "disable_snapshot_annotations"]) !== false) return "CRI would not pass the snapshot annotations lazy pulling needs (disable_snapshot_annotations)";
  if (get(dumped, ["proxy_plugins", SNAPSHOTTER, "address"]) !== socket) return `proxy_plugins.${SNAPSHOTTER} would not point at ${socket}`;
  if (major >= 2 && !(typeof get(dumped, [...p.registry, "config_path"]) === "string" && get(dumped, [...p.registry, "config_path"]) !== "")) return "CRI would have no registry config_path";
  return undefined;
}

/** The legacy registry tables apparate moved out (`mirrors`, or `configs` with each host's `tls`), as they were. */
function movedTable(record: EditRecord, kind: "mirrors" | "configs"): Table | undefined {
  let out: Table | undefined;
  for (const { path, value } of record.moved) {
    const i = path.lastIndexOf("registry");
    if (kind === "mirrors" && path[i + 1] === "mirrors" && path.length === i + 2) out = { ...(out ?? {}), ...value };
    if (kind === "configs" && path[i + 1] === "configs" && path[i + 3] === "tls") out = { ...(out ?? {}), [path[i + 2]!]: { tls: value } };
  }
  return out;
}

/** Replaces the entry for the same path, or adds it. */
function upsert<T extends { path: string[] }>(list: T[], item: T): void {
  const i = list.findIndex((x) => same(x.path, item.path));
  if (i >= 0) list[i] = item;
  else list.push(item);
}

const same = (a: string[], b: string[]) => a.length === b.length && a.every((x, i) => x === b[i]);

/** Go's filepath.Glob for one directory level (`*` and `?`), sorted as Go returns it. */
function globOne(dir: string, pat: string): string[] {
  if (!/[*?[]/.test(pat)) return existsSync(join(dir, pat)) ? [join(dir, pat)] : [];
  if (!existsSync(dir)) return [];
  const re = new RegExp(`^${pat.replace(/[.+^${}()|\\]/g, "\\$&").replace(/\*/g, "[^/]*").replace(/\?/g, "[^/]")}$`);
  return readdirSync(dir).filter((f) => re.test(f)).sort().map((f) => join(dir, f));
}
