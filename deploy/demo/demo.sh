#!/usr/bin/env bash
# make demo: the webhook's main job on a built-in default, on this machine only.
#   1. a local registry (Debian docker-registry) on loopback
#   2. a small image built with umoci, pushed with skopeo
#   3. its eStargz "-apparate" variant made with ctr-remote (against a private containerd)
#   4. the webhook over HTTPS with a throw-away CA
#   5. a sample AdmissionReview; the pod before and after
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
work="$(mktemp -d /tmp/apparate-demo.XXXXXX)"
pids=()
cleanup() {
  for p in "${pids[@]:-}"; do if [ -n "$p" ]; then kill "$p" 2>/dev/null || true; fi; done
  wait 2>/dev/null || true
  umount "$work/containerd/root/"* 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT
say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
free_port() { node -e 'const s=require("net").createServer();s.listen(0,"127.0.0.1",()=>{console.log(s.address().port);s.close()})'; }
wait_http() { for _ in $(seq 1 100); do curl -s -o /dev/null "$@" && return 0; sleep 0.1; done; echo "timed out: $*" >&2; return 1; }

"$root/deploy/demo/install-deps.sh"
[ -f "$root/dist/cli.js" ] || (cd "$root" && npm run -s build)

say "1. local registry (docker-registry) on loopback"
rport=$(free_port); reg="127.0.0.1:$rport"
cat > "$work/registry.yml" <<YML
version: 0.1
log: {level: error, accesslog: {disabled: true}}
storage: {filesystem: {rootdirectory: $work/registry}}
http: {addr: $reg, secret: demo}
YML
docker-registry serve "$work/registry.yml" >"$work/registry.log" 2>&1 & pids+=($!)
wait_http "http://$reg/v2/"
echo "registry at http://$reg"

say "2. a small image built with umoci, pushed with skopeo"
cd "$work"
umoci init --layout img >/dev/null
umoci new --image img:1.0 >/dev/null
umoci unpack --rootless --image img:1.0 bundle >/dev/null
mkdir -p bundle/rootfs/bin bundle/rootfs/www
cp /bin/busybox bundle/rootfs/bin/busybox
echo "hello from apparate" > bundle/rootfs/www/index.html
head -c 4194304 /dev/urandom > bundle/rootfs/www/big.bin   # data a lazy pull never needs to fetch
umoci repack --image img:1.0 bundle >/dev/null
umoci config --image img:1.0 --config.cmd /bin/busybox --config.cmd cat --config.cmd /www/index.html >/dev/null
skopeo copy --quiet --dest-tls-verify=false oci:img:1.0 "docker://$reg/demo/hello:1.0"
echo "pushed $reg/demo/hello:1.0"

say "3. the eStargz variant $reg/demo/hello:1.0-apparate (ctr-remote convert --estargz --oci)"
mkdir -p "$work/containerd"
cat > "$work/containerd/config.toml" <<TOML
version = 2
root = "$work/containerd/root"
state = "$work/containerd/state"
disabled_plugins = ["io.containerd.grpc.v1.cri"]
[grpc]
  address = "$work/containerd/containerd.sock"
TOML
containerd --config "$work/containerd/config.toml" >"$work/containerd.log" 2>&1 & pids+=($!)
for _ in $(seq 1 100); do [ -S "$work/containerd/containerd.sock" ] && break; sleep 0.1; done
ctr_() { ctr-remote --address "$work/containerd/containerd.sock" --namespace demo "$@"; }
ctr_ images pull --plain-http "$reg/demo/hello:1.0" >/dev/null
ctr_ images convert --estargz --oci "$reg/demo/hello:1.0" "$reg/demo/hello:1.0-apparate" >/dev/null
ctr_ images push --plain-http "$reg/demo/hello:1.0-apparate" >/dev/null
curl -s -I -H 'Accept: application/vnd.oci.image.index.v1+json, application/vnd.oci.image.manifest.v1+json' \
  "http://$reg/v2/demo/hello/manifests/1.0-apparate" | grep -i '^content-type'

say "4. the webhook over HTTPS (throw-away CA)"
cat > "$work/config.yaml" <<YML
namespaces: "default,sa1,sa2"
acceleration:
  registries: ["$reg"]
rewrite:
  registries:
    quay.io: quay.tencentcloudcr.com
registry:
  plainHttp: ["$reg"]
YML
wport=$(free_port); mport=$(free_port)
LOG_LEVEL=warn node "$root/dist/cli.js" serve --config "$work/config.yaml" --host 127.0.0.1 --port "$wport" --metrics-port "$mport" --self-signed-ca-out "$work/ca.pem" >"$work/webhook.log" 2>&1 & pids+=($!)
wait_http "http://127.0.0.1:$mport/readyz"
echo "webhook at https://127.0.0.1:$wport/mutate"

say "5. a sample pod, sent as an AdmissionReview"
node "$here/show.mjs" "https://127.0.0.1:$wport/mutate" "$work/ca.pem" "$reg"
echo
echo "metrics: $(curl -s "http://127.0.0.1:$mport/metrics" | grep -E '^apparate_decisions_total' | tr '\n' ' ')"
