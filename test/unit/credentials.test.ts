import { describe, expect, it } from "vitest";
import { credentialFingerprint, Keyring, parseDockerConfig } from "../../src/registry/credentials.js";
import { parseChallenges } from "../../src/registry/challenge.js";

const auth = (u: string, p: string) => ({ auth: Buffer.from(`${u}:${p}`).toString("base64") });

describe("keyring matching, as kubelet does", () => {
  const k = new Keyring();
  k.add({ auths: {
    "https://index.docker.io/v1/": auth("hub", "h"),
    "registry.example.com:5000": { username: "port", password: "p" },
    "registry.example.com": { username: "noport", password: "n" },
    "*.tencentcloudcr.com": auth("wild", "w"),
    "https://registry.example.com/team": { username: "team", password: "t" },
    "http://plain.example.com/v2/": { username: "plain", password: "x" },
  } }, "test");
  k.add({ "registry.example.com": auth("legacy", "l") }, "legacy dockercfg");

  it.each([
    ["docker.io", "library/nginx", ["hub"]],
    ["registry.example.com:5000", "team/web", ["port"]],
    ["registry.example.com", "team/web", ["team", "noport", "legacy"]],
    // kubelet matches a key's path as a string prefix (keyring_test.go TestDockerKeyringLookup "pongz").
    ["registry.example.com", "teamx/web", ["team", "noport", "legacy"]],
    ["quay.tencentcloudcr.com", "coreos/etcd", ["wild"]],
    ["a.b.tencentcloudcr.com", "x", []],
    ["plain.example.com", "x/y", ["plain"]],
    ["other.example.com", "x", []],
  ])("%s/%s -> %j", (domain, path, users) => {
    expect(k.lookup(domain, path).map((c) => c.username)).toEqual(users);
  });

  it("parses docker config JSON and refuses garbage with a clear error", () => {
    expect(parseDockerConfig(JSON.stringify({ auths: { "r.io": auth("u", "p") } }), "s").lookup("r.io", "x")[0]).toMatchObject({ username: "u", password: "p" });
    expect(() => parseDockerConfig("{", "secret ns/name")).toThrow(/secret ns\/name: not valid JSON/);
  });

  it("fingerprints never contain the secret", () => {
    const f = credentialFingerprint([{ username: "u", password: "hunter2", source: "x" }]);
    expect(f).toMatch(/^[0-9a-f]{16}$/);
    expect(credentialFingerprint([])).toBe("anonymous");
  });
});

describe("WWW-Authenticate", () => {
  it.each([
    ['Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/nginx:pull"',
      [{ scheme: "bearer", params: { realm: "https://auth.docker.io/token", service: "registry.docker.io", scope: "repository:library/nginx:pull" } }]],
    ['Basic realm="Registry Realm"', [{ scheme: "basic", params: { realm: "Registry Realm" } }]],
    ['Basic realm="a", Bearer realm="https://x/t",service=y', [{ scheme: "basic", params: { realm: "a" } }, { scheme: "bearer", params: { realm: "https://x/t", service: "y" } }]],
    ['Bearer realm="a\\"b"', [{ scheme: "bearer", params: { realm: 'a"b' } }]],
  ])("%s", (header, expected) => {
    expect(parseChallenges(header)).toEqual(expected);
  });
});
