// One definition of "what is accelerated": the converter converts exactly the images the
// webhook would swap to their -apparate variant, and check-image says both.
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { PassThrough } from "node:stream";
import { describe, expect, it } from "vitest";
import { checkImage } from "../../src/cli/check-image.js";
import { compileConfig } from "../../src/config/config.js";
import { formatReference, parseReference } from "../../src/image/reference.js";
import { analysePod } from "../../src/mutate/plan.js";
import { conversionDecision } from "../../src/mutate/rules.js";

const raw = {
  acceleration: {
    registries: ["registry.example.com:5000", "harbor.example.com"],
    rules: [
      { name: "team-web", registry: "registry.example.com:5000", namespace: "team", repository: "web|api", tag: "v.*" },
      { name: "harbor-all", registry: "harbor.example.com" },
    ],
  },
};
const config = compileConfig(raw);

const IMAGES = [
  "registry.example.com:5000/team/web:v1",       // rule team-web
  "registry.example.com:5000/team/api:v2.3",     // rule team-web
  "registry.example.com:5000/team/web:latest",   // tag regex does not match
  "registry.example.com:5000/other/web:v1",      // namespace does not match
  "registry.example.com:5000/team/web-old:v1",   // anchored repository regex
  "registry.example.com:5000/team/web:v1-apparate", // already accelerated: the loop guard
  "harbor.example.com/proj/app:1.0",              // rule harbor-all
  "harbor.example.com/proj/app",                  // implicit latest
  `harbor.example.com/proj/app:${"a".repeat(125)}`, // tag + suffix > 128
  "quay.io/org/app:1",                            // registry not allowed
];

describe("conversionDecision", () => {
  it.each(IMAGES)("%s: converted exactly when the webhook would look for its variant", (image) => {
    const d = conversionDecision(parseReference(image), config);
    const input = { pod: { kind: "Pod", metadata: { name: "x" }, spec: { containers: [{ name: "c", image }] } }, namespace: "default", operation: "CREATE" as const };
    const candidate = analysePod(input, config).candidates[0];
    expect(d.convert).toBe(candidate !== undefined);
    if (d.convert && candidate) expect(formatReference(d.target)).toBe(candidate.key);
  });

  it("names the rule, or says why not", () => {
    expect(conversionDecision(parseReference("registry.example.com:5000/team/web:v1"), config)).toMatchObject({ convert: true, rule: "team-web" });
    expect(conversionDecision(parseReference("registry.example.com:5000/team/web:v1-apparate"), config)).toMatchObject({ convert: false, reason: expect.stringContaining("already ends with -apparate") });
    expect(conversionDecision(parseReference("quay.io/org/app:1"), config)).toMatchObject({ convert: false, reason: expect.stringContaining("not in acceleration.registries") });
    expect(conversionDecision(parseReference("harbor.example.com/proj/app:1"), compileConfig({ ...raw, acceleration: { ...raw.acceleration, enabled: false } }))).toMatchObject({ convert: false });
  });
});

describe("check-image says whether a push would be converted", () => {
  const dir = mkdtempSync(join(tmpdir(), "apparate-rules-"));
  const cfg = join(dir, "config.json");
  writeFileSync(cfg, JSON.stringify(raw));
  const run = async (...argv: string[]) => {
    const out = new PassThrough();
    let text = "";
    out.on("data", (d: Buffer) => { text += d.toString(); });
    await checkImage(argv, out);
    return text;
  };

  it("JSON: conversion with the rule and target; a non-matching image with the reason (negative control)", async () => {
    expect(JSON.parse(await run("registry.example.com:5000/team/web:v1", "--config", cfg, "--json")).conversion)
      .toEqual({ convert: true, rule: "team-web", target: "registry.example.com:5000/team/web:v1-apparate" });
    expect(JSON.parse(await run("registry.example.com:5000/team/web:latest", "--config", cfg, "--json")).conversion)
      .toEqual({ convert: false, reason: "no acceleration rule matches" });
  });

  it("text: a convert line", async () => {
    expect(await run("harbor.example.com/proj/app:1.0", "--config", cfg)).toMatch(/^convert: +yes, a push makes harbor.example.com\/proj\/app:1.0-apparate \(rule harbor-all\)$/m);
  });
});
