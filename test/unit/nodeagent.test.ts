import { describe, expect, it } from "vitest";
import { parse } from "smol-toml";
import { applyApparate, ContainerdConfigError, effectiveConfig, legacyToHosts, removeApparate, v1PluginUri } from "../../src/nodeagent/containerd-config.js";
import { renderHostsEntry, renderHostsToml, renderSnapshotterConfig } from "../../src/nodeagent/hosts.js";
import { factsFrom, unitOf } from "../../src/nodeagent/node.js";
import { probeDocument } from "../../src/nodeagent/probe.js";
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
    expect(cri.containerd).toMatchObject({ default_runtime_name: "runc", snapshotter: "stargz", disable_snapshot_annotations: false });
    // discard_unpacked_layers is the node's choice: not forced.
    expect(cri.containerd.discard_unpacked_layers).toBeUndefined();
    expect(cri.registry.config_path).toBe("/etc/containerd/certs.d");
    expect(cri.registry.mirrors).toBeUndefined();
    expect(r.hosts).toEqual([{ dir: "docker.io", server: "https://registry-1.docker.io", mirrors: [{ url: "https://mirror.ccs.tencentyun.com" }] }]);
    expect(r.record.moved).toEqual([{ path: ["plugins", "io.containerd.grpc.v1.cri", "registry", "mirrors"], value: { "docker.io": { endpoint: ["https://mirror.ccs.tencentyun.com"] } } }]);
    expect(r.changed).toBe(true);
    // Idempotent: applying to our own output changes nothing.
    const again = applyApparate(r.text, opts(1));
    expect(again.changed).toBe(false);
    expect(again.record).toEqual({ previous: [], moved: [] });
  });

  it("version 3 (containerd 2.x) uses the io.containerd.cri.v1.images plugin", () => {
    const doc = parse(applyApparate("version = 3\n", opts(2)).text) as any;
    expect(doc.version).toBe(3);
    expect(doc.plugins["io.containerd.cri.v1.images"]).toMatchObject({ snapshotter: "stargz", disable_snapshot_annotations: false, registry: { config_path: "/etc/containerd/certs.d" } });
  });

  it("an empty or missing file gets a complete config", () => {
    const r = applyApparate("", opts(1));
    expect(r.changed).toBe(true);
    expect((parse(r.text) as any).version).toBe(2);
  });

  it("refuses a version mismatch, an unknown version, an unknown v1 plugin or broken TOML with an error naming it", () => {
    expect(() => applyApparate("version = 3\n", opts(1))).toThrow(/containerd 1.x reads config version 2, the file has version 3/);
    expect(() => applyApparate("[plugins.cri]\nsandbox_image = \"p\"\n", opts(2))).toThrow(/containerd 2.x reads config version 2 or 3, the file has version 1/);
    expect(() => applyApparate("version = 7\n", opts(1))).toThrow(/version 7 is not one containerd reads/);
    expect(() => applyApparate("[plugins.frobnicator]\nx = 1\n", opts(1))).toThrow(/plugin "frobnicator"/);
    expect(() => applyApparate("[plugins\n", opts(1))).toThrow(ContainerdConfigError);
  });

  it("a version-2 file on containerd 2.x stays version 2; the image keys go where 2.x reads them (io.containerd.cri.v1.images, and the 1.x section the file has), config_path beside the file's own registry table", () => {
    const withRegistry = `version = 2
[plugins."io.containerd.grpc.v1.cri".containerd]
snapshotter = "overlayfs"
[plugins."io.containerd.grpc.v1.cri".registry.mirrors."docker.io"]
endpoint = ["https://mirror.example"]
`;
    const r = applyApparate(withRegistry, opts(2));
    const doc = parse(r.text) as any;
    expect(doc.version).toBe(2);
    expect(doc.plugins["io.containerd.cri.v1.images"]).toEqual({ snapshotter: "stargz", disable_snapshot_annotations: false });
    // 2.x's migration replaces the images registry with the file's CRI registry table: config_path goes there.
    expect(doc.plugins["io.containerd.grpc.v1.cri"].registry).toEqual({ config_path: "/etc/containerd/certs.d" });
    // 2.1.9 reads the 1.x keys instead when that section also defines runtimes: set there too.
    expect(doc.plugins["io.containerd.grpc.v1.cri"].containerd).toEqual({ snapshotter: "stargz", disable_snapshot_annotations: false });
    expect(r.hosts.map((h) => h.dir)).toEqual(["docker.io"]);
    // Without a registry table of its own, config_path goes under the images plugin.
    const bare = parse(applyApparate("version = 2\n", opts(2)).text) as any;
    expect(bare.plugins["io.containerd.cri.v1.images"].registry).toEqual({ config_path: "/etc/containerd/certs.d" });
    // Idempotent.
    expect(applyApparate(r.text, opts(2)).changed).toBe(false);
  });

  it("a float stays a float and an integer an integer (containerd 1.7 refuses `sampling_ratio = 1` from its own default `1.0`)", () => {
    const text = `version = 2
[plugins."io.containerd.internal.v1.tracing"]
  sampling_ratio = 1.0
[plugins."io.containerd.gc.v1.scheduler"]
  pause_threshold = 0.02
  deletion_threshold = 0
  mutation_threshold = 100
`;
    const out = applyApparate(text, opts(1)).text;
    expect(out).toMatch(/^sampling_ratio = 1\.0$/m);
    expect(out).toMatch(/^pause_threshold = 0\.02$/m);
    expect(out).toMatch(/^deletion_threshold = 0$/m);
    expect(out).toMatch(/^mutation_threshold = 100$/m);
    expect(out).toMatch(/^version = 2$/m);
    expect(applyApparate(out, opts(1)).changed).toBe(false);
  });

  it("version 1 (no version key, plugins.cri) is migrated in-process to version 2, as containerd maps plugin IDs", () => {
    const v1 = `root = "/var/lib/containerd"
disabled_plugins = ["restart"]
[plugins.linux]
  shim_debug = true
[plugins.cri]
  sandbox_image = "k8s.gcr.io/pause:3.2"
  [plugins.cri.containerd]
    snapshotter = "overlayfs"
  [plugins.cri.registry.mirrors."docker.io"]
    endpoint = ["https://mirror.gcr.io"]
`;
    const r = applyApparate(v1, opts(1));
    const doc = parse(r.text) as any;
    expect(doc.version).toBe(2);
    expect(r.record.migratedFromV1).toBe(true);
    expect(doc.disabled_plugins).toEqual(["io.containerd.internal.v1.restart"]);
    expect(doc.plugins["io.containerd.runtime.v1.linux"]).toEqual({ shim_debug: true });
    expect(doc.plugins.cri).toBeUndefined();
    expect(doc.plugins["io.containerd.grpc.v1.cri"].sandbox_image).toBe("k8s.gcr.io/pause:3.2");
    expect(doc.plugins["io.containerd.grpc.v1.cri"].containerd.snapshotter).toBe("stargz");
    expect(r.hosts[0]).toMatchObject({ dir: "docker.io", mirrors: [{ url: "https://mirror.gcr.io" }] });
    expect(v1PluginUri("devmapper")).toBe("io.containerd.snapshotter.v1.devmapper");
  });

  it("legacy registry.configs TLS moves to hosts.toml (ca, client pair, skip_verify); auth stays; \"*\" becomes _default; rewrite is kept", () => {
    const text = `version = 2
[plugins."io.containerd.grpc.v1.cri".registry.mirrors."*"]
  endpoint = ["https://mirror.internal:5000"]
[plugins."io.containerd.grpc.v1.cri".registry.mirrors."docker.io"]
  endpoint = ["https://mirror.internal:5000", "https://registry-1.docker.io"]
  [plugins."io.containerd.grpc.v1.cri".registry.mirrors."docker.io".rewrite]
    "^library/(.*)" = "dockerhub/library/$1"
[plugins."io.containerd.grpc.v1.cri".registry.configs."mirror.internal:5000".tls]
  ca_file = "/etc/pki/mirror-ca.pem"
  cert_file = "/etc/pki/client.pem"
  key_file = "/etc/pki/client-key.pem"
[plugins."io.containerd.grpc.v1.cri".registry.configs."registry.corp".tls]
  insecure_skip_verify = true
[plugins."io.containerd.grpc.v1.cri".registry.configs."registry.corp".auth]
  username = "robot"
`;
    const r = applyApparate(text, opts(1));
    const reg = (parse(r.text) as any).plugins["io.containerd.grpc.v1.cri"].registry;
    expect(reg.mirrors).toBeUndefined();
    expect(reg.configs).toEqual({ "registry.corp": { auth: { username: "robot" } } });
    const byDir = Object.fromEntries(r.hosts.map((h) => [h.dir, h]));
    const mirrorTls = { ca: "/etc/pki/mirror-ca.pem", client: ["/etc/pki/client.pem", "/etc/pki/client-key.pem"] };
    expect(byDir._default).toEqual({ dir: "_default", mirrors: [{ url: "https://mirror.internal:5000", tls: mirrorTls }] });
    expect(byDir["docker.io"]).toEqual({ dir: "docker.io", server: "https://registry-1.docker.io", mirrors: [{ url: "https://mirror.internal:5000", tls: mirrorTls, rewrite: { "^library/(.*)": "dockerhub/library/$1" } }] });
    expect(byDir["registry.corp"]).toEqual({ dir: "registry.corp", server: "https://registry.corp", tls: { skip_verify: true }, mirrors: [] });
    expect(parse(renderHostsEntry(byDir["docker.io"]!))).toEqual({
      server: "https://registry-1.docker.io",
      host: { "https://mirror.internal:5000": { capabilities: ["pull", "resolve"], ca: "/etc/pki/mirror-ca.pem", client: ["/etc/pki/client.pem", "/etc/pki/client-key.pem"], rewrite: { "^library/(.*)": "dockerhub/library/$1" } } },
    });
    expect(parse(renderHostsEntry(byDir["registry.corp"]!))).toEqual({ server: "https://registry.corp", skip_verify: true });
    // Negative control: nothing to move, nothing moved.
    expect(legacyToHosts(undefined, { "r.example": { auth: { username: "u" } } })).toEqual([]);
  });

  it("an existing config_path with several directories is kept whole; hosts.toml goes to the first", () => {
    const r = applyApparate(`version = 2\n[plugins."io.containerd.grpc.v1.cri".registry]\nconfig_path = "/etc/containerd/certs.d:/etc/docker/certs.d"\n`, opts(1));
    expect((parse(r.text) as any).plugins["io.containerd.grpc.v1.cri"].registry.config_path).toBe("/etc/containerd/certs.d:/etc/docker/certs.d");
    expect(r.hostsDir).toBe("/etc/containerd/certs.d");
    const r2 = applyApparate(`version = 2\n[plugins."io.containerd.grpc.v1.cri".registry]\nconfig_path = "/var/lib/hosts:/etc/containerd/certs.d"\n`, opts(1));
    expect(r2.hostsDir).toBe("/var/lib/hosts");
    expect(r2.record.previous.map((p) => p.path.at(-1))).not.toContain("config_path");
  });

  it.each([
    ["overlaybd", `[plugins."io.containerd.grpc.v1.cri".containerd]\nsnapshotter = "overlaybd"\n`],
    ["nydus", `[plugins."io.containerd.grpc.v1.cri".containerd]\nsnapshotter = "nydus"\n`],
    ["a user's own proxy_plugins.stargz", `[proxy_plugins.stargz]\ntype = "snapshot"\naddress = "/run/containerd-stargz-grpc/containerd-stargz-grpc.sock"\n`],
  ])("a CRI that already uses another snapshotter (%s) is not taken over unless replaceSnapshotter", (_n, body) => {
    const text = `version = 2\n${body}`;
    const r = applyApparate(text, opts(1));
    expect(r.refused?.reason).toBe("SnapshotterInUse");
    expect(r.refused?.message).toMatch(/replaceSnapshotter/);
    expect(r.text).toBe(text);
    const forced = applyApparate(text, { ...opts(1), replaceSnapshotter: true });
    expect(forced.refused).toBeUndefined();
    expect((parse(forced.text) as any).plugins["io.containerd.grpc.v1.cri"].containerd.snapshotter).toBe("stargz");
    // Uninstall after a forced take-over gives the node's own snapshotter back.
    const back = parse(removeApparate(forced.text, { snapshotterSocket: opts(1).snapshotterSocket }, forced.record)) as any;
    expect(back).toEqual(parse(text));
  });

  it("imports: a drop-in that replaces the CRI section is found on the effective config and refused with its reason", () => {
    const main = `version = 2\nimports = ["/etc/containerd/conf.d/*.toml"]\n`;
    const dropIn = parse(`version = 2\n[plugins."io.containerd.grpc.v1.cri".containerd]\nsnapshotter = "overlayfs"\n`) as any;
    const eff = effectiveConfig(parse(main) as any, [dropIn]);
    expect(eff.plugins["io.containerd.grpc.v1.cri"].containerd.snapshotter).toBe("overlayfs");
    expect(applyApparate(main, opts(1), eff).refused?.reason).toBe("CriSectionImported");
    // Negative control: a drop-in that does not touch CRI does not block.
    const other = effectiveConfig(parse(main) as any, [parse(`version = 2\n[plugins."io.containerd.internal.v1.opt"]\npath = "/opt/x"\n`) as any]);
    expect(applyApparate(main, opts(1), other).refused).toBeUndefined();
  });

  it("removing apparate's keys keeps everything else and gives moved mirrors back", () => {
    const r = applyApparate(V2_WITH_MIRRORS, opts(1));
    const edited = r.text + '\n[plugins."io.containerd.internal.v1.opt"]\npath = "/opt/containerd"\n';
    const back = parse(removeApparate(edited, opts(1), r.record)) as any;
    expect(back.plugins["io.containerd.grpc.v1.cri"].registry).toEqual({ mirrors: { "docker.io": { endpoint: ["https://mirror.ccs.tencentyun.com"] } } });
    expect(back.plugins["io.containerd.grpc.v1.cri"].containerd).toEqual({ default_runtime_name: "runc" });
    expect(back.plugins["io.containerd.internal.v1.opt"].path).toBe("/opt/containerd");
    // Without a record (state lost): only recognisably apparate's keys go.
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

describe("the throw-away probe config", () => {
  it("runs beside the live containerd: own root, state, sockets, no TCP listeners, no shared snapshotter roots", () => {
    const live = parse(`version = 2
root = "/var/lib/containerd"
state = "/run/containerd"
imports = ["/etc/containerd/conf.d/*.toml"]
[grpc]
address = "/run/containerd/containerd.sock"
tcp_address = "0.0.0.0:2375"
[debug]
address = "/run/containerd/debug.sock"
[metrics]
address = "127.0.0.1:1338"
[cgroup]
path = "/system.slice/containerd"
[plugins."io.containerd.snapshotter.v1.overlayfs"]
root_path = "/data/containerd/overlay"
[plugins."io.containerd.grpc.v1.cri"]
stream_server_port = "10010"
`) as any;
    const p = probeDocument(live, "/var/lib/apparate-node/probe");
    expect(p).toMatchObject({ root: "/var/lib/apparate-node/probe/root", state: "/var/lib/apparate-node/probe/state", grpc: { address: "/var/lib/apparate-node/probe/c.sock", tcp_address: "" }, debug: { address: "" }, metrics: { address: "" } });
    expect(p.imports).toBeUndefined();
    expect(p.cgroup).toBeUndefined();
    expect(p.plugins["io.containerd.snapshotter.v1.overlayfs"].root_path).toBeUndefined();
    expect(p.plugins["io.containerd.grpc.v1.cri"].stream_server_port).toBe("0");
    expect(p.disabled_plugins).toContain("io.containerd.nri.v1.nri");
    // The live document is not changed.
    expect(live.root).toBe("/var/lib/containerd");
  });
});

describe("know the node", () => {
  it.each([
    ["containerd from its unit", ["/usr/bin/containerd"], "0::/system.slice/containerd.service\n", { flavour: "containerd", config: "/etc/containerd/config.toml", socket: "/run/containerd/containerd.sock", restartCommand: ["systemctl", "restart", "containerd.service"] }],
    ["another --config and address (cgroup v1)", ["/usr/local/bin/containerd", "--config=/etc/containerd/custom.toml", "-a", "/run/ctd.sock"], "12:pids:/system.slice/ctd.service\n1:name=systemd:/system.slice/ctd.service\n", { flavour: "containerd", config: "/etc/containerd/custom.toml", socket: "/run/ctd.sock", restartCommand: ["systemctl", "restart", "ctd.service"] }],
    ["k3s: the template, seeded from the rendered file", ["containerd", "-c", "/var/lib/rancher/k3s/agent/etc/containerd/config.toml", "-a", "/run/k3s/containerd/containerd.sock", "--state", "/run/k3s/containerd"], "0::/system.slice/k3s-agent.service\n", { flavour: "k3s", config: "/var/lib/rancher/k3s/agent/etc/containerd/config.toml.tmpl", seedFrom: "/var/lib/rancher/k3s/agent/etc/containerd/config.toml", socket: "/run/k3s/containerd/containerd.sock", restartCommand: ["systemctl", "restart", "k3s-agent.service"] }],
    ["rke2 with containerd 2 (config-v3)", ["containerd", "-c", "/var/lib/rancher/rke2/agent/etc/containerd/config-v3.toml"], "0::/system.slice/rke2-server.service\n", { flavour: "rke2", config: "/var/lib/rancher/rke2/agent/etc/containerd/config-v3.toml.tmpl", seedFrom: "/var/lib/rancher/rke2/agent/etc/containerd/config-v3.toml", restartCommand: ["systemctl", "restart", "rke2-server.service"] }],
  ])("%s", (_n, argv, cgroup, want) => {
    expect(factsFrom(argv, cgroup, () => false)).toMatchObject(want);
  });

  it("an existing k3s template is edited in place (no seed); no unit in the cgroup falls back to containerd.service", () => {
    expect(factsFrom(["containerd", "-c", "/var/lib/rancher/k3s/agent/etc/containerd/config.toml"], "", () => true).seedFrom).toBeUndefined();
    expect(unitOf("0::/user.slice\n")).toBeUndefined();
    expect(factsFrom(["containerd"], "0::/\n", () => false).restartCommand).toEqual(["systemctl", "restart", "containerd.service"]);
  });
});

describe("node label gate", () => {
  it("labels when healthy, removes after the threshold of failures in a row", () => {
    const g = new LabelGate(3);
    expect([true, true, false, false, true, false, false, false, false, true].map((h) => g.observe(h))).toEqual(
      ["add", undefined, undefined, undefined, undefined, undefined, undefined, "remove", undefined, "add"]);
  });

  it("a CRI that does not use the snapshotter removes the label at once (no grace period)", () => {
    const g = new LabelGate(3);
    expect(g.observe(true)).toBe("add");
    expect(g.observe(false, true)).toBe("remove");
    expect(g.observe(false, true)).toBeUndefined();
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
