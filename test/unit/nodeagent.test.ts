import { describe, expect, it } from "vitest";
import { parse } from "smol-toml";
import { applyApparate, ContainerdConfigError, removeApparate } from "../../src/nodeagent/containerd-config.js";
import { renderHostsToml, renderSnapshotterConfig } from "../../src/nodeagent/hosts.js";
import { LabelGate } from "../../src/nodeagent/label.js";
import { parseContainerdVersion } from "../../src/nodeagent/runtime.js";
import { renderUnit } from "../../src/nodeagent/service.js";

const opts = (major: number) => ({ containerdMajor: major, snapshotterSocket: "/run/apparate-stargz/stargz.sock", certsDir: "/etc/containerd/certs.d" });

const V2_WITH_MIRRORS = `
version = 2
root = "/var/lib/containerd"
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "registry.k8s.io/pause:3.9"
  [plugins."io.containerd.grpc.v1.cri".containerd]
    default_runtime_name = "runc"
  [plugins."io.containerd.grpc.v1.cri".registry.mirrors."docker.io"]
    endpoint = ["https://mirror.ccs.tencentyun.com"]
`;

describe("containerd config edits (TOML, not text)", () => {
  it("version 2 (containerd 1.6/1.7): proxy plugin, CRI snapshotter, annotations, config_path; legacy mirrors moved out", () => {
    const r = applyApparate(V2_WITH_MIRRORS, opts(1));
    const doc = parse(r.text) as any;
    expect(doc.version).toBe(2);
    expect(doc.root).toBe("/var/lib/containerd");
    expect(doc.proxy_plugins.stargz).toEqual({ type: "snapshot", address: "/run/apparate-stargz/stargz.sock" });
    const cri = doc.plugins["io.containerd.grpc.v1.cri"];
    expect(cri.sandbox_image).toBe("registry.k8s.io/pause:3.9");
    expect(cri.containerd).toMatchObject({ default_runtime_name: "runc", snapshotter: "stargz", disable_snapshot_annotations: false, discard_unpacked_layers: false });
    expect(cri.registry.config_path).toBe("/etc/containerd/certs.d");
    expect(cri.registry.mirrors).toBeUndefined();
    expect(r.movedMirrors).toEqual({ "docker.io": ["https://mirror.ccs.tencentyun.com"] });
    expect(r.changed).toBe(true);
    // Idempotent: applying to our own output changes nothing.
    expect(applyApparate(r.text, opts(1)).changed).toBe(false);
  });

  it("version 3 (containerd 2.x) uses the io.containerd.cri.v1.images plugin", () => {
    const doc = parse(applyApparate("version = 3\n", opts(2)).text) as any;
    expect(doc.version).toBe(3);
    expect(doc.plugins["io.containerd.cri.v1.images"]).toMatchObject({ snapshotter: "stargz", disable_snapshot_annotations: false, discard_unpacked_layers: false, registry: { config_path: "/etc/containerd/certs.d" } });
  });

  it("an empty or missing file gets a complete config", () => {
    const r = applyApparate("", opts(1));
    expect(r.changed).toBe(true);
    expect((parse(r.text) as any).version).toBe(2);
  });

  it("refuses a version mismatch or broken TOML with a clear error, and changes nothing", () => {
    expect(() => applyApparate("version = 2\n", opts(2))).toThrow(/containerd 2.x needs config version 3/);
    expect(() => applyApparate("root = \"/x\"\n", opts(1))).toThrow(/needs config version 2, the file has version 1/);
    expect(() => applyApparate("[plugins\n", opts(1))).toThrow(ContainerdConfigError);
  });

  it("removing apparate's keys keeps everything else", () => {
    const ours = applyApparate(V2_WITH_MIRRORS, opts(1)).text;
    const edited = ours + '\n[plugins."io.containerd.internal.v1.opt"]\npath = "/opt/containerd"\n';
    const doc = parse(removeApparate(edited, opts(1))) as any;
    expect(doc.proxy_plugins).toBeUndefined();
    expect(doc.plugins["io.containerd.grpc.v1.cri"].containerd.snapshotter).toBeUndefined();
    expect(doc.plugins["io.containerd.internal.v1.opt"].path).toBe("/opt/containerd");
    expect(doc.root).toBe("/var/lib/containerd");
  });
});

describe("mirrors", () => {
  it("hosts.toml per registry (seed 004)", () => {
    expect(parse(renderHostsToml("quay.io", ["quay.tencentcloudcr.com"]))).toEqual({
      server: "https://quay.io", host: { "https://quay.tencentcloudcr.com": { capabilities: ["pull", "resolve"] } },
    });
    expect(parse(renderHostsToml("docker.io", ["mirror.ccs.tencentyun.com", "http://10.0.0.1:5000"]))).toEqual({
      server: "https://registry-1.docker.io",
      host: { "https://mirror.ccs.tencentyun.com": { capabilities: ["pull", "resolve"] }, "http://10.0.0.1:5000": { capabilities: ["pull", "resolve"] } },
    });
  });

  it("the same mirrors in the snapshotter's resolver config", () => {
    expect(parse(renderSnapshotterConfig({ "quay.io": ["quay.tencentcloudcr.com"] }))).toEqual({ resolver: { host: { "quay.io": { mirrors: [{ host: "quay.tencentcloudcr.com" }] } } } });
  });
});

describe("node label gate", () => {
  it("labels when healthy, removes after the threshold of failures in a row", () => {
    const g = new LabelGate(3);
    expect([true, true, false, false, true, false, false, false, false, true].map((h) => g.observe(h))).toEqual(
      ["add", undefined, undefined, undefined, undefined, undefined, undefined, "remove", undefined, "add"]);
  });
});

describe("runtime and service", () => {
  it.each([
    ["containerd github.com/containerd/containerd 1.6.20~ds1 1.6.20~ds1-1+deb12u3", 1, 6],
    ["containerd containerd.io v2.0.2 c507a0257ea6462fbd6f5ba4f5c74facb04021f4", 2, 0],
    ["containerd github.com/containerd/containerd v1.7.13 7c3aca7a610df76212171d200ca3811ff6096eb8", 1, 7],
  ])("reads %s", (out, major, minor) => {
    expect(parseContainerdVersion(out)).toEqual({ major, minor });
  });

  it("the systemd unit keeps FUSE mounts beyond the agent and carries the credentials path", () => {
    const u = renderUnit({ binary: "/usr/local/bin/apparate-stargz-grpc", socket: "/run/apparate-stargz/stargz.sock", root: "/var/lib/apparate-stargz", configDir: "/etc/apparate-stargz", dockerConfigDir: "/etc/apparate-stargz/docker" });
    expect(u).toContain("Environment=DOCKER_CONFIG=/etc/apparate-stargz/docker");
    expect(u).toContain("KillMode=process");
    expect(u).toContain("Restart=always");
    expect(u).toMatch(/ExecStart=\/usr\/local\/bin\/apparate-stargz-grpc --address \/run\/apparate-stargz\/stargz.sock/);
  });
});
