// vitest globalSetup. The integration suites skip themselves where a real component
// is missing, which is right on a developer's laptop and wrong in CI: there, a
// missing tool must fail the run, by name, instead of turning tests into skips.
import { accessSync, constants, existsSync } from "node:fs";
import { delimiter, join } from "node:path";

/** What the test matrix runs for real: [what, how to check, where it comes from]. */
const REQUIRED: ReadonlyArray<readonly [string, () => boolean, string]> = [
  ["docker-registry", () => existsSync(process.env.REGISTRY_BIN ?? "/usr/bin/docker-registry"), "Debian package docker-registry"],
  ["skopeo", () => onPath("skopeo"), "Debian package skopeo"],
  ["umoci", () => onPath("umoci"), "Debian package umoci"],
  ["containerd", () => existsSync("/usr/bin/containerd"), "Debian package containerd"],
  ["ctr", () => onPath("ctr"), "Debian package containerd"],
  ["containerd 1.7", () => existsSync(".tmp/debs/containerd-1.7/usr/bin/containerd") && existsSync(".tmp/debs/containerd-1.7/usr/bin/containerd-shim-runc-v2"), "trixie's containerd, unpacked by deploy/demo/install-deps.sh (make deps)"],
  ["containerd 2.x", () => existsSync(".tmp/debs/containerd-2/usr/bin/containerd") && existsSync(".tmp/debs/containerd-2/usr/bin/containerd-shim-runc-v2"), "unstable's containerd, unpacked by deploy/demo/install-deps.sh (make deps)"],
  ["runc", () => onPath("runc"), "Debian package runc (containerd's dependency)"],
  ["ctr-remote", () => existsSync("/usr/bin/ctr-remote"), "Debian package stargz-snapshotter"],
  ["htpasswd", () => onPath("htpasswd"), "Debian package apache2-utils"],
  ["busybox", () => existsSync("/bin/busybox"), "Debian package busybox-static"],
  ["helm", () => existsSync(".tmp/bin/helm"), "test/support/install-helm.sh (make helm)"],
  ["admission-driver", () => existsSync(".tmp/bin/admission-driver"), "test/support/build-apiserver-driver.sh (make apiserver-driver): kube-apiserver's mutating admission plugin"],
  ["prometheus", () => existsSync("/usr/bin/prometheus"), "Debian package prometheus"],
  ["promtool", () => existsSync("/usr/bin/promtool"), "Debian package prometheus"],
  ["shellcheck", () => onPath("shellcheck"), "Debian package shellcheck"],
  ["oras", () => existsSync(process.env.ORAS_BIN ?? ".tmp/debs/oras/usr/bin/oras"), "Debian unstable package oras (test/support/fetch-debs.sh, run by make deps)"],
  ["/dev/fuse", () => existsSync("/dev/fuse"), "the kernel's FUSE device"],
  ["root", () => process.getuid?.() === 0, "the node tests mount and run containerd as root"],
];

function onPath(cmd: string): boolean {
  return (process.env.PATH ?? "").split(delimiter).some((d) => {
    try { accessSync(join(d, cmd), constants.X_OK); return true; } catch { return false; }
  });
}

export function missingTools(): string[] {
  return REQUIRED.filter(([, ok]) => !ok()).map(([name, , from]) => `${name} (${from})`);
}

export default function setup(): void {
  if (process.env.CI !== "true") return;
  const missing = missingTools();
  if (missing.length > 0) {
    throw new Error(`CI=true and these are missing, so tests would be skipped silently: ${missing.join(", ")}. Run \`make deps helm\`.`);
  }
}
