// Issue 13 item 7: kubelet and distribution/reference parity. Every row names the upstream
// rule it reproduces (repository, path, commit, test name); the inputs are the upstream
// test's own. Each rule also has a negative control that the old behaviour would fail.
import { describe, expect, it } from "vitest";
import { credentialSource } from "../../src/admission/handler.js";
import type { Config } from "../../src/config/config.js";
import { ImageReferenceError, parseReference } from "../../src/image/reference.js";
import { Keyring, parseDockerConfig } from "../../src/registry/credentials.js";

const K8S = "kubernetes/kubernetes";
const KEYRING_GO = `${K8S} pkg/credentialprovider/keyring.go@4f3d0e3bde114269650781020d9b05cbd428d4ba`;
const KEYRING_TEST = `${K8S} pkg/credentialprovider/keyring_test.go@6fbbec6ac5711b8c65a2420394b2bb2a2ccf5bff`;
const CONFIG_GO = `${K8S} pkg/credentialprovider/config.go@78fc8e44052f699bf598f84b697b41e5a328c9c5`;
const CONFIG_TEST = `${K8S} pkg/credentialprovider/config_test.go@ee1e76111071ef544e5368483696a8b3c4094f7b`;
const REF_TEST = "distribution/reference reference_test.go@ff14fafe2236e51c2894ac07d4bdfc778e96d682";

const b64 = (s: string) => Buffer.from(s).toString("base64");
const users = (k: Keyring, image: string) => {
  const r = parseReference(image);
  return k.lookup(r.domain, r.path).map((c) => c.username);
};
/** kubelet's Lookup takes "host/path"; ours takes them apart. */
const usersAt = (k: Keyring, hostPath: string) => {
  const i = hostPath.indexOf("/");
  return k.lookup(i < 0 ? hostPath : hostPath.slice(0, i), i < 0 ? "" : hostPath.slice(i + 1)).map((c) => c.username);
};

describe("rule: a docker config entry's `auth` overrides `username`/`password`", () => {
  it.each([
    // upstream, entry, expected [username, password] or null (no credential)
    [`${CONFIG_TEST} TestDockerConfigEntryJSONDecode "auth field overrides username & password"`,
      { username: "foo", password: "bar", auth: "cGluZzpwb25n", email: "foo@example.com" }, ["ping", "pong"]],
    [`${CONFIG_TEST} TestDockerConfigEntryJSONDecode "auth field decodes to username & password"`,
      { auth: "Zm9vOmJhcg==", email: "foo@example.com" }, ["foo", "bar"]],
    [`${CONFIG_TEST} TestDockerConfigEntryJSONDecode "simple case, just decode the fields" (negative control: no auth)`,
      { username: "foo", password: "bar", email: "foo@example.com" }, ["foo", "bar"]],
    [`${CONFIG_TEST} TestDecodeDockerConfigFieldAuth "good base64 data, but no colon" (negative control)`,
      { auth: "cGFudHM=" }, null],
  ])("%s", (_upstream, entry, expected) => {
    const k = parseDockerConfig(JSON.stringify({ auths: { "foo.example.com": entry } }), "test");
    const got = k.lookup("foo.example.com", "x").map((c) => [c.username, c.password]);
    expect(got).toEqual(expected ? [expected] : []);
  });
});

describe("rule: an empty username is valid", () => {
  it.each([
    [`${CONFIG_GO} decodeDockerConfigFieldAuth (strings.SplitN, no non-empty check)`, { auth: b64(":tok") }],
    [`${KEYRING_GO} DockerConfigEntryToLazyAuthConfiguration (username taken as given)`, { username: "", password: "tok" }],
  ])("%s", (_upstream, entry) => {
    const k = parseDockerConfig(JSON.stringify({ auths: { "r.example.com": entry } }), "test");
    expect(k.lookup("r.example.com", "app").map((c) => [c.username, c.password])).toEqual([["", "tok"]]);
  });

  it("negative control: an entry with neither auth nor username nor password gives no credential", () => {
    const k = parseDockerConfig(JSON.stringify({ auths: { "r.example.com": { email: "x@example.com" } } }), "test");
    expect(k.lookup("r.example.com", "app")).toEqual([]);
  });
});

describe("rule: a key's path matches as a string prefix, most specific key first", () => {
  const k = new Keyring();
  k.add({ "bar.example.com/pong": { username: "grace", password: "squash" }, "bar.example.com": { username: "ada", password: "smash" } }, "test");
  it.each([
    // image, expected users; all rows from TestDockerKeyringLookup
    ["bar.example.com", ["ada"]], // direct match
    ["bar.example.com/pong", ["grace", "ada"]], // direct match deeper than other possible matches
    ["bar.example.com/ping", ["ada"]], // no direct match, deeper path ignored (negative control)
    ["bar.example.com/pongz", ["grace", "ada"]], // match first part of path token
    ["bar.example.com/pong/pang", ["grace", "ada"]], // match regardless of sub-path
    ["example.com", []], // no host match
    ["foo.example.com", []],
  ])(`${KEYRING_TEST} TestDockerKeyringLookup: %s -> %j`, (image, expected) => {
    expect(usersAt(k, image)).toEqual(expected);
  });

  it.each([
    ["quay.io"], ["quay.io/foo"], ["quay.io/foo/bar"],
  ])(`${KEYRING_TEST} TestIssue3797: "https://quay.io/v1/" matches %s`, (image) => {
    const q = new Keyring();
    q.add({ "https://quay.io/v1/": { username: "rex", password: "tiny arms" } }, "test");
    expect(usersAt(q, image)).toEqual(["rex"]);
  });

  it.each([
    ["https://hello.kubernetes.io", "hello.kubernetes.io"],
    ["https://*.docker.io", "prefix.docker.io"],
    ["https://prefix.*.io", "prefix.docker.io"],
    ["https://prefix.docker.*", "prefix.docker.io"],
    ["https://*.docker.io/path", "prefix.docker.io/path"],
    ["https://prefix.*.io/path", "prefix.docker.io/path/subpath"],
    ["https://prefix.docker.*/path", "prefix.docker.io/path"],
    ["https://*.docker.io:8888", "prefix.docker.io:8888"],
    ["https://prefix.*.io:8888", "prefix.docker.io:8888"],
    ["https://prefix.docker.*:8888", "prefix.docker.io:8888"],
    ["https://*.docker.io/path:1111", "prefix.docker.io/path:1111"],
    ["https://*.docker.io/v1/", "prefix.docker.io/path:1111"],
    ["https://*.docker.io/v2/", "prefix.docker.io/path:1111"],
    ["https://prefix.docker.*/path:1111", "prefix.docker.io/path:1111"],
    ["prefix.docker.io:1111", "prefix.docker.io:1111/path"],
    ["*.docker.io:1111", "prefix.docker.io:1111/path"],
  ])(`${KEYRING_TEST} TestDockerKeyringForGlob: %s matches %s/foo/bar`, (glob, target) => {
    const g = new Keyring();
    g.add({ [glob]: { email: "foo@bar.baz", auth: b64("foo:bar") } }, "test");
    expect(g.lookup(...split(`${target}/foo/bar`)).map((c) => [c.username, c.password])).toEqual([["foo", "bar"]]);
  });

  it.each([
    ["https://hello.kubernetes.io", "world.mesos.org/foo/bar"],
    ["https://*.docker.com", "prefix.docker.io"],
    ["https://suffix.*.io", "prefix.docker.io"],
    ["https://prefix.docker.c*", "prefix.docker.io"],
    ["https://prefix.*.io/path:1111", "prefix.docker.io/path/subpath:1111"],
    ["suffix.*.io", "prefix.docker.io"],
  ])(`${KEYRING_TEST} TestKeyringMiss (negative controls): %s does not match %s/foo/bar`, (glob, target) => {
    const g = new Keyring();
    g.add({ [glob]: { email: "foo@bar.baz", auth: b64("foo:bar") } }, "test");
    expect(g.lookup(...split(`${target}/foo/bar`))).toEqual([]);
  });

  it("a trailing slash is part of the key's path, as kubelet keeps it: \"r.io/team/\" does not match r.io/teamx", () => {
    const t = new Keyring();
    t.add({ "r.example.com/team/": { username: "team", password: "t" } }, "test");
    expect(usersAt(t, "r.example.com/team/web")).toEqual(["team"]);
    expect(usersAt(t, "r.example.com/teamx/web")).toEqual([]);
  });
});

function split(hostPath: string): [string, string] {
  const i = hostPath.indexOf("/");
  return [hostPath.slice(0, i), hostPath.slice(i + 1)];
}

describe("rule: `https://index.docker.io/v1/` is a fallback used only when no other key matches", () => {
  const hub = { "https://index.docker.io/v1/": { email: "foo@bar.baz", auth: b64("foo:bar") } };
  it.each([
    [`${KEYRING_TEST} TestKeyringHitWithUnqualifiedDockerHub`, "google/docker-registry", ["foo"]],
    [`${KEYRING_TEST} TestKeyringHitWithUnqualifiedLibraryDockerHub`, "jenkins", ["foo"]],
    [`${KEYRING_TEST} TestKeyringHitWithQualifiedDockerHub`, "index.docker.io/google/docker-registry", ["foo"]],
    [`${KEYRING_TEST} TestKeyringMissWithDockerHubCredentials (negative control)`, "world.mesos.org/foo/bar", []],
  ])("%s: %s -> %j", (_upstream, image, expected) => {
    const k = new Keyring();
    k.add(hub, "test");
    expect(users(k, image)).toEqual(expected);
  });

  it(`${KEYRING_GO} BasicDockerKeyring.Lookup: the default-registry key is consulted only when ret is empty`, () => {
    const k = new Keyring();
    k.add({ ...hub, "docker.io/team": { username: "team", password: "t" } }, "test");
    expect(users(k, "docker.io/team/app")).toEqual(["team"]); // the hub key is not added after it
    expect(users(k, "docker.io/other/app")).toEqual(["foo"]); // negative control: nothing else matched
    expect(users(k, "quay.io/team/app")).toEqual([]); // and never for another registry
  });
});

describe("rule: all of a pod's pull secrets form one keyring ordered by specificity", () => {
  const secret = (auths: Record<string, unknown>, name: string) => parseDockerConfig(JSON.stringify({ auths }), `secret ns/${name}`);
  const host = secret({ "r.example.com": { username: "host", password: "h" } }, "a");
  const team = secret({ "r.example.com/team": { username: "team", password: "t" } }, "b");
  const hubKey = secret({ "https://index.docker.io/v1/": { username: "hub", password: "x" } }, "c");
  const hubTeam = secret({ "docker.io/team": { username: "hubteam", password: "y" } }, "d");
  const configured = secret({ "r.example.com": { username: "chart", password: "c" } }, "chart");
  const config = { registry: { usePodPullSecrets: true } } as unknown as Config;
  const source = (names: string[]) => {
    const byName: Record<string, Keyring> = { a: host, b: team, c: hubKey, d: hubTeam };
    return credentialSource({ spec: { imagePullSecrets: names.map((name) => ({ name })) } } as never, "ns", {
      config,
      configuredKeyring: configured,
      pullSecrets: { keyrings: (_ns, ns) => ns.map((n) => byName[n]!).filter(Boolean) },
    });
  };

  it(`${KEYRING_GO} MakeDockerKeyring: one BasicDockerKeyring for all secrets, then the node's (here the chart's) keyring`, () => {
    expect(source(["a", "b"])("r.example.com", "team/app").map((c) => c.username)).toEqual(["team", "host", "chart"]);
    expect(source(["b", "a"])("r.example.com", "team/app").map((c) => c.username)).toEqual(["team", "host", "chart"]);
  });

  it("negative control: looking secret by secret would put the first secret's host key first", () => {
    const perSecret = [host, team].flatMap((k) => k.lookup("r.example.com", "team/app")).map((c) => c.username);
    expect(perSecret).toEqual(["host", "team"]);
  });

  it(`${KEYRING_GO} MakeDockerKeyring + Lookup: one secret's specific key suppresses another secret's Docker Hub fallback`, () => {
    expect(source(["c", "d"])("docker.io", "team/app").map((c) => c.username)).toEqual(["hubteam"]);
    expect(source(["c", "d"])("docker.io", "other/app").map((c) => c.username)).toEqual(["hub"]);
  });
});

describe("rule: the 255-character limit counts the path only, without the domain", () => {
  it.each([
    [`${REF_TEST} TestReferenceParse "example.com/" + 255 × "a" + ":tag"`, `example.com/${"a".repeat(255)}:tag`, "example.com", "a".repeat(255)],
    [`${REF_TEST} TestReferenceParse 127 × "a/" + "a:tag-puts-this-over-max"`, `${"a/".repeat(127)}a:tag-puts-this-over-max`, "docker.io", `${"a/".repeat(127)}a`],
  ])("%s is valid", (_upstream, input, domain, path) => {
    expect(parseReference(input)).toMatchObject({ domain, path });
  });

  it.each([
    [`${REF_TEST} TestReferenceParse "domain/" + 256 × "a" + ":tag" (negative control)`, `domain/${"a".repeat(256)}:tag`],
    [`${REF_TEST} TestWithNameFailure "example.com/" + 256 × "a" (negative control)`, `example.com/${"a".repeat(256)}`],
  ])("%s is name-too-long", (_upstream, input) => {
    expect(() => parseReference(input)).toThrow(ImageReferenceError);
    try { parseReference(input); } catch (err) { expect((err as ImageReferenceError).code).toBe("name-too-long"); }
  });
});

describe("rule: a key's host matches label by label, its port exactly, its path as a prefix (urlsMatch)", () => {
  const hits = (glob: string, target: string) => {
    const k = new Keyring();
    k.add({ [glob]: { auth: b64("foo:bar") } }, "test");
    return usersAt(k, target).length > 0;
  };
  it.each([
    // glob, target, match: every row of TestUrlsMatch
    ["*.kubernetes.io", "prefix.kubernetes.io", true],
    ["prefix.*.io", "prefix.kubernetes.io", true],
    ["prefix.kubernetes.*", "prefix.kubernetes.io", true],
    ["*-good.kubernetes.io", "prefix-good.kubernetes.io", true],
    ["*.kubernetes.io/blah", "prefix.kubernetes.io/blah", true],
    ["prefix.*.io/foo", "prefix.kubernetes.io/foo/bar", true],
    ["*.kubernetes.io:1111/blah", "prefix.kubernetes.io:1111/blah", true],
    ["prefix.*.io:1111/foo", "prefix.kubernetes.io:1111/foo/bar", true],
    ["*.kubernetes.io", "kubernetes.io", false], // no match when the number of parts differs
    ["*.*.kubernetes.io", "prefix.kubernetes.io", false],
    ["*.*.kubernetes.io", "kubernetes.io", false],
    ["kubernetes.io", "kubernetes.com", false], // no match when some parts differ
    ["k*.io", "quay.io", false],
    ["*.kubernetes.io:1234/blah", "prefix.kubernetes.io:1111/blah", false], // no match when ports differ
    ["prefix.*.io/foo", "prefix.kubernetes.io:1111/foo/bar", false],
  ])(`${KEYRING_TEST} TestUrlsMatch: %s ~ %s -> %s`, (glob, target, expected) => {
    expect(hits(glob, target)).toBe(expected);
  });

  // filepath.Match semantics per label (keyring.go urlsMatch): "?" is one character, "*" any
  // run including none, and a label matches whole, never as a suffix or a prefix.
  it.each([
    ["registry-?.example.com", "registry-1.example.com", true],
    ["registry-?.example.com", "registry-12.example.com", false],
    ["registry-?.example.com", "registry-.example.com", false],
    ["*registry.example.com", "registry.example.com", true],
    ["*registry.example.com", "eu-registry.example.com", true],
    ["registry*.example.com", "registry.example.com", true],
    ["registry**.example.com", "registry-eu.example.com", true],
    ["r*y.example.com", "registry.example.com", true],
    ["r*y.example.com", "registry-eu.example.com", false],
    ["registry.example.com", "myregistry.example.com", false],
    ["registry.example.com", "reg.example.com", false],
    ["reg.example.com", "registry.example.com", false],
  ])(`${KEYRING_GO} urlsMatch (filepath.Match per label): %s ~ %s -> %s`, (glob, target, expected) => {
    expect(hits(glob, target)).toBe(expected);
  });

  it.each([
    // net.SplitHostPort on a bracketed IPv6 host (splitUrl): the port is compared, the brackets are the host
    ["[2001:db8::1]:5000", "[2001:db8::1]:5000/repo", true],
    ["https://[2001:db8::1]:5000/v2/", "[2001:db8::1]:5000/repo", true],
    ["[2001:db8::1]", "[2001:db8::1]:5000/repo", false],
    ["[2001:db8::1]:5000", "[2001:db8::1]/repo", false],
    ["[2001:db8::1]:5000", "[2001:db8::2]:5000/repo", false],
  ])(`${KEYRING_GO} splitUrl: %s ~ %s -> %s`, (glob, target, expected) => {
    expect(hits(glob, target)).toBe(expected);
  });

  it.each([
    // Add: "/v1/" and "/v2/" at the start of the path are dropped, anywhere else kept
    ["https://registry.example.com/v1/team", "registry.example.com/team/app", true],
    ["https://registry.example.com/v2/team", "registry.example.com/team/app", true],
    ["https://registry.example.com/v1/team", "registry.example.com/other/app", false],
    ["https://registry.example.com/team/v2/", "registry.example.com/team/app", false],
    // only a leading scheme is a scheme: "x://" later in the key stays part of its path
    ["registry.example.com/x://team", "registry.example.com/team/app", false],
    ["HTTPS://registry.example.com/team", "registry.example.com/team/app", true],
  ])(`${KEYRING_GO} BasicDockerKeyring.Add: key %s ~ %s -> %s`, (glob, target, expected) => {
    expect(hits(glob, target)).toBe(expected);
  });

  it(`${KEYRING_GO} Add: the index is reverse-sorted, whatever order the keys came in`, () => {
    const k = new Keyring();
    k.add({ "registry.example.com": { username: "host", password: "h" }, "registry.example.com/team": { username: "team", password: "t" } }, "test");
    expect(usersAt(k, "registry.example.com/team/app")).toEqual(["team", "host"]);
    // "r.example.com*" sorts after "r.example.com" as a string, so it comes first in reverse
    const s = new Keyring();
    s.add({ "registry.example.com": { username: "plain", password: "p" }, "registry.example.com*": { username: "star", password: "s" } }, "test");
    expect(usersAt(s, "registry.example.com/app")).toEqual(["star", "plain"]);
  });
});

describe("rule: keys kubelet cannot parse are ignored (keyring.go Add: \"Entry in dockercfg invalid, ignoring\")", () => {
  it.each([
    ["registry.example.com:abc", "registry.example.com/app"], // url.Parse: invalid port
    ["fc00::1:5000", "1:5000/debian"], // an unbracketed IPv6 address (distribution refuses fc00::1:5000/debian too)
    [" registry.example.com ", "registry.example.com/app"], // url.Parse: invalid character " " in host name
    ["", "registry.example.com/app"],
    ["https://", "registry.example.com/app"],
    ["/team", "team/app"],
  ])(`${KEYRING_GO} Add: %j matches nothing and is not counted`, (key, image) => {
    const k = new Keyring();
    k.add({ [key]: { username: "u", password: "p" } }, "test");
    expect(usersAt(k, image)).toEqual([]);
    expect(k.size).toBe(0);
  });

  it("negative control: the same keys written correctly are counted and match", () => {
    const k = new Keyring();
    k.add({ "registry.example.com:5000": { username: "u", password: "p" }, "[fc00::1]:5000": { username: "v", password: "p" } }, "test");
    expect(k.size).toBe(2);
    expect(usersAt(k, "registry.example.com:5000/app")).toEqual(["u"]);
    expect(usersAt(k, "[fc00::1]:5000/debian")).toEqual(["v"]);
  });
});

describe("rule: a docker config entry's username and password default to empty (DockerConfigEntry zero values)", () => {
  it.each([
    [`${CONFIG_GO} DockerConfigEntry.UnmarshalJSON: an empty auth leaves username and password as given`, { auth: "", username: "u", password: "p" }, ["u", "p"]],
    [`${KEYRING_GO} DockerConfigEntryToLazyAuthConfiguration: username only`, { username: "u" }, ["u", ""]],
    [`${KEYRING_GO} DockerConfigEntryToLazyAuthConfiguration: password only (a token)`, { password: "tok" }, ["", "tok"]],
  ])("%s", (_upstream, entry, expected) => {
    const k = parseDockerConfig(JSON.stringify({ auths: { "r.example.com": entry } }), "test");
    expect(k.lookup("r.example.com", "app").map((c) => [c.username, c.password])).toEqual([expected]);
  });
});

describe("rule: the default-registry fallback applies to Docker Hub images only (isDefaultRegistryMatch)", () => {
  const hub = { "https://index.docker.io/v1/": { auth: b64("foo:bar") } };
  it.each([
    // image, fallback used: TestIsDefaultRegistryMatch's samples that are valid references
    ["foo/bar", true],
    ["docker.io/foo/bar", true],
    ["index.docker.io/foo/bar", true],
    ["foo", true],
    ["registry.tld/foo/bar", false],
    ["registry:5000/foo/bar", false],
    ["myhostdocker.io/foo/bar", false],
    // the ":" rule of isDefaultRegistryMatch: Docker Hub's name with a port is another registry
    ["docker.io:5000/foo/bar", false],
  ])(`${KEYRING_TEST} TestIsDefaultRegistryMatch: %s -> %s`, (image, expected) => {
    const k = new Keyring();
    k.add(hub, "test");
    expect(users(k, image)).toEqual(expected ? ["foo"] : []);
  });

  it(`${KEYRING_GO} defaultRegistryKey is the bare host: "index.docker.io" with a port or a path is an ordinary key`, () => {
    const port = new Keyring();
    port.add({ "index.docker.io:5000": { username: "port", password: "p" } }, "test");
    expect(users(port, "nginx")).toEqual([]);
    const path = new Keyring();
    path.add({ "https://index.docker.io/v1/team": { username: "team", password: "t" } }, "test");
    expect(users(path, "team/app")).toEqual(["team"]);
    expect(users(path, "other/app")).toEqual([]); // not a fallback
  });
});
