// Under CI=true, a missing real component fails the run by name instead of skipping.
import { afterEach, describe, expect, it } from "vitest";
import setup, { missingTools } from "../support/required-tools.js";

describe("no silent skips in CI", () => {
  const path = process.env.PATH; const ci = process.env.CI;
  afterEach(() => { process.env.PATH = path; if (ci === undefined) delete process.env.CI; else process.env.CI = ci; });

  it("with the tools off PATH, CI=true fails naming each one and where it comes from", () => {
    process.env.PATH = "/nonexistent";
    expect(missingTools()).toEqual(expect.arrayContaining(["skopeo (Debian package skopeo)", "umoci (Debian package umoci)", "htpasswd (Debian package apache2-utils)"]));
    process.env.CI = "true";
    expect(() => setup()).toThrow(/CI=true and these are missing.*skopeo \(Debian package skopeo\)/);
  });

  it("outside CI the same gaps only skip (negative control)", () => {
    process.env.PATH = "/nonexistent";
    delete process.env.CI;
    expect(() => setup()).not.toThrow();
  });
});
