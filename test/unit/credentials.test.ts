import { describe, expect, it } from "vitest";
import { CredentialError, credentialFingerprint, Keyring, parseDockerConfig } from "../../src/registry/credentials.js";
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

describe("keyring: apparate's own rules around kubelet's", () => {
  it.each([
    // key, image domain, image path, matches: Docker Hub's three names are one registry
    ["registry-1.docker.io/team", "docker.io", "team/app", true],
    ["docker.io/team", "registry-1.docker.io", "team/app", true],
    ["docker.io/team", "index.docker.io", "team/app", true],
    ["Registry.Example.com", "registry.example.com", "app", true], // DNS names ignore case
    ["registry.example.com", "REGISTRY.example.com", "app", true],
    ["docker.io/team", "quay.io", "team/app", false], // negative control
  ])("key %s ~ %s/%s -> %s", (key, domain, path, expected) => {
    const k = new Keyring();
    k.add({ [key]: { username: "u", password: "p" } }, "test");
    expect(k.lookup(domain, path).length > 0).toBe(expected);
  });

  it("the Docker Hub fallback answers to every name of the Hub", () => {
    const k = new Keyring();
    k.add({ "https://index.docker.io/v1/": { username: "hub", password: "h" } }, "test");
    expect(k.lookup("registry-1.docker.io", "library/nginx").map((c) => c.username)).toEqual(["hub"]);
    expect(k.lookup("quay.io", "library/nginx")).toEqual([]);
  });

  it("a port is part of a key's identity: r.example.com:5000 and a host named r.example.com5000 stay apart", () => {
    const k = new Keyring();
    k.add({ "registry.example.com:5000": { username: "port", password: "p" }, "registry.example.com5000": { username: "host", password: "h" } }, "test");
    expect(k.lookup("registry.example.com:5000", "app").map((c) => c.username)).toEqual(["port"]);
    expect(k.lookup("registry.example.com5000", "app").map((c) => c.username)).toEqual(["host"]);
    expect(k.size).toBe(2);
  });

  it("size counts distinct keys (spellings of one key are one) and the Hub fallback as one", () => {
    expect(new Keyring().size).toBe(0);
    const k = new Keyring();
    k.add({ "https://registry.example.com": { username: "a", password: "1" }, "registry.example.com": { username: "b", password: "2" }, "registry.example.com/": { username: "c", password: "3" } }, "test");
    expect(k.size).toBe(1);
    expect(k.lookup("registry.example.com", "app").map((c) => c.username)).toEqual(["a", "b", "c"]);
    k.add({ "https://index.docker.io/v1/": { username: "hub", password: "h" }, "index.docker.io": { username: "hub2", password: "h" } }, "test");
    expect(k.size).toBe(2);
    const hubOnly = new Keyring();
    hubOnly.add({ "https://index.docker.io/v1/": { username: "hub", password: "h" } }, "test");
    expect(hubOnly.size).toBe(1);
  });

  it("entries that are not objects are skipped, the rest of the file is kept", () => {
    const k = parseDockerConfig(JSON.stringify({ auths: { "a.example.com": null, "b.example.com": "x", "c.example.com": 5, "r.example.com": auth("u", "p") } }), "s");
    expect(k.size).toBe(1);
    expect(k.lookup("r.example.com", "app").map((c) => c.username)).toEqual(["u"]);
  });

  it("fields that are not strings count as absent", () => {
    const k = parseDockerConfig(JSON.stringify({ auths: { "r.example.com": { username: 5, password: "p" }, "q.example.com": { username: "u", password: 6 }, "z.example.com": { username: 5, password: 6 } } }), "s");
    expect(k.lookup("r.example.com", "app").map((c) => [c.username, c.password])).toEqual([["", "p"]]);
    expect(k.lookup("q.example.com", "app").map((c) => [c.username, c.password])).toEqual([["u", ""]]);
    expect(k.lookup("z.example.com", "app")).toEqual([]);
  });

  it.each([
    // document, keys read: `auths` makes a .dockerconfigjson only when it is an object
    [{ auths: null }, 0],
    [{ auths: "x", "r.example.com": { username: "u", password: "p" } }, 1],
    [{ auths: { "r.example.com": { username: "u", password: "p" } }, "q.example.com": { username: "v", password: "p" } }, 1],
  ])("%j reads %i key(s)", (doc, n) => {
    expect(parseDockerConfig(JSON.stringify(doc), "s").size).toBe(n);
  });

  it("a lookup for a host that is not host[:port] finds nothing", () => {
    const k = new Keyring();
    k.add({ "registry.example.com": { username: "u", password: "p" } }, "test");
    expect(k.lookup("registry.example.com:abc", "app")).toEqual([]);
    expect(k.lookup("registry.example.com", "app").length).toBe(1); // negative control
  });

  it.each([["null"], ["42"], ['"text"'], ["true"]])("%s is refused as not a JSON object", (text) => {
    expect(() => parseDockerConfig(text, "secret ns/name")).toThrow(CredentialError);
    try { parseDockerConfig(text, "secret ns/name"); } catch (err) {
      expect((err as CredentialError).code).toBe("dockerconfig-invalid");
      expect((err as CredentialError).message).toBe("secret ns/name: not a JSON object");
      expect((err as CredentialError).input).toBe("secret ns/name");
    }
  });

  it("invalid JSON is refused with its parser's error as the cause", () => {
    try { parseDockerConfig("{", "secret ns/name"); expect.fail("should have thrown"); } catch (err) {
      expect((err as CredentialError).code).toBe("dockerconfig-invalid");
      expect((err as CredentialError).cause).toBeInstanceOf(SyntaxError);
    }
  });

  it("fingerprints tell apart credentials that differ only in where username ends", () => {
    const a = credentialFingerprint([{ username: "ab", password: "c", source: "x" }]);
    const b = credentialFingerprint([{ username: "a", password: "bc", source: "x" }]);
    expect(a).not.toBe(b);
    const c = { username: "u", password: "p", source: "x" };
    const d = { username: "v", password: "q", source: "y" };
    const fc = credentialFingerprint([c]);
    expect(credentialFingerprint([c])).toBe(fc); // stable
    expect(credentialFingerprint([{ ...c, source: "elsewhere" }])).toBe(fc); // the source is no part of it
    expect(credentialFingerprint([c, d])).toBe(`${fc}+${credentialFingerprint([d])}`);
    expect(credentialFingerprint([d, c])).not.toBe(credentialFingerprint([c, d]));
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
