#!/usr/bin/env bash
# make demo: the whole product on this machine only.
#   1. a local registry (Debian docker-registry) on loopback, notifying the converter
#   2. the converter (apparate converter)
#   3. a small image built with umoci, pushed with skopeo
#   4. its eStargz "-apparate" variant appears: the converter made it from the push event
#   5. the webhook over HTTPS with a throw-away CA
#   6. a sample AdmissionReview; the pod before and after
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
# (re)build when dist/ predates the converter
node "$root/dist/cli.js" converter --help >/dev/null 2>&1 || (cd "$root" && npm run -s build)

say "1. local registry (docker-registry) on loopback, notifying the converter"
rport=$(free_port); reg="127.0.0.1:$rport"; cport=$(free_port)
secret="demo-$(head -c 12 /dev/urandom | od -An -tx1 | tr -d ' \n')"
printf '%s' "$secret" > "$work/registry-secret"
cat > "$work/registry.yml" <<YML
version: 0.1
log: {level: error, accesslog: {disabled: true}}
storage: {filesystem: {rootdirectory: $work/registry}}
http: {addr: $reg, secret: demo}
notifications:
  endpoints:
    - name: apparate
      url: http://127.0.0.1:$cport/events/registry
      headers: {Authorization: ["Bearer $secret"]}
      timeout: 2s
      threshold: 3
      backoff: 500ms
YML
docker-registry serve "$work/registry.yml" >"$work/registry.log" 2>&1 & pids+=($!)
wait_http "http://$reg/v2/"
echo "registry at http://$reg"

say "2. the converter (apparate converter): registry events in, -apparate images out"
cat > "$work/config.yaml" <<YML
namespaces: "default,sa1,sa2"
acceleration:
  registries: ["$reg"]
rewrite:
  registries:
    quay.io: quay.tencentcloudcr.com
registry:
  plainHttp: ["$reg"]
converter:
  sources: [{name: registry, kind: distribution, secretFile: "$work/registry-secret"}]
  rescanIntervalSeconds: 0
YML
LOG_LEVEL=warn node "$root/dist/cli.js" converter --config "$work/config.yaml" --host 127.0.0.1 --port "$cport" >"$work/converter.log" 2>&1 & pids+=($!)
wait_http "http://127.0.0.1:$cport/healthz"
echo "converter at http://127.0.0.1:$cport (POST /events/registry, GET /conversions)"

say "3. a small image built with umoci, pushed with skopeo"
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

say "4. $reg/demo/hello:1.0-apparate appears: nobody converted it, the push did"
for _ in $(seq 1 300); do
  curl -s -o /dev/null -w '%{http_code}' -H 'Accept: application/vnd.oci.image.manifest.v1+json' "http://$reg/v2/demo/hello/manifests/1.0-apparate" | grep -q 200 && break
  sleep 0.1
done
curl -s -I -H 'Accept: application/vnd.oci.image.index.v1+json, application/vnd.oci.image.manifest.v1+json' \
  "http://$reg/v2/demo/hello/manifests/1.0-apparate" | grep -i '^content-type'
# shellcheck disable=SC2016 # ${...} is a JavaScript template literal, for node, not for the shell
curl -s "http://127.0.0.1:$cport/conversions" | node -e 'let s="";process.stdin.on("data",d=>s+=d).on("end",()=>{for(const r of JSON.parse(s).recent)console.log(`${r.state}: ${r.source} -> ${r.target} (${r.trigger}, ${r.durationMs} ms)`)})'

say "5. the webhook over HTTPS (throw-away CA), with the same configuration"
wport=$(free_port); mport=$(free_port)
LOG_LEVEL=warn node "$root/dist/cli.js" serve --config "$work/config.yaml" --host 127.0.0.1 --port "$wport" --metrics-port "$mport" --self-signed-ca-out "$work/ca.pem" >"$work/webhook.log" 2>&1 & pids+=($!)
wait_http "http://127.0.0.1:$mport/readyz"
echo "webhook at https://127.0.0.1:$wport/mutate"

say "6. a sample pod, sent as an AdmissionReview"
node "$here/show.mjs" "https://127.0.0.1:$wport/mutate" "$work/ca.pem" "$reg"
echo
echo "metrics: $(curl -s "http://127.0.0.1:$mport/metrics" | grep -E '^apparate_decisions_total' | tr '\n' ' ')"
