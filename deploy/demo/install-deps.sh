#!/usr/bin/env bash
# Installs what the demo, the tests and the benchmarks run for real (Debian packages;
# iproute2 for the lazy-loading benchmark's shaped link; shellcheck for the deploy/ scripts).
# Idempotent.
set -euo pipefail
need=()
for pair in docker-registry:docker-registry skopeo:skopeo umoci:umoci ctr-remote:stargz-snapshotter containerd:containerd htpasswd:apache2-utils curl:curl ip:iproute2 tc:iproute2 shellcheck:shellcheck promtool:prometheus prometheus:prometheus; do
  cmd=${pair%%:*}; pkg=${pair##*:}
  command -v "$cmd" >/dev/null 2>&1 || need+=("$pkg")
done
[ -x /bin/busybox ] || need+=(busybox-static)
if [ ${#need[@]} -gt 0 ]; then
  echo "installing: ${need[*]}"
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO=sudo
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi
# containerd 1.7 (trixie) and 2.x (unstable) beside the system's 1.6, for the node agent's
# tests on every release users run: unpacked into .tmp/debs, never installed over the system's.
bash "$(dirname "$0")/../../test/support/fetch-debs.sh" trixie .tmp/debs/containerd-1.7 containerd
bash "$(dirname "$0")/../../test/support/fetch-debs.sh" unstable .tmp/debs/containerd-2 containerd
# Debian unstable's oras (1.3; bookworm has none): the tests read apparate's digest links
# with it (the OCI referrers tag schema). Unpacked into .tmp/debs/oras, never installed.
bash "$(dirname "$0")/../../test/support/fetch-debs.sh" unstable .tmp/debs/oras oras
