// The TypeScript side of test/apiserver/driver (Go, on kube-apiserver's own mutating webhook
// admission plugin): one JSON request per line on its stdin, one answer per line on stdout.
import { spawn, type ChildProcessWithoutNullStreams } from "node:child_process";
import { existsSync, mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createInterface } from "node:readline";
import type { PodLike } from "../../src/mutate/pod.js";

export const DRIVER_BIN = ".tmp/bin/admission-driver";
export const driverAvailable = existsSync(DRIVER_BIN);

export interface DriverRequest {
  id: string;
  op?: "admit" | "check";
  operation?: "CREATE" | "UPDATE" | "DELETE";
  subresource?: string;
  namespace?: string;
  pod: PodLike;
  oldPod?: PodLike;
}

export interface WebhookCall { key: string; configuration: string; webhook: string; mutated: boolean; failedOpen: boolean; patch?: unknown[] }

export interface DriverAnswer {
  id: string;
  allowed: boolean;
  error?: string;
  errorCode?: number;
  patchedPod?: PodLike;
  webhookCalls: WebhookCall[];
  validationErrors: string[];
  nodesBefore: string[];
  nodesAfter: string[];
  elapsedMs: number;
}

export interface DriverSetup {
  webhookConfigurations: unknown[];
  namespaces: Array<{ name: string; labels: Record<string, string> }>;
  nodes: unknown[];
  /** "namespace/name:port" -> https URL the Service resolves to. */
  services: Record<string, string>;
  sidecarInjector?: boolean;
  /** An AdmissionConfiguration file (kube-apiserver's --admission-control-config-file): client credentials from its kubeconfig. */
  admissionConfig?: string;
}

export interface AdmissionDriver {
  admit(req: DriverRequest): Promise<DriverAnswer>;
  stderr(): string;
  stop(): Promise<void>;
}

export function startDriver(setup: DriverSetup): AdmissionDriver {
  const dir = mkdtempSync(join(tmpdir(), "apparate-driver-"));
  const file = (name: string, v: unknown) => { const p = join(dir, name); writeFileSync(p, JSON.stringify(v)); return p; };
  const args = [
    "--webhooks", file("webhooks.json", setup.webhookConfigurations),
    "--namespaces", file("namespaces.json", setup.namespaces),
    "--nodes", file("nodes.json", setup.nodes),
    ...Object.entries(setup.services).flatMap(([k, v]) => ["--service", `${k}=${v}`]),
    ...(setup.sidecarInjector ? ["--sidecar-injector"] : []),
    ...(setup.admissionConfig ? ["--admission-config", setup.admissionConfig] : []),
  ];
  const child: ChildProcessWithoutNullStreams = spawn(DRIVER_BIN, args, { stdio: ["pipe", "pipe", "pipe"] });
  let err = "";
  child.stderr.on("data", (d: Buffer) => { err = (err + d.toString()).slice(-20_000); });
  const waiting: Array<{ resolve: (a: DriverAnswer) => void; reject: (e: Error) => void }> = [];
  createInterface({ input: child.stdout }).on("line", (line) => {
    const w = waiting.shift();
    if (!w) return;
    try { w.resolve(JSON.parse(line) as DriverAnswer); } catch (e) { w.reject(e as Error); }
  });
  child.on("exit", (code) => {
    for (const w of waiting.splice(0)) w.reject(new Error(`admission-driver exited (${code}): ${err}`));
  });
  return {
    admit: (req) => new Promise((resolve, reject) => {
      waiting.push({ resolve, reject });
      child.stdin.write(JSON.stringify({ op: "admit", operation: "CREATE", subresource: "", ...req }) + "\n");
    }),
    stderr: () => err,
    stop: () => new Promise((r) => { if (child.exitCode !== null) { r(); return; } child.once("exit", () => r()); child.stdin.end(); }),
  };
}
