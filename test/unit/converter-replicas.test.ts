// Two converter replicas on one cluster convert a digest once: a Lease per conversion
// (Kubernetes API stand-in, the real client-node), taken over when its holder died.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Registry } from "prom-client";
import { compileConfig } from "../../src/config/config.js";
import { LeaseClaims, leaseName } from "../../src/converter/claim.js";
import type { ConvertImage } from "../../src/converter/engine.js";
import { ConverterMetrics } from "../../src/converter/metrics.js";
import { Converter } from "../../src/converter/service.js";
import { createLogger } from "../../src/observability/logger.js";
import { KubeApiStandIn } from "../support/kube-api-standin.js";

const config = compileConfig({ acceleration: { registries: ["reg.example:5000"] } });
const finding = { registry: "reg.example:5000", repository: "team/app", tag: "v1", digest: `sha256:${"a".repeat(64)}`, reason: "missing" as const };

describe("replicas coordinate through Leases", () => {
  let api: KubeApiStandIn;
  beforeAll(async () => { api = new KubeApiStandIn(); await api.start(); });
  afterAll(async () => { await api.stop(); });

  function replica(name: string, convert: ConvertImage, now?: () => Date) {
    const claims = new LeaseClaims(api.kubeConfig(), "apparate", name, 1800, now);
    const c = new Converter({ config, convert, claims, metrics: new ConverterMetrics(new Registry(), () => ({ queued: 0, running: 0 })), logger: createLogger({ level: "silent" }) });
    return c;
  }

  it("two replicas offered the same digest at once: one conversion, the other sees it is elsewhere", async () => {
    let calls = 0;
    let release!: () => void;
    const gate = new Promise<void>((r) => { release = r; });
    const engine: ConvertImage = async () => { calls++; await gate; return { result: "converted", bytesIn: 1, bytesOut: 1 }; };
    const a = replica("converter-a", engine);
    const b = replica("converter-b", engine);
    expect(a.submitFinding(finding).outcome).toBe("queued");
    await new Promise((r) => setTimeout(r, 200));
    expect(b.submitFinding(finding).outcome).toBe("queued");
    await b.queue.idle();
    expect(b.conversions().recent[0]!.state).toBe("elsewhere");
    // Not remembered as done here: if the holder fails, this replica's next offer converts.
    expect(b.queue.submit({ ...b.conversions().recent[0]!, key: `reg.example:5000/team/app:v1@${finding.digest}`, slot: "reg.example:5000/team/app:v1" } as never).outcome).not.toBe("duplicate");
    await b.queue.idle(); // that offer too found the Lease held
    release();
    await a.queue.idle();
    expect(calls).toBe(1);
    expect(a.conversions().recent[0]!.state).toBe("converted");
    // Released when done: a later push of the same tag at a new digest is free to convert.
    expect(api.get("leases", leaseName(`reg.example:5000/team/app:v1@${finding.digest}`), "apparate", "coordination.k8s.io")).toBeUndefined();
  });

  it("a Lease left by a replica that died is taken over after its duration (negative control: not before)", async () => {
    const key = `reg.example:5000/team/app:v1@sha256:${"b".repeat(64)}`;
    const dead = new LeaseClaims(api.kubeConfig(), "apparate", "converter-dead", 60);
    expect(await dead.claim(key)).toBe(true);
    const early = new LeaseClaims(api.kubeConfig(), "apparate", "converter-b", 60, () => new Date(Date.now() + 30_000));
    expect(await early.claim(key)).toBe(false);
    const late = new LeaseClaims(api.kubeConfig(), "apparate", "converter-b", 60, () => new Date(Date.now() + 61_000));
    expect(await late.claim(key)).toBe(true);
    await late.release(key);
  });
});
