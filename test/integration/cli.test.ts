// `apparate explain` goes through the server's own fact gathering and planning: against
// a real registry, its patch is the one the webhook answers for the same pod.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { execFileSync } from "node:child_process";
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { stringify } from "yaml";
import { pushImage, registryAvailable, startRegistry, type RunningRegistry } from "../support/registry.js";
import { decodePatch, review, startWebhook, type TestWebhook } from "../support/webhook.js";
import type { PodLike } from "../../src/mutate/pod.js";

describe.skipIf(!registryAvailable)("apparate explain", () => {
  let reg: RunningRegistry;
  let hook: TestWebhook;
  let configDoc: Record<string, unknown>;
  beforeAll(async () => {
    reg = await startRegistry();
    await pushImage(reg.url, "team/web", "1.0-apparate", "oci-index");
    configDoc = { acceleration: { registries: [reg.host] }, registry: { plainHttp: [reg.host] }, rewrite: { registries: { "quay.io": "quay.tencentcloudcr.com" } } };
    hook = await startWebhook(configDoc);
  }, 30_000);
  afterAll(async () => { await hook?.stop(); await reg?.stop(); });

  it("prints the same patch as the webhook, with the registry's real answers", async () => {
    const pod: PodLike = {
      apiVersion: "v1", kind: "Pod", metadata: { generateName: "web-", namespace: "default" },
      spec: { containers: [
        { name: "web", image: `${reg.host}/team/web:1.0` },
        { name: "absent", image: `${reg.host}/team/absent:1.0` },
        { name: "exporter", image: "quay.io/prometheus/node-exporter:v1.8.0" },
      ] },
    };
    const dir = mkdtempSync(join(tmpdir(), "apparate-explain-"));
    writeFileSync(join(dir, "pod.yaml"), stringify(pod));
    writeFileSync(join(dir, "config.json"), JSON.stringify(configDoc));
    const out = JSON.parse(execFileSync(process.execPath, ["--import", "tsx", "src/cli.ts", "explain", "-f", join(dir, "pod.yaml"), "--config", join(dir, "config.json"), "--json"], { encoding: "utf8" }));
    const served = await hook.post(review(pod));
    expect(out.pods).toHaveLength(1);
    expect(out.pods[0].patch).toEqual(decodePatch(served.json));
    expect(out.pods[0].plan.containers.map((d: { outcome: string }) => d.outcome)).toEqual(["accelerated", "accelerated-absent", "rewritten"]);
  }, 30_000);
});
