// Registry event parsing against real payloads (test/fixtures/registry-events/SOURCES.md).
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { EventPayloadError, parseDistributionEnvelope, parseHarborWebhook } from "../../src/converter/events.js";

const FIX = join(__dirname, "../fixtures/registry-events");
const load = (name: string): unknown => JSON.parse(readFileSync(join(FIX, name), "utf8"));

describe("distribution notifications", () => {
  it.each([
    ["distribution-2.8-manifest-push.json", [{ registry: "127.0.0.1:5077", repository: "team/app", tag: "v1", digest: "sha256:597b900c0fddbdf27fa0b8b0683faa67a8defc4cb82767b9a860bfaa612da999", mediaType: "application/vnd.oci.image.manifest.v1+json" }]],
    ["distribution-2.8-index-push.json", [{ registry: "127.0.0.1:5077", repository: "team/app", tag: "v2-multi", digest: "sha256:13d24890cef13da6f772e2e416796582ec4decaee0cc439691852faf90068404", mediaType: "application/vnd.oci.image.index.v1+json" }]],
  ])("a tagged manifest or index push from a real registry (%s) is work", (file, pushes) => {
    const r = parseDistributionEnvelope(load(file));
    expect(r.pushes).toMatchObject(pushes);
    expect(r.ignored).toEqual([]);
  });

  it.each([
    ["distribution-2.8-blob-push.json", /push of application\/octet-stream/],
    ["distribution-2.8-pull.json", /action pull/],
    ["distribution-pull.json", /action pull/],
  ])("pulls and blob pushes are ignored, not rejected (%s)", (file, reason) => {
    const r = parseDistributionEnvelope(load(file));
    expect(r.pushes).toEqual([]);
    expect(r.ignored).toEqual([expect.stringMatching(reason)]);
  });

  it("the documented v2 envelope: the untagged manifest push is by digest, the blobs are not manifests", () => {
    const r = parseDistributionEnvelope(load("distribution-push-v2.json"));
    expect(r.pushes).toEqual([]);
    expect(r.ignored).toEqual(["events[0]: push by digest (no tag)", expect.stringContaining("events[1]: push of application/vnd.docker.container.image.rootfs.diff+x-gtar"), expect.stringContaining("events[2]")]);
  });

  it("a tag on the event itself (the documented field) counts as the target's", () => {
    const doc = load("distribution-push-v2.json") as { events: Array<Record<string, unknown>> };
    const r = parseDistributionEnvelope({ events: [{ ...doc.events[0], tag: "1.0" }] });
    expect(r.pushes).toMatchObject([{ repository: "library/test", tag: "1.0", registry: "registrycluster.local", actor: "test-actor" }]);
  });

  const push = (target: Record<string, unknown>) => ({ events: [{ action: "push", target: { mediaType: "application/vnd.oci.image.manifest.v1+json", repository: "a/b", digest: `sha256:${"a".repeat(64)}`, tag: "v1", ...target } }] });
  it.each([
    [null, /JSON object/],
    [{}, /"events" must be an array/],
    [{ events: "x" }, /"events" must be an array/],
    [{ events: [1] }, /events\[0\] must be an object/],
    [{ events: [{ target: {} }] }, /events\[0\]\.action is missing/],
    [{ events: [{ action: "push" }] }, /events\[0\]\.target must be an object/],
    [push({ repository: "Upper/Case" }), /target\.repository: "Upper\/Case" is not a repository name/],
    [push({ digest: "sha256:short" }), /target\.digest "sha256:short" is not a digest/],
    [push({ tag: "bad tag" }), /target\.tag "bad tag" is not a tag/],
    [{ events: Array.from({ length: 1001 }, () => ({})) }, /too many events/],
  ])("malformed envelope %#: EventPayloadError naming the field", (body, message) => {
    expect(() => parseDistributionEnvelope(body)).toThrow(EventPayloadError);
    expect(() => parseDistributionEnvelope(body)).toThrow(message);
  });

  it("negative control: the same envelope with valid fields parses", () => {
    expect(parseDistributionEnvelope(push({})).pushes).toHaveLength(1);
  });
});

describe("Harbor webhooks", () => {
  const expected = { registry: "hub.harbor.com", repository: "test-webhook/debian", tag: "latest", digest: "sha256:8a9e9863dbb6e10edb5adfe917c00da84e1700fa76e7ed02476aa6e6fb8ee0d8", actor: "admin" };

  it("Default format PUSH_ARTIFACT", () => {
    expect(parseHarborWebhook(load("harbor-default-push.json"), { "content-type": "application/json" })).toEqual({ pushes: [expected], ignored: [] });
  });

  it("CloudEvents, structured mode (what Harbor sends)", () => {
    const r = parseHarborWebhook(load("harbor-cloudevents-push.json"), { "content-type": "application/cloudevents+json" });
    expect(r.pushes).toEqual([{ ...expected, id: "66e18103-09c1-41f6-982f-37df223f3eeb" }]);
  });

  it("CloudEvents, binary mode: attributes in ce-* headers, data as the body", () => {
    const ce = load("harbor-cloudevents-push.json") as Record<string, unknown>;
    const headers = { "content-type": "application/json", "ce-specversion": "1.0", "ce-type": "harbor.artifact.pushed", "ce-id": ce.id as string, "ce-source": ce.source as string, "ce-operator": "admin" };
    expect(parseHarborWebhook(ce.data, headers).pushes).toEqual([{ ...expected, id: ce.id }]);
  });

  it.each([
    ["harbor-default-push-by-digest.json", "push by digest"],
    ["harbor-cloudevents-push-by-digest.json", "push by digest"],
    ["harbor-cloudevents-pull.json", "event type harbor.artifact.pulled"],
  ])("%s is ignored: %s", (file, reason) => {
    const r = parseHarborWebhook(load(file), {});
    expect(r.pushes).toEqual([]);
    expect(r.ignored).toEqual([expect.stringContaining(reason)]);
  });

  it.each([
    [{}, {}, /type is missing/],
    [{ type: "PUSH_ARTIFACT" }, {}, /event_data must be an object/],
    [{ type: "PUSH_ARTIFACT", event_data: { repository: {}, resources: [] } }, {}, /repo_full_name is missing/],
    [{ type: "PUSH_ARTIFACT", event_data: { repository: { repo_full_name: "a/b" }, resources: [{ tag: "x" }] } }, {}, /resources\[0\]\.digest/],
    [{ specversion: "0.3", type: "harbor.artifact.pushed" }, {}, /specversion "0.3" is not 1.0/],
    [{}, { "ce-specversion": "1.0" }, /ce-type header is missing/],
  ])("malformed payload %#: EventPayloadError", (body, headers, message) => {
    expect(() => parseHarborWebhook(body, headers)).toThrow(message);
  });
});
