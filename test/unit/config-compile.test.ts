// What compileConfig turns a file into, key by key: the compiled rules, registry
// hosts, rewrites and the errors for each way a value can be wrong. Written to kill
// the mutants `npm run test:mutation -- config` found alive.
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { compileConfig, ConfigError, loadConfigFile, normaliseRegistryHost, parseConfigText } from "../../src/config/config.js";
import { formatSchemaErrors, valueAt } from "../../src/config/schema-errors.js";

function failure(f: () => unknown): ConfigError {
  try { f(); } catch (err) { expect(err).toBeInstanceOf(ConfigError); return err as ConfigError; }
  throw new Error("accepted a bad configuration");
}

describe("registry host normalisation", () => {
  it.each([
    ["  quay.io  ", "quay.io", "surrounding blanks"],
    ["http://registry.local:5000", "registry.local:5000", "an http scheme"],
    ["https://ccr.ccs.tencentyun.com/", "ccr.ccs.tencentyun.com", "an https scheme and a trailing slash"],
    ["mirror.example/proxy//", "mirror.example/proxy", "every trailing slash, not only one"],
    ["mirror.example/http://x", "mirror.example/http://x", "a scheme only at the start"],
    ["registry-1.docker.io", "docker.io", "Docker Hub's aliases"],
    ["index.docker.io", "docker.io", "Docker Hub's aliases"],
    ["docker.io.example", "docker.io.example", "not an alias: a different host"],
  ])("%j → %j (%s)", (input, expected) => {
    expect(normaliseRegistryHost(input)).toBe(expected);
  });
});

describe("compileConfig", () => {
  it("names the source in every error; `config` when none is given", () => {
    expect(failure(() => compileConfig({ acceleration: { tagSuffix: 5 } })).message).toMatch(/^config: acceleration\.tagSuffix/);
    expect(failure(() => compileConfig({ acceleration: { tagSuffix: 5 } }, "/etc/apparate/config.yaml")).message).toMatch(/^\/etc\/apparate\/config\.yaml: /);
  });

  it.each([[[1, 2]], ["namespaces: default"], [42]])("a document that is not a mapping (%j) is refused as such", (doc) => {
    const err = failure(() => compileConfig(doc, "f.yaml"));
    expect(err.message).toBe("f.yaml: the configuration must be a mapping");
    expect(err.code).toBe("config-invalid");
  });

  it("an empty document is the defaults", () => {
    expect(compileConfig(null).acceleration.tagSuffix).toBe("-apparate");
  });

  it("every fault is reported, joined by '; '", () => {
    const msg = failure(() => compileConfig({ registry: { breakerFailures: 0, negativeTtlSeconds: -1 } })).message;
    expect(msg).toBe("config: registry.negativeTtlSeconds: must be >= 0 (got -1); registry.breakerFailures: must be >= 1 (got 0)");
    expect(failure(() => compileConfig({ registry: { breakerFailures: 0 } })).code).toBe("config-invalid");
  });

  it("a valid regex in a rule is accepted and compiled anchored", () => {
    const [rule] = compileConfig({ acceleration: { rules: [{ repository: "web|api", tag: "v[0-9]+" }] } }).acceleration.rules;
    expect(rule!.repository!.test("web")).toBe(true);
    expect(rule!.repository!.test("my-web-old")).toBe(false);
    expect(rule!.repository!.test("api")).toBe(true);
    expect(rule!.tag!.test("v12")).toBe(true);
    expect(rule!.tag!.test("v12-debug")).toBe(false);
  });

  it("rules: default names by position, registries normalised, absent fields stay absent", () => {
    const rules = compileConfig({ acceleration: { rules: [
      { registry: "https://index.docker.io/", namespace: "library" },
      { name: "team-a", tag: "1\\..*" },
    ] } }).acceleration.rules;
    expect(rules[0]).toEqual({ name: "rule-0", registry: "docker.io", namespace: "library" });
    expect(Object.keys(rules[1]!).sort()).toEqual(["name", "tag"]);
    expect(rules[1]!.name).toBe("team-a");
    expect(rules).toHaveLength(2);
  });

  it("acceleration.registries: '*' means any registry; hosts are normalised; a non-host is refused by name", () => {
    const any = compileConfig({ acceleration: { registries: ["*", "quay.io"] } }).acceleration;
    expect(any.anyRegistry).toBe(true);
    const some = compileConfig({ acceleration: { registries: ["https://quay.io/", "registry.local:5000"] } }).acceleration;
    expect(some.anyRegistry).toBe(false);
    expect([...some.registries]).toEqual(["quay.io", "registry.local:5000"]);
    const err = failure(() => compileConfig({ acceleration: { registries: ["not a host!"] } }));
    expect(err.message).toBe('config: acceleration.registries: "not a host!" is not a registry host');
    expect(err.input).toBe("not a host!");
    expect(err.code).toBe("config-invalid");
  });

  it("rewrite: host, or host with a path prefix (a Harbor proxy-cache project)", () => {
    const r = compileConfig({ rewrite: { registries: { "https://quay.io": "quay.tencentcloudcr.com", "docker.io": "harbor.example/dockerhub-proxy" } } }).rewrite.registries;
    expect(r.get("quay.io")).toEqual({ domain: "quay.tencentcloudcr.com", prefix: "" });
    expect(r.get("docker.io")).toEqual({ domain: "harbor.example", prefix: "dockerhub-proxy" });
  });

  it.each([
    ["quay.io", "harbor.example/Upper_Case", "a prefix that is not a repository path"],
    ["quay.io", "not a host", "a target that is not a host"],
    ["bad host!", "mirror.example", "a source that is not a host"],
  ])("rewrite %j → %j is refused (%s), naming the key and the value", (from, to) => {
    const err = failure(() => compileConfig({ rewrite: { registries: { [from]: to } } }));
    expect(err.message).toBe(`config: rewrite.registries.${from}: ${JSON.stringify(to)} is not a registry host mapping (host[:port][/path])`);
    expect(err.input).toEqual({ from, to });
    expect(err.code).toBe("config-invalid");
  });

  it("plainHttp hosts are normalised like every other host", () => {
    expect(compileConfig({ registry: { plainHttp: ["http://registry.local:5000/"] } }).registry.plainHttp).toEqual(["registry.local:5000"]);
  });

  it("namespaces: the comma form is split and trimmed", () => {
    expect([...compileConfig({ namespaces: " default ,team-a" }).namespaces]).toEqual(["default", "team-a"]);
  });
});

describe("reading the file", () => {
  it("broken YAML: config-yaml, the source, and the parser's reason kept as the cause", () => {
    const err = failure(() => parseConfigText("acceleration: [\n", "cm/config.yaml"));
    expect(err.code).toBe("config-yaml");
    expect(err.message).toMatch(/^cm\/config\.yaml: not valid YAML: /);
    expect(err.cause).toBeInstanceOf(Error);
  });

  it("a missing file: config-read with the path and the system's reason", () => {
    const err = failure(() => loadConfigFile("/nonexistent/apparate.yaml"));
    expect(err.code).toBe("config-read");
    expect(err.message).toMatch(/^cannot read config file \/nonexistent\/apparate\.yaml: ENOENT/);
    expect(err.input).toBe("/nonexistent/apparate.yaml");
    expect(err.cause).toBeInstanceOf(Error);
  });

  it("a file is read, parsed and compiled", () => {
    const dir = mkdtempSync(join(tmpdir(), "apparate-cfg-"));
    const file = join(dir, "config.yaml");
    writeFileSync(file, "acceleration:\n  tagSuffix: -lazy\n");
    expect(loadConfigFile(file).acceleration.tagSuffix).toBe("-lazy");
    writeFileSync(file, "acceleration:\n  tagSuffix: 5\n");
    expect(failure(() => loadConfigFile(file)).message).toBe(`${file}: acceleration.tagSuffix: must be string (got 5)`);
  });
});

describe("schema error details", () => {
  it("valueAt stops at null and at non-objects (a string's length is not a config value)", () => {
    expect(valueAt({ a: null }, "/a/b")).toBeUndefined();
    expect(valueAt({ a: "str" }, "/a/length")).toBeUndefined();
    expect(valueAt({ a: 0 }, "/a")).toBe(0);
  });

  it("an unknown key inside a section is named with its section", () => {
    expect(failure(() => compileConfig({ acceleration: { tagsuffix: "-x" } })).message).toBe("config: acceleration.tagsuffix: unknown key");
  });

  it("an error without a message still says something", () => {
    expect(formatSchemaErrors([{ keyword: "custom", instancePath: "/a", schemaPath: "#", params: {} }], { a: 1 })).toEqual(["a: invalid (got 1)"]);
  });
});
