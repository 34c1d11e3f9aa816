import { describe, expect, it } from "vitest";
import { compileConfig, ConfigError, defaultConfig, parseConfigText } from "../../src/config/config.js";

describe("config", () => {
  it("defaults follow the seeds", () => {
    const c = defaultConfig();
    expect([...c.namespaces]).toEqual(["default"]);
    expect(c.acceleration.tagSuffix).toBe("-apparate");
    expect(c.acceleration.placement).toMatchObject({ mode: "required", nodeLabelKey: "cloud.tencent.com/apparate", nodeLabelValue: "true" });
    expect(c.imageCache).toMatchObject({ group: "eks.cloud.tencent.com", version: "v1", plural: "imagecaches", readyPhase: "Ready", matchMode: "all" });
    expect(c.admission).toEqual({
      deadlineMs: 2000, maxBodyBytes: 3 * 1024 * 1024, maxLookupsPerReview: 100, maxConnections: 1000,
      requestTimeoutMs: 10_000, idleTimeoutMs: 10_000, keepAliveTimeoutMs: 75_000,
      maxConnectionsPerSource: 250, maxReviewsPerSource: 32, largeReviewBytes: 256 * 1024, trustedSources: [],
      clientAuth: { enabled: false, allowedNames: [] },
    });
    expect(c.registry).toMatchObject({ tokenRealms: [], allowPrivateNetworks: [], maxConcurrentPerRegistry: 8, maxRegistryHosts: 1000 });
    expect(c.registry).toMatchObject({ positiveTtlSeconds: 600, negativeTtlSeconds: 30 });
  });

  it("accepts the seed's comma form of namespaces", () => {
    expect([...compileConfig({ namespaces: "default, sa1,sa2" }).namespaces]).toEqual(["default", "sa1", "sa2"]);
  });

  it("normalises Docker Hub's names in registry lists and rewrites", () => {
    const c = compileConfig({ acceleration: { registries: ["index.docker.io", "https://ccr.ccs.tencentyun.com/"] }, rewrite: { registries: { "registry-1.docker.io": "mirror.ccs.tencentyun.com" } } });
    expect([...c.acceleration.registries]).toEqual(["docker.io", "ccr.ccs.tencentyun.com"]);
    expect(c.rewrite.registries.get("docker.io")).toEqual({ domain: "mirror.ccs.tencentyun.com", prefix: "" });
  });

  it.each([
    ["acceleration:\n  tagSuffix: 5\n", "acceleration.tagSuffix: must be string (got 5)"],
    ["acceleration:\n  placement:\n    mode: sometimes\n", 'acceleration.placement.mode: must be equal to one of the allowed values (got "sometimes")'],
    ["registry:\n  requestTimeoutMs: -1\n", "registry.requestTimeoutMs: must be >= 10 (got -1)"],
    ["acceleration:\n  rules:\n    - repository: \"([\"\n", 'acceleration.rules.0.repository: must match format "regex" (got "([")'],
    ["namespaces: \"Default,,x\"\n", "namespaces"],
    ["registrry: {}\n", "registrry: unknown key"],
    ["admission:\n  deadlineMs: 20000\n", "admission.deadlineMs: must be <= 9000 (got 20000)"],
    ["rewrite:\n  registries:\n    quay.io: \"not a host!\"\n", "rewrite.registries.quay.io"],
    ["imageCache: [1]\n", "imageCache: must be object"],
    ["a: [\n", "not valid YAML"],
    ["registry:\n  tokenRealms: [\"http://auth.example.com\"]\n", 'registry.tokenRealms: "http://auth.example.com" is not a token service host'],
    ["registry:\n  allowPrivateNetworks: [\"10.0.0.0/99\"]\n", 'registry.allowPrivateNetworks: "10.0.0.0/99" is neither a host[:port] nor an address range'],
    ["admission:\n  maxLookupsPerReview: 0\n", "admission.maxLookupsPerReview: must be >= 1 (got 0)"],
    ["registry:\n  maxConcurrentPerRegistry: 1000\n", "registry.maxConcurrentPerRegistry: must be <= 256 (got 1000)"],
  ])("rejects %j naming the key and value", (text, message) => {
    try {
      parseConfigText(text, "config.yaml");
      expect.fail("should have thrown");
    } catch (err) {
      expect(err).toBeInstanceOf(ConfigError);
      expect((err as Error).message).toContain("config.yaml");
      expect((err as Error).message).toContain(message);
    }
  });
});

// Issue 24: the node label is written into every accelerated pod's nodeSelector; a key or
// value the API server refuses would make every such pod invalid, so the config refuses it.
describe("placement node label: a label key and a label value, as the API server validates a nodeSelector", () => {
  const withLabel = (placement: Record<string, unknown>) => () => compileConfig({ acceleration: { placement } });
  it.each([
    ["not a/valid~key"], ["a/b/c"], ["-leading-dash"], ["Example.com/abc"], ["example.com/"], ["/simple"], ["a".repeat(64)],
    [`${"a".repeat(254)}/abc`],
  ])("nodeLabelKey %j is refused with its path", (key) => {
    expect(withLabel({ nodeLabelKey: key })).toThrow(/acceleration\.placement\.nodeLabelKey/);
  });
  it.each([["not valid!"], ["-true"], ["a".repeat(64)], ["ā"]])("nodeLabelValue %j is refused with its path", (value) => {
    expect(withLabel({ nodeLabelValue: value })).toThrow(/acceleration\.placement\.nodeLabelValue/);
  });
  it.each([
    ["cloud.tencent.com/apparate", "true"], ["apparate", ""], ["example.com/Fast_Pull.1", "v1.2-x"], [`${"a".repeat(253)}/${"b".repeat(63)}`, "a".repeat(63)],
  ])("negative control: %j = %j is accepted", (key, value) => {
    expect(withLabel({ nodeLabelKey: key, nodeLabelValue: value })().acceleration.placement.nodeLabelKey).toBe(key);
  });
});
