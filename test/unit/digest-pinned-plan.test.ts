// plan() with acceleration.digestPinned: the conversion link is a fact like a tag answer
// (Facts.lookups, keyed by the candidate), plan() stays pure; off, or without a verified
// link, the outcome stays digest-pinned.
import { describe, expect, it } from "vitest";
import { compileConfig } from "../../src/config/config.js";
import { analysePod, plan, type PlanInput } from "../../src/mutate/plan.js";
import type { LookupResult } from "../../src/registry/result.js";

const R = "registry.test";
const X = "sha256:" + "a".repeat(64);
const Y = "sha256:" + "b".repeat(64);
const input = (image: string): PlanInput => ({ pod: { apiVersion: "v1", kind: "Pod", metadata: { name: "p" }, spec: { containers: [{ name: "c", image }] } }, namespace: "default", operation: "CREATE" });
const cfg = (digestPinned: boolean) => compileConfig({ acceleration: { registries: [R], digestPinned, placement: { mode: "none" } } });
const decide = (image: string, answer: LookupResult | undefined, on = true) => {
  const config = cfg(on);
  const analysis = analysePod(input(image), config);
  const lookups = new Map(answer ? analysis.candidates.map((c) => [c.key, answer] as const) : []);
  return { keys: analysis.candidates.map((c) => c.key), d: plan(input(image), { lookups, now: 0 }, config, analysis).containers[0]! };
};

describe("digest-pinned images and the conversion link", () => {
  const linked: LookupResult = { kind: "exists", mediaType: "application/vnd.oci.image.manifest.v1+json", digest: Y };
  it.each([
    ["bare digest", `${R}/app@${X}`, `${R}/app@${X}`, `${R}/app@${Y}`],
    ["tag and digest", `${R}/app:1.0@${X}`, `${R}/app:1.0-apparate@${X}`, `${R}/app:1.0-apparate@${Y}`],
  ])("%s: one lookup keyed by X, rewritten to Y", (_n, image, key, want) => {
    const { keys, d } = decide(image, linked);
    expect(keys).toEqual([key]);
    expect(d).toMatchObject({ outcome: "accelerated", image: want, warn: false });
    expect(d.reason).toContain(`${X} was converted to ${Y}`);
  });

  it.each([
    ["no link", { kind: "absent", reason: "no conversion of sha256:aaaa… is recorded in the registry" } as LookupResult, "digest-pinned", /digest-pinned, not accelerated: no conversion/],
    ["a refused link", { kind: "absent", reason: "the recorded conversion sha256:bbbb… was refused: it has no layers" } as LookupResult, "digest-pinned", /refused: it has no layers/],
    ["a link without a digest", { kind: "exists", mediaType: "application/vnd.oci.image.manifest.v1+json" } as LookupResult, "digest-pinned", /no converted digest known/],
    ["the registry did not answer", { kind: "unknown", reason: "deadline exceeded" } as LookupResult, "lookup-unknown", /in time/],
  ])("%s: left pinned to X, with a warning", (_n, answer, outcome, reason) => {
    const { d } = decide(`${R}/app@${X}`, answer);
    expect(d).toMatchObject({ outcome, image: `${R}/app@${X}`, warn: true });
    expect(d.reason).toMatch(reason);
  });

  it("off (the default): no lookup, digest-pinned as before (negative control)", () => {
    expect(compileConfig({}).acceleration.digestPinned).toBe(false);
    const { keys, d } = decide(`${R}/app@${X}`, linked, false);
    expect(keys).toEqual([]);
    expect(d).toMatchObject({ outcome: "digest-pinned", image: `${R}/app@${X}`, warn: true });
  });

  it("a tag that already carries the suffix is already handled (reinvocation)", () => {
    expect(decide(`${R}/app:1.0-apparate@${Y}`, linked).d.outcome).toBe("already-handled");
  });
});
