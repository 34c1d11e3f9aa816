// Every config file apparate loads reports a bad value the same way: the key path,
// what is wrong, and the value given — never ajv's internal parameters.
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Ajv } from "ajv";
import { describe, expect, it } from "vitest";
import { ConfigError, parseConfigText } from "../../src/config/config.js";
import { dottedPath, formatSchemaErrors, valueAt } from "../../src/config/schema-errors.js";
import { loadNodeAgentConfig } from "../../src/nodeagent/main.js";

function nodeAgentError(yaml: string): string {
  const dir = mkdtempSync(join(tmpdir(), "apparate-nodecfg-"));
  const file = join(dir, "node.yaml");
  writeFileSync(file, yaml);
  try {
    loadNodeAgentConfig(file);
  } catch (err) {
    expect(err).toBeInstanceOf(ConfigError);
    return (err as Error).message;
  }
  throw new Error("the node agent accepted a bad config");
}

describe("config errors name the key and the value, for the webhook and the node agent alike", () => {
  it.each([
    ["healthCheckSeconds: 0\n", "healthCheckSeconds: must be >= 1 (got 0)"],
    ["containerdConfig: etc/containerd/config.toml\n", 'containerdConfig: must match pattern "^/" (got "etc/containerd/config.toml")'],
    ["mirrors:\n  docker.io: 5\n", "mirrors.docker.io: must be string (got 5)"],
    ["snapshoter: x\n", "snapshoter: unknown key"],
  ])("node agent: %j → %s", (yaml, expected) => {
    const msg = nodeAgentError(yaml);
    expect(msg).toContain(expected);
    // The old message printed ajv's params ({"limit":1}); a person needs the value.
    expect(msg).not.toMatch(/"limit"|"pattern":|"additionalProperty"/);
  });

  it("node agent: every error is reported, not only the first", () => {
    const msg = nodeAgentError("healthCheckSeconds: 0\nunhealthyThreshold: 0\n");
    expect(msg).toContain("healthCheckSeconds");
    expect(msg).toContain("unhealthyThreshold");
  });

  it("node agent and webhook phrase the same fault the same way", () => {
    const webhook = (() => { try { parseConfigText("registry:\n  breakerFailures: 0\n", "w.yaml"); } catch (e) { return (e as Error).message; } return ""; })();
    const node = nodeAgentError("unhealthyThreshold: 0\n");
    expect(webhook).toMatch(/registry\.breakerFailures: must be >= 1 \(got 0\)$/);
    expect(node).toMatch(/unhealthyThreshold: must be >= 1 \(got 0\)$/);
  });
});

describe("formatSchemaErrors", () => {
  const validate = new Ajv({ allErrors: true }).compile({
    type: "object",
    properties: { "a/b": { type: "integer" }, list: { type: "array", items: { type: "string" } }, either: { anyOf: [{ type: "string" }, { type: "integer" }] } },
    additionalProperties: false,
  });

  it("unescapes JSON pointers and indexes arrays", () => {
    const doc = { "a/b": "x", list: ["ok", 7] };
    expect(validate(doc)).toBe(false);
    expect(formatSchemaErrors(validate.errors, doc)).toEqual(['a/b: must be integer (got "x")', "list.1: must be string (got 7)"]);
  });

  it("drops anyOf's summary but keeps the branch reasons, each once", () => {
    const doc = { either: true };
    expect(validate(doc)).toBe(false);
    const lines = formatSchemaErrors(validate.errors, doc);
    expect(lines).toEqual(["either: must be string (got true)", "either: must be integer (got true)"]);
    expect(lines.join()).not.toContain("anyOf");
  });

  it("an unknown key at the top has no leading dot", () => {
    const doc = { extra: 1 };
    expect(validate(doc)).toBe(false);
    expect(formatSchemaErrors(validate.errors, doc)).toEqual(["extra: unknown key"]);
  });

  it("no errors, no lines", () => {
    expect(formatSchemaErrors(null, {})).toEqual([]);
  });

  it("valueAt reads own keys only (a pointer through __proto__ finds nothing)", () => {
    expect(valueAt({ a: { b: 1 } }, "/a/b")).toBe(1);
    expect(valueAt({}, "/constructor")).toBeUndefined();
    expect(valueAt({ a: 1 }, "/a/b")).toBeUndefined();
    expect(valueAt(["x", "y"], "/1")).toBe("y");
  });

  it("dottedPath names the document itself (root)", () => {
    expect(dottedPath("")).toBe("(root)");
    expect(dottedPath("/a~0b/c~1d")).toBe("a~b.c/d");
  });
});
