// The CLI as a person meets it: help for every command, one-line errors with the
// documented exit codes, explain on real workload manifests (kubernetes/website
// examples, sources in test/fixtures/workloads/SOURCES.md), offline image-cache
// matching, and check-image answering with the webhook's own planner.
import { describe, expect, it } from "vitest";
import { mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { main } from "../../src/cli/main.js";
import { COMMANDS } from "../../src/cli/commands.js";
import { analysePod, plan } from "../../src/mutate/plan.js";
import { compileConfig } from "../../src/config/config.js";
import { EXIT_NOT_ACCELERATED } from "../../src/cli/check-image.js";

const FIX = "test/fixtures/workloads";
const dir = mkdtempSync(join(tmpdir(), "apparate-cli-"));
const file = (name: string, text: string) => { const p = join(dir, name); writeFileSync(p, text); return p; };

async function run(...argv: string[]): Promise<{ code: number; out: string; err: string }> {
  let out = ""; let err = "";
  const sink = (f: (s: string) => void) => ({ write: (s: string) => { f(s); return true; } }) as unknown as NodeJS.WritableStream;
  const code = await main(argv, sink((s) => { out += s; }), sink((s) => { err += s; }));
  return { code, out, err };
}

const REWRITE_CONFIG = file("config.json", JSON.stringify({
  acceleration: { registries: ["quay.io", "docker.io", "registry.k8s.io"] },
  rewrite: { registries: { "quay.io": "quay.tencentcloudcr.com" } },
}));

describe("help and version", () => {
  it.each(COMMANDS.map((c) => [c.spec.name, c] as const))("%s --help names every option and environment variable, exit 0", async (name, c) => {
    const r = await run(name, "--help");
    expect(r.code).toBe(0);
    expect(r.out).toContain(`usage: apparate ${name}`);
    for (const o of Object.keys(c.spec.options)) expect(r.out).toContain(`--${o}`);
    for (const e of Object.keys(c.spec.env ?? {})) expect(r.out).toContain(e);
  });

  it("--version prints package.json's version; help lists the commands; no command is a usage error", async () => {
    const pkg = JSON.parse(readFileSync("package.json", "utf8")) as { version: string };
    expect(await run("--version")).toMatchObject({ code: 0, out: `apparate ${pkg.version}\n` });
    const help = await run("--help");
    expect(help.code).toBe(0);
    for (const c of COMMANDS) expect(help.out).toContain(c.spec.name);
    expect((await run()).code).toBe(2);
    expect(await run("help", "explain")).toMatchObject({ code: 0, out: expect.stringContaining("--image-caches") });
  });
});

describe("errors: one line, exit 2 for usage and 1 for failures, no stack trace", () => {
  it.each([
    ["a misspelt flag", ["explain", "--fil", "x.yaml"], 2, /^apparate explain: unknown option '--fil'\n/],
    ["an unknown command", ["expalin"], 2, /unknown command "expalin" \(did you mean explain\?\)/],
    ["explain without -f", ["explain"], 2, /-f FILE is required/],
    ["a bad --lookups", ["explain", "-f", "x", "--lookups", "maybe"], 2, /--lookups must be one of/],
    ["check-image without an image", ["check-image"], 2, /an IMAGE is required/],
    ["check-image with two images", ["check-image", "a", "b"], 2, /unexpected argument "b"/],
    ["a missing file", ["explain", "-f", "/nonexistent/pod.yaml"], 1, /^apparate explain: \/nonexistent\/pod.yaml: no such file\n$/],
    ["a missing config file", ["check-image", "nginx", "--config", "/nonexistent/c.yaml"], 1, /^apparate check-image: .*nonexistent\/c.yaml/],
  ])("%s", async (_what, argv, code, message) => {
    const r = await run(...argv);
    expect(r.code).toBe(code);
    expect(r.err).toMatch(message);
    expect(r.err).not.toMatch(/\n\s+at /); // no stack frames
    expect(r.out).toBe("");
  });

  it("broken YAML names the file, line and column and exits 1 (not [object Object] and 0)", async () => {
    const p = file("broken.yaml", "apiVersion: v1\nkind: Pod\nspec:\n  containers: [\n   - name: x\n");
    const r = await run("explain", "-f", p, "--lookups", "unknown");
    expect(r.code).toBe(1);
    expect(r.err).toMatch(new RegExp(`^apparate explain: ${p}:\\d+:\\d+: \\S`));
    expect(r.err).not.toContain("[object Object]");
  });

  it("a pod the webhook would refuse (containers: [null]) is reported, not a crash; the valid pod beside it is explained", async () => {
    const p = file("null.yaml", "apiVersion: v1\nkind: Pod\nmetadata: {name: bad}\nspec: {containers: [null]}\n---\napiVersion: v1\nkind: Pod\nmetadata: {name: good}\nspec: {containers: [{name: c, image: quay.io/a/b:1}]}\n");
    const r = await run("explain", "-f", p, "--lookups", "absent", "--config", REWRITE_CONFIG, "--json");
    expect(r.code).toBe(1);
    const doc = JSON.parse(r.out) as { pods: Array<{ source: string; error?: string; plan?: { containers: Array<{ outcome: string }> } }> };
    expect(doc.pods[0]).toMatchObject({ source: "Pod/bad", error: expect.stringMatching(/^pod\.spec\.containers\[0\]: must be object \(found null\)/) });
    expect(doc.pods[1]!.plan!.containers[0]!.outcome).toBe("rewritten");
  });
});

describe("explain reads workloads, lists and many documents (real manifests)", () => {
  it.each([
    ["nginx-deployment.yaml", "Deployment/nginx-deployment", "default", "nginx:1.14.2", "docker.io/library/nginx:1.14.2-apparate"],
    ["statefulset.yaml", "StatefulSet/web", "default", "registry.k8s.io/nginx-slim:0.24", "registry.k8s.io/nginx-slim:0.24-apparate"],
    ["frontend.yaml", "ReplicaSet/frontend", "default", "nginx", "docker.io/library/nginx:latest-apparate"],
    ["job.yaml", "Job/pi", "default", "perl", "docker.io/library/perl:latest-apparate"],
    ["cronjob.yaml", "CronJob/hello", "default", "busybox", "docker.io/library/busybox:latest-apparate"],
  ])("%s: the pod template of %s is planned in namespace %s, swapped as the webhook would", async (name, source, ns, original, swapped) => {
    const r = await run("explain", "-f", join(FIX, name), "--lookups", "exists", "--config", REWRITE_CONFIG, "--json");
    expect(r.code).toBe(0);
    const doc = JSON.parse(r.out) as { pods: Array<{ source: string; namespace: string; plan: { containers: Array<{ original: string; image: string }> } }>; skipped: string[] };
    expect(doc.pods).toHaveLength(1);
    expect(doc.pods[0]).toMatchObject({ source, namespace: ns });
    expect(doc.pods[0]!.plan.containers[0]).toMatchObject({ original, image: swapped });
  });

  it("the DaemonSet in kube-system is skipped as the webhook skips it (negative control)", async () => {
    const r = await run("explain", "-f", join(FIX, "daemonset.yaml"), "--lookups", "exists", "--config", REWRITE_CONFIG, "--json");
    const doc = JSON.parse(r.out) as { pods: Array<{ namespace: string; plan: { skipped?: string } }> };
    expect(doc.pods[0]).toMatchObject({ namespace: "kube-system", plan: { skipped: "namespace kube-system is never mutated" } });
  });

  it("kind: List (kubectl get -o yaml) and several files give one JSON document with every pod; non-workloads are listed as skipped", async () => {
    const list = file("list.yaml", JSON.stringify({ apiVersion: "v1", kind: "List", items: [
      { apiVersion: "v1", kind: "Pod", metadata: { name: "p1", namespace: "default" }, spec: { containers: [{ name: "a", image: "quay.io/x/y:1" }] } },
      { apiVersion: "v1", kind: "ConfigMap", metadata: { name: "cm" } },
    ] }));
    const r = await run("explain", "-f", list, "-f", join(FIX, "statefulset.yaml"), "--lookups", "unknown", "--config", REWRITE_CONFIG, "--json");
    expect(r.code).toBe(0);
    const doc = JSON.parse(r.out) as { pods: Array<{ source: string }>; skipped: string[] };
    expect(doc.pods.map((p) => p.source)).toEqual(["Pod/default/p1", "StatefulSet/web"]);
    expect(doc.skipped.join("\n")).toMatch(/kind ConfigMap/);
    expect(doc.skipped.join("\n")).toMatch(/kind Service/);
  });

  it("reads stdin with -f -", async () => {
    const { spawnSync } = await import("node:child_process");
    const r = spawnSync(process.execPath, ["--import", "tsx", "src/cli.ts", "explain", "-f", "-", "--lookups", "exists", "--config", REWRITE_CONFIG, "--json"], { input: readFileSync(join(FIX, "nginx-deployment.yaml")), encoding: "utf8" });
    expect(r.status).toBe(0);
    expect(JSON.parse(r.stdout).pods[0].source).toBe("Deployment/nginx-deployment");
  });

  it("a closed pipe (| head -1) ends quietly with no EPIPE trace", async () => {
    const { spawnSync } = await import("node:child_process");
    const big = file("many.yaml", Array.from({ length: 400 }, (_, i) => `apiVersion: v1\nkind: Pod\nmetadata: {name: p${i}}\nspec: {containers: [{name: c, image: quay.io/a/b:${i}}]}\n`).join("---\n"));
    const r = spawnSync("bash", ["-o", "pipefail", "-c", `${process.execPath} --import tsx src/cli.ts explain -f ${big} --lookups exists --config ${REWRITE_CONFIG} | head -1`], { encoding: "utf8" });
    expect(r.stdout.trim()).toMatch(/^Pod\/p0/);
    expect(r.stderr).not.toMatch(/EPIPE|Error/);
    expect(r.status).toBe(0);
  });
});

describe("explain --image-caches: cache matching offline", () => {
  const caches = (phase: string) => file(`caches-${phase}.yaml`, [
    { apiVersion: "eks.cloud.tencent.com/v1", kind: "ImageCache", metadata: { name: "web-cache", creationTimestamp: "2026-11-01T00:00:00Z" }, spec: { images: ["nginx:1.14.2"], imageCacheSize: 20 }, status: { imcId: "imc-web", imcPhase: phase } },
  ].map((o) => JSON.stringify(o)).join("\n---\n"));

  it("a Ready cache holding the pod's images is written to the pod; a cache not yet Ready is not (negative control)", async () => {
    const ready = await run("explain", "-f", join(FIX, "nginx-deployment.yaml"), "--lookups", "absent", "--image-caches", caches("Ready"), "--json");
    const doc = JSON.parse(ready.out) as { pods: Array<{ plan: { imageCache: { result: string; imcId?: string } }; patch: Array<{ path: string; value: Record<string, string> }> }>; notes: string[] };
    expect(doc.pods[0]!.plan.imageCache).toMatchObject({ result: "used", imcId: "imc-web" });
    expect(JSON.stringify(doc.pods[0]!.patch)).toContain('"eks.tke.cloud.tencent.com/use-image-cache":"imc-web"');
    expect(doc.notes.join()).toMatch(/imageCache.enabled is false/);
    const creating = await run("explain", "-f", join(FIX, "nginx-deployment.yaml"), "--lookups", "absent", "--image-caches", caches("Creating"), "--json");
    const doc2 = JSON.parse(creating.out) as { pods: Array<{ plan: { imageCache: { result: string } }; patch: unknown }> };
    expect(doc2.pods[0]!.plan.imageCache.result).toBe("missed");
    expect(JSON.stringify(doc2.pods[0]!.patch)).not.toContain("use-image-cache");
  });
});

describe("check-image answers with the webhook's planner", () => {
  const config = compileConfig(JSON.parse(readFileSync(REWRITE_CONFIG, "utf8")));
  const planned = (image: string) => {
    const input = { pod: { kind: "Pod", metadata: { name: "x" }, spec: { containers: [{ name: "check", image }] } }, namespace: "default", operation: "CREATE" };
    const analysis = analysePod(input, config);
    return plan(input, { lookups: new Map(analysis.candidates.map((c) => [c.key, { kind: "exists" as const, mediaType: "application/vnd.oci.image.manifest.v1+json" }])), now: 0 }, config, analysis).containers[0]!;
  };

  it.each([
    ["nginx:1.25", 0],
    ["quay.io/prometheus/node-exporter:v1.8.0", 0],                 // swap + rewrite
    ["quay.io/prometheus/node-exporter:v1.8.0-apparate", EXIT_NOT_ACCELERATED], // written accelerated: never a second suffix
    ["docker.io/library/nginx:1.25-apparate", EXIT_NOT_ACCELERATED],  // already accelerated
    [`nginx:${"a".repeat(125)}`, EXIT_NOT_ACCELERATED],             // the suffix would pass the 128-character tag limit
    ["nginx@sha256:" + "0".repeat(64), EXIT_NOT_ACCELERATED],        // digest-pinned
    ["ghcr.io/org/app:1", EXIT_NOT_ACCELERATED],                    // registry not allowed
    ["Not A Reference", EXIT_NOT_ACCELERATED],                      // malformed
  ])("%s: same image and outcome as plan(), exit %i", async (image, code) => {
    const r = await run("check-image", image, "--config", REWRITE_CONFIG, "--json");
    expect(r.code).toBe(code);
    const got = JSON.parse(r.out) as { decision: { image: string; outcome: string; rule?: string } };
    const want = planned(image);
    expect(got.decision).toMatchObject({ image: want.image, outcome: want.outcome });
    expect(got.decision.image.match(/-apparate/g)?.length ?? 0).toBeLessThanOrEqual(1);
  });

  it("--namespace applies the namespace's enablement: a namespace not enabled leaves the image alone", async () => {
    const r = await run("check-image", "nginx:1.25", "--config", REWRITE_CONFIG, "--namespace", "team-x", "--json");
    expect(r.code).toBe(EXIT_NOT_ACCELERATED);
    expect(JSON.parse(r.out).skipped).toMatch(/team-x is not enabled/);
  });
});
