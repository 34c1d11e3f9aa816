// Know the node: which config the running containerd reads (its --config, from the
// host's /proc), its socket, the systemd unit that restarts it (from its cgroup), and
// k3s/rke2, whose embedded containerd renders config.toml from config.toml.tmpl on
// every start (so the template is what must be edited, and their service restarted).
import { existsSync, readdirSync, readFileSync } from "node:fs";
import { basename, dirname, join } from "node:path";

export interface NodeFacts {
  flavour: "containerd" | "k3s" | "rke2";
  /** The file apparate edits (host path). */
  config: string;
  /** When `config` does not exist yet: the file whose content it starts from (k3s's rendered config). */
  seedFrom?: string;
  socket: string;
  restartCommand: string[];
  pid?: number;
}

const DEFAULT_CONFIG = "/etc/containerd/config.toml";
const DEFAULT_SOCKET = "/run/containerd/containerd.sock";

function flag(args: string[], long: string, short: string): string | undefined {
  for (let i = 0; i < args.length; i++) {
    const a = args[i]!;
    if (a === long || a === short) return args[i + 1];
    if (a.startsWith(`${long}=`)) return a.slice(long.length + 1);
    if (a.startsWith(`${short}=`)) return a.slice(short.length + 1);
  }
  return undefined;
}

/** The systemd unit a process belongs to, from /proc/<pid>/cgroup (v1 or v2). */
export function unitOf(cgroup: string): string | undefined {
  for (const line of cgroup.split("\n")) {
    const m = /\/([^/]+\.service)(?:\/|$)/.exec(line.split(":").slice(2).join(":"));
    if (m) return m[1];
  }
  return undefined;
}

/** Pure: what a containerd process's command line and cgroup say. */
export function factsFrom(argv: string[], cgroup: string, exists: (p: string) => boolean): NodeFacts {
  const config = flag(argv, "--config", "-c") ?? DEFAULT_CONFIG;
  const socket = flag(argv, "--address", "-a") ?? DEFAULT_SOCKET;
  const unit = unitOf(cgroup);
  const restartCommand = ["systemctl", "restart", unit ?? "containerd.service"];
  const m = /^\/var\/lib\/rancher\/(k3s|rke2)\/agent\/etc\/containerd\/(config(?:-v3)?)\.toml$/.exec(config);
  if (m) {
    const flavour = m[1] as "k3s" | "rke2";
    const template = join(dirname(config), `${m[2]}.toml.tmpl`);
    return {
      flavour, config: template, ...(exists(template) ? {} : { seedFrom: config }), socket,
      restartCommand: ["systemctl", "restart", unit ?? (flavour === "k3s" ? "k3s.service" : "rke2-server.service")],
    };
  }
  return { flavour: "containerd", config, socket, restartCommand };
}

/** Finds the running containerd in the host's /proc (mounted under hostRoot). */
export function discoverContainerd(hostRoot: string): NodeFacts | undefined {
  const proc = join(hostRoot || "/", "proc");
  let pids: string[];
  try { pids = readdirSync(proc).filter((d) => /^\d+$/.test(d)); } catch { return undefined; }
  for (const pid of pids) {
    let argv: string[];
    try { argv = readFileSync(join(proc, pid, "cmdline"), "utf8").split("\0").filter((a) => a !== ""); } catch { continue; }
    if (argv.length === 0 || basename(argv[0]!) !== "containerd") continue;
    let cgroup = "";
    try { cgroup = readFileSync(join(proc, pid, "cgroup"), "utf8"); } catch { /* gone */ }
    return { ...factsFrom(argv, cgroup, (p) => existsSync(join(hostRoot || "/", p))), pid: Number(pid) };
  }
  return undefined;
}
