// Issue 23 item 3: the installs that went wrong on containerd 1.6, as pure decisions.
// (a) a version-1 file naming CRI both `plugins.cri` and `plugins."io.containerd.grpc.v1.cri"`.
// The base file is minikube's real v1 config from the corpus (SOURCES.json:
// minikube-iso-old-v1.toml); the URI-named section the test adds is the shape the
// issue reports for minikube's generated v1 file (a runc runtime with SystemdCgroup).
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { parse } from "smol-toml";
import { describe, expect, it } from "vitest";
import { applyApparate, ContainerdConfigError, isLocalhost, legacyToHosts, migrateV1 } from "../../src/nodeagent/containerd-config.js";
import { renderHostsEntry } from "../../src/nodeagent/hosts.js";

const FIXTURES = "test/fixtures/containerd-configs";
const MINIKUBE_V1 = readFileSync(join(FIXTURES, "minikube-iso-old-v1.toml"), "utf8");
const opts = { containerdMajor: 1, snapshotterSocket: "/run/apparate-stargz/stargz.sock", certsDir: "/etc/containerd/certs.d" };

// What containerd 1.x never reads in a version-1 file: CRI named by its URI.
const URI_SECTION = `
  [plugins."io.containerd.grpc.v1.cri"]
    sandbox_image = "registry.k8s.io/pause:9.9"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = true
`;
const withUriAfter = `${MINIKUBE_V1}\n${URI_SECTION}`;
// The same section before `[plugins.cri]`: precedence does not depend on order.
const withUriBefore = MINIKUBE_V1.replace("[plugins]\n", `[plugins]\n${URI_SECTION}`);

const cri = (text: string): any => (parse(applyApparate(text, opts).text) as any).plugins["io.containerd.grpc.v1.cri"];

describe("(a) version-1 file with CRI under both names: migrated by containerd 1.x's precedence (plugin ID only)", () => {
  it.each([
    ["URI section after plugins.cri", withUriAfter],
    ["URI section before plugins.cri", withUriBefore],
  ])("%s: sandbox image, CNI conf dir, default runtime and the legacy mirror survive; the dead URI section does not come alive", (_name, text) => {
    expect(text).toContain('[plugins."io.containerd.grpc.v1.cri"]');
    const r = applyApparate(text, opts);
    const doc = parse(r.text) as any;
    const c = doc.plugins["io.containerd.grpc.v1.cri"];
    expect(doc.version).toBe(2);
    expect(c.sandbox_image).toBe("k8s.gcr.io/pause:3.1");
    expect(c.cni).toEqual({ bin_dir: "/opt/cni/bin", conf_dir: "/etc/cni/net.d", conf_template: "" });
    expect(c.containerd.default_runtime).toEqual({ runtime_type: "io.containerd.runtime.v1.linux", runtime_engine: "", runtime_root: "" });
    expect(c.containerd.no_pivot).toBe(true);
    expect(c.containerd.runtimes).toBeUndefined();
    expect(r.hosts).toEqual([{ dir: "docker.io", server: "https://registry-1.docker.io", mirrors: [] }]);
    expect(r.record.ignoredV1).toEqual(['plugins."io.containerd.grpc.v1.cri"']);
    // Everything but apparate's keys is what the plain v1 file (no URI section) gives.
    expect(c).toEqual(cri(MINIKUBE_V1));
  });

  it("negative control: the real minikube v1 file alone migrates with nothing ignored", () => {
    const r = applyApparate(MINIKUBE_V1, opts);
    expect(r.record.ignoredV1).toBeUndefined();
    expect(cri(MINIKUBE_V1).sandbox_image).toBe("k8s.gcr.io/pause:3.1");
  });

  it("a version-1 file with CRI only under its URI: containerd 1.x runs CRI on defaults, so the migrated file has only apparate's CRI keys", () => {
    const text = `root = "/var/lib/containerd"\n${URI_SECTION}`;
    const r = applyApparate(text, opts);
    const c = (parse(r.text) as any).plugins["io.containerd.grpc.v1.cri"];
    expect(c).toEqual({ containerd: { snapshotter: "stargz", disable_snapshot_annotations: false }, registry: { config_path: "/etc/containerd/certs.d" } });
    expect(r.record.ignoredV1).toEqual(['plugins."io.containerd.grpc.v1.cri"']);
  });

  it("disabled_plugins by URI in a version-1 file disable nothing (V1DisabledFilter matches IDs): CRI is not taken as disabled", () => {
    const doc: any = parse(`disabled_plugins = ["io.containerd.grpc.v1.cri", "restart"]\n[plugins.cri]\n  sandbox_image = "x"\n`);
    expect(migrateV1(doc)).toEqual(['disabled_plugins "io.containerd.grpc.v1.cri"']);
    expect(doc.disabled_plugins).toEqual(["io.containerd.internal.v1.restart"]);
    const r = applyApparate(`disabled_plugins = ["io.containerd.grpc.v1.cri"]\n[plugins.cri]\n  sandbox_image = "x"\n`, opts);
    expect(r.refused).toBeUndefined();
    // Negative control: the ID does disable CRI.
    expect(applyApparate(`disabled_plugins = ["cri"]\n`, opts).refused).toMatchObject({ reason: "CriDisabled" });
  });

  it("required_plugins by URI in a version-1 file: containerd 1.x would not start; a clear error, nothing migrated", () => {
    expect(() => applyApparate(`required_plugins = ["io.containerd.grpc.v1.cri"]\n`, opts)).toThrow(ContainerdConfigError);
    expect(() => applyApparate(`required_plugins = ["io.containerd.grpc.v1.cri"]\n`, opts)).toThrow(/matches by ID only/);
  });
});

// (b) legacy mirrors moved to hosts.toml: containerd's CRI (pkg/cri/server/image_pull.go of
// 1.6) uses an endpoint's path as the API root as written ("/v2" only when there is none)
// and gives a bare endpoint `http://` for localhost and loopback (addDefaultScheme,
// defaultScheme); hosts.toml appends "/v2" to a path unless `override_path = true`
// (remotes/docker/config/hosts.go parseHostConfig) and takes a bare host as https.
describe("(b) legacy mirror endpoints keep containerd's meaning in hosts.toml", () => {
  const mirrorOf = (endpoint: string, key = "registry.corp") => {
    const e = legacyToHosts({ [key]: { endpoint: [endpoint] } }, undefined)[0]!;
    const doc = parse(renderHostsEntry(e)) as any;
    return { server: doc.server, hosts: doc.host };
  };
  it.each([
    // endpoint as in config.toml, the hosts.toml host key, override_path
    ["https://harbor.example/v2/proxy-project", "https://harbor.example/v2/proxy-project", true],
    ["https://nexus.example/repository/docker-hosted", "https://nexus.example/repository/docker-hosted", true],
    ["https://mirror.example/dockerhub", "https://mirror.example/dockerhub", true],
    ["https://mirror.example/v2", "https://mirror.example/v2", true],
    ["https://mirror.example", "https://mirror.example", undefined],
    ["https://mirror.example/", "https://mirror.example/", undefined],
    ["mirror.example:5000", "https://mirror.example:5000", undefined],
    ["localhost:5001", "http://localhost:5001", undefined],
    ["127.0.0.1:5001", "http://127.0.0.1:5001", undefined],
    ["127.3.4.5:5001", "http://127.3.4.5:5001", undefined],
    ["[::1]:5001", "http://[::1]:5001", undefined],
    ["localhost:5001/v2/cache", "http://localhost:5001/v2/cache", true],
    ["https://localhost:5001", "https://localhost:5001", undefined],
  ])("%s -> [host.%j] override_path=%s", (endpoint, key, override) => {
    const { hosts } = mirrorOf(endpoint);
    expect(Object.keys(hosts)).toEqual([key]);
    expect(hosts[key].override_path).toBe(override);
    expect(hosts[key].capabilities).toEqual(["pull", "resolve"]);
  });

  it("the upstream (server) of a localhost registry is http, as containerd's default host for it; others https", () => {
    expect(mirrorOf("https://m.example", "localhost:5000").server).toBe("http://localhost:5000");
    expect(mirrorOf("https://m.example", "127.0.0.1:5000").server).toBe("http://127.0.0.1:5000");
    expect(mirrorOf("https://m.example", "registry.corp:5000").server).toBe("https://registry.corp:5000");
    expect(mirrorOf("https://m.example", "docker.io").server).toBe("https://registry-1.docker.io");
  });

  it("isLocalhost is containerd's docker.IsLocalhost: localhost and loopback IPs, any port; not names that only look local", () => {
    for (const h of ["localhost", "localhost:5000", "LOCALHOST:1", "127.0.0.1", "127.255.0.9:80", "::1", "[::1]:5000"]) expect(isLocalhost(h), h).toBe(true);
    for (const h of ["localhost.localdomain", "my-localhost:5000", "128.0.0.1", "10.0.0.1:5000", "registry.local", "::2"]) expect(isLocalhost(h), h).toBe(false);
  });
});
