// What apparate judges before a request target reaches a proxy (the proxy resolves
// names and is the boundary for them): IP literals and "localhost" names. The dial path
// through a real proxy: test/integration/registry-proxy.test.ts.
import { describe, expect, it } from "vitest";
import { AddressRefusedError, DialPolicy, specialAddressKind } from "../../src/registry/network.js";

const refused = (p: DialPolicy, target: string): string | undefined => {
  try { p.assertProxyTarget(target); return undefined; } catch (err) { expect(err).toBeInstanceOf(AddressRefusedError); return (err as Error).message; }
};

describe("DialPolicy.assertProxyTarget", () => {
  const p = new DialPolicy();
  it.each([
    ["127.0.0.1:443", "127.0.0.1 is on a loopback address"],
    ["[::1]:5000", "::1 is on a loopback address"],
    ["[::ffff:a9fe:a9fe]:80", "::ffff:a9fe:a9fe is on a link-local address"],
    ["[::7f00:1]:80", "::7f00:1 is on a deprecated IPv4-compatible address"],
    ["10.96.0.1:443", "10.96.0.1 is on a private address"],
    ["localhost:5000", "localhost is on a loopback address"],
    ["LocalHost.:5000", "localhost is on a loopback address"],
    ["kubelet.localhost:10250", "kubelet.localhost is on a loopback address"],
  ])("%s is refused: %s", (target, why) => {
    expect(refused(p, target)).toBe(`address refused: ${why}; list it in registry.allowPrivateNetworks to allow it`);
  });

  it.each(["registry.example.com:443", "8.8.8.8:443", "[2001:4860:4860::8888]:443", "localhost.example.com:443", "notlocalhost:80"])(
    "negative control: %s is handed to the proxy", (target) => { expect(refused(p, target)).toBeUndefined(); },
  );

  it("negative control: what the operator allowed (a name, a range) is handed to the proxy", () => {
    const allowed = new DialPolicy({ namedHosts: ["localhost:5000"], allowPrivate: ["10.0.0.0/8"] });
    expect(refused(allowed, "localhost:5000")).toBeUndefined();
    expect(refused(allowed, "10.96.0.1:443")).toBeUndefined();
    expect(refused(allowed, "localhost:5001")).toMatch(/loopback/);
  });

  it("IPv4-compatible IPv6 addresses are not public", () => {
    expect(specialAddressKind("::7f00:1")).toBe("deprecated IPv4-compatible");
    expect(specialAddressKind("::")).toBe("unspecified");
    expect(specialAddressKind("::1")).toBe("loopback");
  });
});
