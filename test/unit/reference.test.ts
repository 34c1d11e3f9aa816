// Vectors from distribution/reference (reference_test.go, normalize_test.go),
// expressed in normalised form (ParseNormalizedNamed semantics).
import { describe, expect, it } from "vitest";
import fc from "fast-check";
import { canonicalKey, familiarString, formatReference, parseReference, ImageReferenceError } from "../../src/image/reference.js";

const F64 = "f".repeat(64);
const F128 = "f".repeat(128);

describe("parseReference: valid references", () => {
  it.each([
    // input, domain, path, tag, digest
    ["test_com", "docker.io", "library/test_com", undefined, undefined],
    ["test.com:tag", "docker.io", "library/test.com", "tag", undefined],
    ["test.com:5000", "docker.io", "library/test.com", "5000", undefined],
    ["test.com/repo:tag", "test.com", "repo", "tag", undefined],
    ["test:5000/repo", "test:5000", "repo", undefined, undefined],
    ["test:5000/repo:tag", "test:5000", "repo", "tag", undefined],
    [`test:5000/repo@sha256:${F64}`, "test:5000", "repo", undefined, `sha256:${F64}`],
    [`test:5000/repo:tag@sha256:${F64}`, "test:5000", "repo", "tag", `sha256:${F64}`],
    ["lowercase:Uppercase", "docker.io", "library/lowercase", "Uppercase", undefined],
    ["sub-dom1.foo.com/bar/baz/quux", "sub-dom1.foo.com", "bar/baz/quux", undefined, undefined],
    ["sub-dom1.foo.com/bar/baz/quux:some-long-tag", "sub-dom1.foo.com", "bar/baz/quux", "some-long-tag", undefined],
    ["b.gcr.io/test.example.com/my-app:test.example.com", "b.gcr.io", "test.example.com/my-app", "test.example.com", undefined],
    ["xn--n3h.com/myimage:xn--n3h.com", "xn--n3h.com", "myimage", "xn--n3h.com", undefined],
    [`xn--7o8h.com/myimage:xn--7o8h.com@sha512:${F128}`, "xn--7o8h.com", "myimage", "xn--7o8h.com", `sha512:${F128}`],
    ["foo_bar.com:8080", "docker.io", "library/foo_bar.com", "8080", undefined],
    ["foo/foo_bar.com:8080", "docker.io", "foo/foo_bar.com", "8080", undefined],
    ["192.168.1.1", "docker.io", "library/192.168.1.1", undefined, undefined],
    ["192.168.1.1:5000", "docker.io", "library/192.168.1.1", "5000", undefined],
    ["192.168.1.1/repo", "192.168.1.1", "repo", undefined, undefined],
    ["192.168.1.1:5000/repo:5050", "192.168.1.1:5000", "repo", "5050", undefined],
    ["[2001:db8::1]/repo", "[2001:db8::1]", "repo", undefined, undefined],
    ["[2001:db8:1:2:3:4:5:6]/repo:tag", "[2001:db8:1:2:3:4:5:6]", "repo", "tag", undefined],
    ["[2001:db8::1]:5000/repo:tag", "[2001:db8::1]:5000", "repo", "tag", undefined],
    [`[2001:db8::1]:5000/repo:tag@sha256:${F64}`, "[2001:db8::1]:5000", "repo", "tag", `sha256:${F64}`],
    ["[::1]:5000/repo", "[::1]:5000", "repo", undefined, undefined],
    ["localhost/x", "localhost", "x", undefined, undefined],
    ["localhost:5000/x/y:1", "localhost:5000", "x/y", "1", undefined],
    ["localhost", "docker.io", "library/localhost", undefined, undefined],
    ["nginx", "docker.io", "library/nginx", undefined, undefined],
    ["library/nginx:1.25", "docker.io", "library/nginx", "1.25", undefined],
    ["docker.io/nginx", "docker.io", "library/nginx", undefined, undefined],
    ["index.docker.io/library/nginx", "docker.io", "library/nginx", undefined, undefined],
    ["index.docker.io/debian", "docker.io", "library/debian", undefined, undefined],
    ["docker.io/library/foo/bar", "docker.io", "library/foo/bar", undefined, undefined],
    ["rabbitmq:3.8.18-management", "docker.io", "library/rabbitmq", "3.8.18-management", undefined],
    ["Docker/docker", "Docker", "docker", undefined, undefined],
    ["docker---rules/docker", "docker.io", "docker---rules/docker", undefined, undefined],
    ["dock__er/docker", "docker.io", "dock__er/docker", undefined, undefined],
    ["quay.io/prometheus/node-exporter:v1.8.0", "quay.io", "prometheus/node-exporter", "v1.8.0", undefined],
    ["thisisthesongthatneverendsitgoesonandonandonthisisthesongthatnev", "docker.io", "library/thisisthesongthatneverendsitgoesonandonandonthisisthesongthatnev", undefined, undefined],
  ])("%s", (input, domain, path, tag, digest) => {
    const r = parseReference(input);
    expect(r.domain).toBe(domain);
    expect(r.path).toBe(path);
    expect(r.tag).toBe(tag);
    expect(r.digest).toBe(digest);
  });
});

describe("parseReference: invalid references", () => {
  it.each([
    ["", "empty"],
    [":justtag", "invalid-format"],
    [`@sha256:${F64}`, "invalid-format"],
    ["repo@sha256:ffffffffffffffffffffffffffffffffff", "invalid-digest"],
    [`validname@invaliddigest:${F64}`, "unsupported-digest"],
    ["Uppercase:tag", "uppercase"],
    ["test:5000/Uppercase/lowercase:tag", "uppercase"],
    ["docker/Docker", "uppercase"],
    ["aa/asdf$$^/aa", "invalid-format"],
    ["[2001:db8::1]", "invalid-format"],
    ["[2001:db8::1]:5000", "invalid-format"],
    ["[2001:db8::1]:tag", "invalid-format"],
    ["[fe80::1%eth0]:5000/repo", "invalid-format"],
    ["[fe80::1%@invalidzone]:5000/repo", "invalid-format"],
    ["[2001:db8:3:4::192.0.2.33]:5000/debian", "invalid-format"],
    ["fc00::1:5000/debian", "invalid-format"],
    ["https://github.com/docker/docker", "invalid-format"],
    ["-docker", "invalid-format"],
    ["-docker/docker", "invalid-format"],
    ["docker-/docker", "invalid-format"],
    ["docker///docker", "invalid-format"],
    ["____/____", "invalid-format"],
    ["_docker/_docker", "invalid-format"],
    ["dock..er/docker", "invalid-format"],
    ["dock_.er/docker", "invalid-format"],
    ["dock-.er/docker", "invalid-format"],
    ["docker/", "invalid-format"],
    ["1a3f5e7d9c1b3a5f7e9d1c3b5a7f9e1d3c5b7a9f1e3d5d7c9b1a3f5e7d9c1b3a", "hex-name"],
    ["a".repeat(10) + ":" + "t".repeat(129), "invalid-tag"],
    ["repo:-tag", "invalid-tag"],
    ["a/".repeat(128) + "a:tag", "name-too-long"],
    [`repo@sha256:${"F".repeat(64)}`, "invalid-digest"],
  ])("%s is rejected (%s)", (input, code) => {
    try {
      parseReference(input);
      expect.fail("should have thrown");
    } catch (err) {
      expect(err).toBeInstanceOf(ImageReferenceError);
      expect((err as ImageReferenceError).code).toBe(code);
    }
  });

  it("rejects a hostile 10,000-character reference quickly", () => {
    const inputs = ["a".repeat(10_000) + "!", "a-".repeat(5_000) + "!", "a/".repeat(5_000), "a".repeat(24) + "!"];
    for (const input of inputs) {
      const t0 = performance.now();
      expect(() => parseReference(input)).toThrow(ImageReferenceError);
      expect(performance.now() - t0).toBeLessThan(50);
    }
  });

  it("is linear on the backtracking shape that hangs a regex port", () => {
    // ^[a-z0-9]+(?:(?:[._]|__|[-]*)[a-z0-9]+)*$ on "a"*24+"!" takes >100 ms in V8 and
    // doubles with each extra "a": at 60 a backtracking parser would never return. A
    // linear one answers in microseconds, so the bound below holds on a loaded machine.
    const input = "x/" + "a".repeat(60) + "!";
    const t0 = performance.now();
    for (let i = 0; i < 10; i++) expect(() => parseReference(input)).toThrow();
    expect(performance.now() - t0).toBeLessThan(2000);
  });
});

describe("formatting", () => {
  it.each([
    ["nginx", "docker.io/library/nginx", "nginx", "docker.io/library/nginx:latest"],
    ["busybox:latest@sha256:86e0e091d0da6bde2456dbb48306f3956bbeb2eae1b5b9a43045843f69fe4aaa",
      "docker.io/library/busybox:latest@sha256:86e0e091d0da6bde2456dbb48306f3956bbeb2eae1b5b9a43045843f69fe4aaa",
      "busybox:latest@sha256:86e0e091d0da6bde2456dbb48306f3956bbeb2eae1b5b9a43045843f69fe4aaa",
      "docker.io/library/busybox@sha256:86e0e091d0da6bde2456dbb48306f3956bbeb2eae1b5b9a43045843f69fe4aaa"],
    ["library/foo/bar", "docker.io/library/foo/bar", "library/foo/bar", "docker.io/library/foo/bar:latest"],
    ["127.0.0.1:8000/private/moonbase", "127.0.0.1:8000/private/moonbase", "127.0.0.1:8000/private/moonbase", "127.0.0.1:8000/private/moonbase:latest"],
    ["dmcgowan/myapp:latest", "docker.io/dmcgowan/myapp:latest", "dmcgowan/myapp:latest", "docker.io/dmcgowan/myapp:latest"],
  ])("%s", (input, full, familiar, key) => {
    const r = parseReference(input);
    expect(formatReference(r)).toBe(full);
    expect(familiarString(r)).toBe(familiar);
    expect(canonicalKey(r)).toBe(key);
  });

  it("format(parse(x)) parses to the same reference (property)", () => {
    const comp = fc.stringMatching(/^[a-z0-9]{1,8}([._-][a-z0-9]{1,8}){0,2}$/);
    const host = fc.oneof(fc.constant(""), fc.constantFrom("quay.io/", "localhost:5000/", "[::1]:5000/", "registry.example.com/", "docker.io/", "index.docker.io/"));
    const tag = fc.oneof(fc.constant(""), fc.stringMatching(/^:[A-Za-z0-9_][A-Za-z0-9_.-]{0,20}$/));
    const digest = fc.oneof(fc.constant(""), fc.stringMatching(/^[0-9a-f]{64}$/).map((h) => `@sha256:${h}`));
    fc.assert(fc.property(host, fc.array(comp, { minLength: 1, maxLength: 3 }), tag, digest, (h, parts, t, d) => {
      const input = h + parts.join("/") + t + d;
      let a: ReturnType<typeof parseReference>;
      // Some generated inputs are invalid upstream too ("a_0.0/x": a host with "_").
      try { a = parseReference(input); } catch { return; }
      const b = parseReference(formatReference(a));
      expect(b).toEqual(a);
      // A familiar name whose first component looks like a host is ambiguous
      // upstream too ("docker.io/foo.bar/x" shows as "foo.bar/x"); skip those.
      const fam = familiarString(a);
      const head = fam.split("/")[0]!;
      if (!fam.includes("/") || a.domain !== "docker.io" || !/[.:]/.test(head)) expect(parseReference(fam)).toEqual(a);
    }), { numRuns: 500 });
  });
});
