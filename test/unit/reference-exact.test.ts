// Image references with exact outcomes: the whole parsed object (no stray keys) or the
// error's code and message. Rows are distribution/reference's own test inputs (file and
// commit named per table) plus the grammar's boundaries (regexp.go), each with the rule
// it pins. Issue 24 item 7: these hold reference.ts at its mutation score.
import { describe, expect, it } from "vitest";
import {
  ImageReferenceError, type ImageReference, parseReference, parseReferenceCached, withDomain, withTag,
} from "../../src/image/reference.js";

const DIST = "distribution/reference";
const REGEXP_TEST = `${DIST} regexp_test.go@00a09fa3799203fc887e667b0d82142ee831939a`;
const NORMALIZE_TEST = `${DIST} normalize_test.go@4894124079e525c3c3c5c8aacaa653b5499004e9`;
const REGEXP_GO = `${DIST} regexp.go (grammar)`;
const F64 = "f".repeat(64);
const BE = "sha256:be178c0543eb17f5f3043021c9e5fcf30285e557a4fc309cce97ff9ca6182912";

type Outcome = Partial<ImageReference> | string;
const ref = (domain: string, path: string, tag?: string, digest?: string): ImageReference =>
  ({ domain, path, ...(tag !== undefined ? { tag } : {}), ...(digest !== undefined ? { digest } : {}) });

function outcome(input: string): Outcome {
  try { return parseReference(input); } catch (err) {
    if (!(err instanceof ImageReferenceError)) throw err;
    return err.code;
  }
}

describe(`${REGEXP_TEST} TestDomainRegexp, each domain with "/repo"`, () => {
  it.each<[string, Outcome]>([
    ["test.com:10304", ref("test.com:10304", "repo")],
    ["test.com:http", "invalid-format"],
    ["localhost:8080", ref("localhost:8080", "repo")],
    ["a.b", ref("a.b", "repo")],
    ["ab.cd.com", ref("ab.cd.com", "repo")],
    ["a-b.com", ref("a-b.com", "repo")],
    ["-ab.com", "invalid-format"],
    ["ab-.com", "invalid-format"],
    ["ab.c-om", ref("ab.c-om", "repo")],
    ["ab.-com", "invalid-format"],
    ["ab.com-", "invalid-format"],
    ["0101.com", ref("0101.com", "repo")],
    ["001a.com", ref("001a.com", "repo")],
    ["b.gbc.io:443", ref("b.gbc.io:443", "repo")],
    ["xn--n3h.com", ref("xn--n3h.com", "repo")],
    ["Asdf.com", ref("Asdf.com", "repo")],
    ["192.168.1.1:75050", ref("192.168.1.1:75050", "repo")],
    ["192.168.1.1:750050", "invalid-format"], // "port with more than 5 digits, it will fail on validation"
    ["[fd00:1:2::3]:75050", ref("[fd00:1:2::3]:75050", "repo")],
    ["[fd00:1:2::3]75050", "invalid-format"],
    ["[fd00:1:2::3]::75050", "invalid-format"],
    ["[fd00:1:2::3%eth0]:75050", "invalid-format"],
    ["[2001:0db8:85a3:0000:0000:8a2e:0370:7334]:75050", ref("[2001:0db8:85a3:0000:0000:8a2e:0370:7334]:75050", "repo")],
    ["[2001:0db8:85a3:0000:0000:8a2e:0370:7334]:750505", "invalid-format"],
    ["fd00:1:2::3:75050", "invalid-format"],
  ])("%s/repo -> %j", (domain, expected) => {
    expect(outcome(`${domain}/repo`)).toStrictEqual(expected);
  });
});

describe(`${REGEXP_TEST} TestFullNameRegexp and TestReferenceRegexp`, () => {
  it.each<[string, Outcome]>([
    ["a^a", "invalid-format"],
    ["a/a/a/a/", "invalid-format"],
    ["a//a/a", "invalid-format"],
    ["foo.com/", "invalid-format"],
    ["foo.com:http/bar", "invalid-format"],
    ["aa-a/a", ref("docker.io", "aa-a/a")],
    ["a-/a/a/a", "invalid-format"],
    ["foo.com/a-/a/a", "invalid-format"],
    ["foo/bar-", "invalid-format"],
    ["foo/-bar", "invalid-format"],
    ["foo_bar.com:8080/app", "invalid-format"],
    ["docker_/docker_", "invalid-format"],
    ["example.com/some_separator__underscore/myimage", ref("example.com", "some_separator__underscore/myimage")],
    ["example.com/__underscore/myimage", "invalid-format"],
    ["example.com/..dots/myimage", "invalid-format"],
    ["example.com/.dots/myimage", "invalid-format"],
    ["example.com/nodouble..dots/myimage", "invalid-format"],
    ["docker./docker", "invalid-format"],
    [".docker/docker", "invalid-format"],
    ["do..cker/docker", "invalid-format"],
    ["do__cker:8080/docker", "invalid-format"],
    ["do__cker/docker", ref("docker.io", "do__cker/docker")],
    ["registry.io/foo/project--id.module--name.ver---sion--name", ref("registry.io", "foo/project--id.module--name.ver---sion--name")],
    ["Asdf.com/foo/bar", ref("Asdf.com", "foo/bar")],
    ["Foo/FarB", "uppercase"],
    ["registry.com:8080/myapp:tag", ref("registry.com:8080", "myapp", "tag")],
    [`registry.com:8080/myapp@${BE}`, ref("registry.com:8080", "myapp", undefined, BE)],
    [`registry.com:8080/myapp:tag2@${BE}`, ref("registry.com:8080", "myapp", "tag2", BE)],
    ["registry.com:8080/myapp@sha256:badbadbadbad", "invalid-digest"],
    ["registry.com:8080/myapp:invalid~tag", "invalid-tag"],
    ["bad_hostname.com:8080/myapp:tag", "invalid-format"],
    [`localhost:8080@${BE}`, ref("docker.io", "library/localhost", "8080", BE)], // "localhost treated as name, missing tag with 8080 as tag"
    [`localhost:8080/name@${BE}`, ref("localhost:8080", "name", undefined, BE)],
    [`localhost:http/name@${BE}`, "invalid-format"],
    [`localhost@${BE}`, ref("docker.io", "library/localhost", undefined, BE)],
    ["registry.com:8080/myapp@bad", "invalid-digest"],
    ["registry.com:8080/myapp@2bad", "invalid-digest"],
  ])("%s -> %j", (input, expected) => {
    expect(outcome(input)).toStrictEqual(expected);
  });
});

describe(`${REGEXP_TEST} TestIdentifierRegexp: only 64 lowercase hex characters are an image id`, () => {
  it.each<[string, Outcome]>([
    ["da304e823d8ca2b9d863a3c897baeb852ba21ea9a9f1414736394ae7fcaf9821", "hex-name"],
    ["7EC43B381E5AEFE6E04EFB0B3F0693FF2A4A50652D64AEC573905F2DB5889A1C", "uppercase"],
    ["da304e823d8ca2b9d863a3c897baeb852ba21ea9a9f1414736394ae7fcaf", ref("docker.io", "library/da304e823d8ca2b9d863a3c897baeb852ba21ea9a9f1414736394ae7fcaf")],
    ["da304e823d8ca2b9d863a3c897baeb852ba21ea9a9f1414736394ae7fcaf98218482", ref("docker.io", "library/da304e823d8ca2b9d863a3c897baeb852ba21ea9a9f1414736394ae7fcaf98218482")],
    // 64 characters, one not hex: a name
    ["da304e823d8ca2b9d863a3c897baeb852ba21ea9a9f1414736394ae7fcaf982g", ref("docker.io", "library/da304e823d8ca2b9d863a3c897baeb852ba21ea9a9f1414736394ae7fcaf982g")],
    ["docker.io/1a3f5e7d9c1b3a5f7e9d1c3b5a7f9e1d3c5b7a9f1e3d5d7c9b1a3f5e7d9c1b3a", ref("docker.io", "library/1a3f5e7d9c1b3a5f7e9d1c3b5a7f9e1d3c5b7a9f1e3d5d7c9b1a3f5e7d9c1b3a")], // NORMALIZE_TEST: valid with a host
  ])("%s -> %j", (input, expected) => {
    expect(outcome(input)).toStrictEqual(expected);
  });
});

describe(`${NORMALIZE_TEST} TestValidateReferenceName and TestValidateRemoteName`, () => {
  it.each<[string, Outcome]>([
    ["DOCKER/docker", ref("DOCKER", "docker")],
    ["[fc00::1]:5000/docker", ref("[fc00::1]:5000", "docker")],
    ["[fc00:1:2:3:4:5:6:7]:5000/library/debian", ref("[fc00:1:2:3:4:5:6:7]:5000", "library/debian")],
    ["192.168.0.1:8/debian", ref("192.168.0.1:8", "debian")],
    ["-docker.io/docker/docker", "invalid-format"],
    ["docker.io/docker/Docker", "uppercase"],
    ["docker.io/docker///docker", "invalid-format"],
    ["d/docker", ref("docker.io", "d/docker")],
    ["jess/t", ref("docker.io", "jess/t")],
    ["-docker-/docker", "invalid-format"],
    ["this_is_not_a_valid_namespace_because_its_lenth_is_greater_than_255_this_is_not_a_valid_namespace_because_its_lenth_is_greater_than_255_this_is_not_a_valid_namespace_because_its_lenth_is_greater_than_255_this_is_not_a_valid_namespace_because_its_lenth_is_greater_than_255/docker", "name-too-long"],
  ])("%s -> %j", (input, expected) => {
    expect(outcome(input)).toStrictEqual(expected);
  });
});

describe(`${REGEXP_GO}: the character classes at their edges`, () => {
  it.each<[string, string, Outcome]>([
    // ipv6address := "[" (?:[a-fA-F0-9:]+) "]"
    ["hex digits a-f and A-F, both ends", "[a:f:A:F::1]/repo", ref("[a:f:A:F::1]", "repo")],
    ["g is not hex", "[fd00::g]/repo", "invalid-format"],
    ["G is not hex", "[fd00::G]/repo", "invalid-format"],
    ["@ (just below A) is not hex", "[fd00::@]/repo", "invalid-format"],
    ["` (just below a) is not hex", "[fd00::`]/repo", "invalid-format"],
    ["no closing bracket", "[::1/repo", "invalid-format"],
    ["empty brackets", "[]:5000/repo", "invalid-format"],
    ["empty brackets without port", "[]/repo", "invalid-format"],
    ["a port after brackets needs its colon and digits", "[::1]:abc/repo", "invalid-format"],
    ["an empty port", "test.com:/repo", "invalid-format"],
    ["a five-digit port", "test.com:65535/repo", ref("test.com:65535", "repo")],
    // domain-component := [a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9]
    ["Z and A in a host", "Z.A.com/repo", ref("Z.A.com", "repo")],
    ["a host component of one character", "a.b.c/repo", ref("a.b.c", "repo")],
    ["hyphens inside a host component", "a--b.com/repo", ref("a--b.com", "repo")],
    // tag := [\w][\w.-]{0,127}
    ["tag of A", "repo:A", ref("docker.io", "library/repo", "A")],
    ["tag of Z", "repo:Z", ref("docker.io", "library/repo", "Z")],
    ["tag starting with _", "repo:_x", ref("docker.io", "library/repo", "_x")],
    ["tag with _ . - inside", "repo:a_b.c-d", ref("docker.io", "library/repo", "a_b.c-d")],
    ["tag of 128 characters", `repo:${"t".repeat(128)}`, ref("docker.io", "library/repo", "t".repeat(128))],
    ["tag with ~", "repo:a~b", "invalid-tag"],
    ["empty tag", "repo:", "invalid-tag"],
    // path-component := [a-z0-9]+ (?:(?:[._]|__|[-]*)[a-z0-9]+)*
    ["one _ before a single last character", "docker/a_b", ref("docker.io", "docker/a_b")],
    ["three _ in a row", "docker/a___b", "invalid-format"],
    ["_ then .", "docker/a_.b", "invalid-format"],
    ["- then _", "docker/a-_b", "invalid-format"],
    ["a character above z", "docker/a{b", "invalid-format"],
    ["a non-ASCII letter", "docker/caf\u00e9", "invalid-format"],
    // digest algorithm := [A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*, then go-digest's registered algorithms
    ["OCI's sha256+b64u: well-formed, not supported", "repo@sha256+b64u:LCa0a2j_xo_5m0U8HTBBNBNCLXBkg7-g-YpeiGJm564", "unsupported-digest"],
    ["OCI's multihash+base58: well-formed, not supported", "repo@multihash+base58:QmRZxt2b1FVZPNqd8hsiykDL3TdBDeTSPX9Kv46HmX4Gx8", "unsupported-digest"],
    ["- separates algorithm components", `repo@sha256-x:${F64}`, "unsupported-digest"],
    ["_ separates algorithm components", `repo@sha256_x:${F64}`, "unsupported-digest"],
    [". separates algorithm components", `repo@sha256.x:${F64}`, "unsupported-digest"],
    ["upper-case algorithm letters", `repo@SHA256:${F64}`, "unsupported-digest"],
    ["Z and A in an algorithm", `repo@Za:${F64}`, "unsupported-digest"],
    ["an algorithm starting with a digit", `repo@1sha:${F64}`, "invalid-digest"],
    ["a digit after a separator", `repo@sha256+1:${F64}`, "invalid-digest"],
    ["a separator at the end", `repo@sha256+:${F64}`, "invalid-digest"],
    ["~ in an algorithm", `repo@sha~256:${F64}`, "invalid-digest"],
    ["no algorithm", "repo@:abc", "invalid-digest"],
    ["lowercase non-hex", `repo@sha256:${"g".repeat(64)}`, "invalid-digest"],
    ["sha384 takes 96", `repo@sha384:${"a".repeat(96)}`, ref("docker.io", "library/repo", undefined, `sha384:${"a".repeat(96)}`)],
    ["sha256 with 65", `repo@sha256:${"a".repeat(65)}`, "invalid-digest"],
  ])("%s: %s -> %j", (_rule, input, expected) => {
    expect(outcome(input)).toStrictEqual(expected);
  });
});

describe("lengths at their limits", () => {
  // A 253-character host with a 5-digit port, a 255-character path, a 128-character tag and
  // a sha512 digest: the longest reference there is, 780 characters, parses; one more is refused unparsed.
  const host = ["a".repeat(63), "b".repeat(63), "c".repeat(63), "d".repeat(61)].join(".");
  const longest = `${host}:65535/${"p".repeat(255)}:${"t".repeat(128)}@sha512:${"e".repeat(128)}`;
  it("780 characters parse, 781 are too long", () => {
    expect(longest.length).toBe(780);
    expect(parseReference(longest)).toStrictEqual(ref(`${host}:65535`, "p".repeat(255), "t".repeat(128), `sha512:${"e".repeat(128)}`));
    expect(outcome(`x${longest}`)).toBe("too-long");
  });
});

describe("error messages name the input (cut at 80 characters) and the fault", () => {
  const msg = (input: string) => {
    try { parseReference(input); } catch (err) { return (err as ImageReferenceError).message; }
    return "parsed";
  };
  it.each([
    ["", 'invalid image reference "": reference is empty'],
    [`x${"a".repeat(780)}`, `invalid image reference "x${"a".repeat(79)}…": longer than 780 characters`],
    ["da304e823d8ca2b9d863a3c897baeb852ba21ea9a9f1414736394ae7fcaf9821", 'invalid image reference "da304e823d8ca2b9d863a3c897baeb852ba21ea9a9f1414736394ae7fcaf9821": a 64-character hexadecimal string is an image id, not a name'],
    ["-ab.com/x", 'invalid image reference "-ab.com/x": malformed registry host "-ab.com"'],
    ["Foo/FarB", 'invalid image reference "Foo/FarB": repository name must be lowercase'],
    ["a^a", 'invalid image reference "a^a": malformed repository path component "a^a"'],
    // an empty path before "@" or ":" is an empty component, not a digest or tag without a name
    [`example.com/@${BE}`, `invalid image reference "example.com/@${BE.slice(0, 67)}…": malformed repository path component ""`],
    ["example.com/:tag", 'invalid image reference "example.com/:tag": malformed repository path component ""'],
    ["repo:-tag", 'invalid image reference "repo:-tag": malformed tag "-tag"'],
    [`repo:${"t".repeat(129)}`, `invalid image reference "repo:${"t".repeat(75)}…": tag longer than 128 characters`],
    [`repo:${"t".repeat(127)}~`, `invalid image reference "repo:${"t".repeat(75)}…": malformed tag "${"t".repeat(127)}~"`],
    [`example.com/${"a".repeat(256)}`, `invalid image reference "example.com/${"a".repeat(68)}…": repository path longer than 255 characters`],
    ["registry.com:8080/myapp@bad", 'invalid image reference "registry.com:8080/myapp@bad": digest must be <algorithm>:<hex>'],
    ["repo@:abc", 'invalid image reference "repo@:abc": digest must be <algorithm>:<hex>'],
    [`repo@1sha:${F64}`, `invalid image reference "repo@1sha:${F64}": malformed digest algorithm`],
    [`repo@sha~256:${F64}`, `invalid image reference "repo@sha~256:${F64}": malformed digest algorithm`],
    [`repo@sha256+:${F64}`, `invalid image reference "repo@sha256+:${F64}": malformed digest algorithm`],
    ["repo@md5:abc", 'invalid image reference "repo@md5:abc": unsupported digest algorithm "md5"'],
    ["repo@sha256:abc", 'invalid image reference "repo@sha256:abc": sha256 digest must have 64 hex characters'],
    [`repo@sha256:${"g".repeat(64)}`, `invalid image reference "repo@sha256:${"g".repeat(64)}": digest must be lowercase hex`],
    // the cut: 80 characters are shown whole, 81 are cut to 80 and "…"
    [`${"a".repeat(79)}^`, `invalid image reference "${"a".repeat(79)}^": malformed repository path component "${"a".repeat(79)}^"`],
    [`${"a".repeat(80)}^`, `invalid image reference "${"a".repeat(80)}…": malformed repository path component "${"a".repeat(80)}^"`],
  ])("%s", (input, expected) => {
    expect(msg(input)).toBe(expected);
  });

  it("input that is not a string is refused as empty, the error's input an empty string", () => {
    for (const bad of [undefined, null, 42]) {
      try { parseReference(bad as never); expect.fail("should have thrown"); } catch (err) {
        expect(err).toBeInstanceOf(ImageReferenceError);
        expect((err as ImageReferenceError).code).toBe("empty");
        expect((err as ImageReferenceError).input).toBe(bad === 42 ? "42" : "");
      }
    }
  });
});

describe("withTag, withDomain, parseReferenceCached", () => {
  const pinned = parseReference(`quay.io/team/app:v1@${BE}`);
  it("withTag replaces the tag and keeps the digest; refuses a malformed tag", () => {
    expect(withTag(pinned, "v2-apparate")).toStrictEqual(ref("quay.io", "team/app", "v2-apparate", BE));
    expect(withTag(parseReference("nginx"), "1.25")).toStrictEqual(ref("docker.io", "library/nginx", "1.25"));
    for (const bad of ["-x", "", "t".repeat(129), "a~b"]) {
      try { withTag(pinned, bad); expect.fail("should have thrown"); } catch (err) {
        expect((err as ImageReferenceError).code).toBe("invalid-tag");
        expect((err as ImageReferenceError).message).toBe(`tag ${JSON.stringify(bad)} is not a valid tag`);
      }
    }
  });

  it("withDomain replaces the registry host and keeps the rest; refuses a malformed host", () => {
    expect(withDomain(pinned, "mirror.example.com:5000")).toStrictEqual(ref("mirror.example.com:5000", "team/app", "v1", BE));
    for (const bad of ["-bad.com", "a.com:http", "[]", ""]) {
      try { withDomain(pinned, bad); expect.fail("should have thrown"); } catch (err) {
        expect((err as ImageReferenceError).code).toBe("invalid-format");
        expect((err as ImageReferenceError).message).toBe(`registry host ${JSON.stringify(bad)} is malformed`);
      }
    }
  });

  it("parseReferenceCached answers the same frozen reference for the same string; failures are not kept", () => {
    const a = parseReferenceCached("quay.io/team/cached:v1");
    expect(a).toStrictEqual(ref("quay.io", "team/cached", "v1"));
    expect(Object.isFrozen(a)).toBe(true);
    expect(parseReferenceCached("quay.io/team/cached:v1")).toBe(a);
    expect(parseReferenceCached("quay.io/team/cached:v2")).not.toBe(a); // negative control
    for (let i = 0; i < 2; i++) expect(() => parseReferenceCached("Bad/Name")).toThrow(ImageReferenceError);
  });
});
