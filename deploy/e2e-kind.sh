#!/usr/bin/env bash
# make e2e-kind: the product on a real cluster, for users who have Docker. Not part of
# `make test` (CI machines have no Docker engine; the tests run each part for real
# without a cluster, see README, "Development").
#
# Each step is checked and the script stops at the first miss:
#   1. tools: docker (with a running engine), node, kubectl; kind and helm are installed
#      into .tmp/bin when missing;
#   2. a registry container "kind-registry" on kind's Docker network: the host pushes to
#      localhost:5001, and the cluster (nodes, snapshotter and the webhook pod alike)
#      reaches the same registry as kind-registry:5000 (never localhost, which inside a
#      pod is the pod itself);
#   3. a kind cluster whose containerd reads certs.d (kind's documented local-registry
#      pattern), with kind-registry:5000 as a plain-HTTP host;
#   4. the two apparate images built and loaded into the cluster;
#   5. an image pushed, and its -apparate (eStargz) variant made by `apparate convert`;
#   6. helm install (the chart creates the namespace with its Pod Security label), a
#      node opted in, and the agent's scheduling label appearing on it;
#   7. a namespace labelled apparate.io/inject=enabled and a pod created there: its image
#      must be the -apparate variant, it must be Running, and its layers must be mounted
#      lazily by the snapshotter (FUSE mounts on the node).
# On success the cluster and registry are deleted (KEEP=1 leaves them up); on a failure
# they stay, with diagnostics printed, for inspection.
set -euo pipefail
cd "$(dirname "$0")/.."

cluster="${CLUSTER:-apparate-e2e}"
reg_name=kind-registry
reg_port=5001
in_cluster="${reg_name}:5000"
release=apparate
release_ns=apparate-system
app_ns=e2e
kind_version="${KIND_VERSION:-v0.24.0}"
bin="$PWD/.tmp/bin"
mkdir -p "$bin"
export PATH="$bin:$PATH"

step() { printf '\n==> %s\n' "$*"; }
fail() { printf 'e2e-kind: FAILED: %s\n' "$*" >&2; exit 1; }

diagnose() {
  local code=$?
  if [ "$code" -ne 0 ] && command -v kubectl >/dev/null 2>&1; then
    echo "--- diagnostics (exit $code) ---" >&2
    kubectl get pods -A -o wide >&2 || true
    kubectl -n "$release_ns" logs "deploy/${release}" --tail=50 >&2 || true
    kubectl -n "$release_ns" logs "ds/${release}-node" --tail=50 >&2 || true
  fi
  if [ "${KEEP:-0}" != 1 ] && [ "$code" -eq 0 ]; then
    kind delete cluster --name "$cluster" >/dev/null 2>&1 || true
    docker rm -f "$reg_name" >/dev/null 2>&1 || true
  fi
}
trap diagnose EXIT

step "1. tools"
for t in docker node npm kubectl curl; do
  command -v "$t" >/dev/null || fail "$t is not installed"
done
docker info >/dev/null 2>&1 || fail "docker cannot reach a Docker engine (docker info failed)"
if ! command -v kind >/dev/null; then
  arch="$(uname -m)"; case "$arch" in x86_64) arch=amd64 ;; aarch64) arch=arm64 ;; esac
  url="https://github.com/kubernetes-sigs/kind/releases/download/${kind_version}/kind-linux-${arch}"
  curl -fsSL --retry 3 -o "$bin/kind" "$url"
  want="$(curl -fsSL --retry 3 "${url}.sha256sum" | awk '{print $1}')"
  echo "${want}  $bin/kind" | sha256sum -c - >/dev/null || fail "kind ${kind_version} checksum mismatch"
  chmod 0755 "$bin/kind"
fi
[ -d node_modules ] || npm ci --no-audit --no-fund
bash test/support/install-helm.sh >/dev/null
helm=.tmp/bin/helm
npm run -s build
version="$(node -p 'require("./package.json").version')"

step "2-3. registry ${in_cluster} (localhost:${reg_port} from this host) and kind cluster ${cluster}"
if ! kind get clusters | grep -qx "$cluster"; then
  kind create cluster --name "$cluster" --wait 120s --config=- <<'YAML'
kind: Cluster
apiVersion: kind.x-k8s.io/v1alpha4
containerdConfigPatches:
  - |-
    [plugins."io.containerd.grpc.v1.cri".registry]
      config_path = "/etc/containerd/certs.d"
YAML
fi
if ! docker inspect "$reg_name" >/dev/null 2>&1; then
  docker run -d --restart=always -p "127.0.0.1:${reg_port}:5000" --name "$reg_name" registry:2 >/dev/null
fi
if [ "$(docker inspect -f '{{json .NetworkSettings.Networks.kind}}' "$reg_name")" = null ]; then
  docker network connect kind "$reg_name"
fi
for n in $(kind get nodes --name "$cluster"); do
  docker exec "$n" mkdir -p "/etc/containerd/certs.d/${in_cluster}"
  printf 'server = "http://%s"\n[host."http://%s"]\n  capabilities = ["pull", "resolve"]\n' "$in_cluster" "$in_cluster" \
    | docker exec -i "$n" cp /dev/stdin "/etc/containerd/certs.d/${in_cluster}/hosts.toml"
done
curl -fsS "http://localhost:${reg_port}/v2/" >/dev/null || fail "the registry does not answer on localhost:${reg_port}"
node_name="$(kind get nodes --name "$cluster" | head -1)"
docker exec "$node_name" curl -fsS "http://${in_cluster}/v2/" >/dev/null || fail "node ${node_name} cannot reach ${in_cluster}"

step "4. apparate images"
docker build -q -f deploy/Dockerfile.webhook -t "docker.io/apparate/apparate:${version}" .
docker build -q -f deploy/Dockerfile.node -t "docker.io/apparate/apparate-node:${version}" .
kind load docker-image --name "$cluster" "docker.io/apparate/apparate:${version}" "docker.io/apparate/apparate-node:${version}"

step "5. an image and its -apparate variant"
docker pull -q nginx:1.27-alpine >/dev/null
docker tag nginx:1.27-alpine "localhost:${reg_port}/demo/web:1.0"
docker push -q "localhost:${reg_port}/demo/web:1.0" >/dev/null
set +e
node dist/cli.js convert "localhost:${reg_port}/demo/web:1.0" --plain-http
rc=$?
set -e
[ "$rc" -eq 0 ] || [ "$rc" -eq 10 ] || fail "apparate convert exited $rc"
curl -fsS -o /dev/null -H 'Accept: application/vnd.oci.image.index.v1+json, application/vnd.oci.image.manifest.v1+json' \
  "http://localhost:${reg_port}/v2/demo/web/manifests/1.0-apparate" || fail "the -apparate variant is not in the registry"

step "6. helm install, opt a node in, wait for the agent's label"
kubectl label node "$node_name" apparate.io/node=enabled --overwrite
"$helm" upgrade --install "$release" charts/apparate -n "$release_ns" --wait --timeout 10m \
  --set namespace.create=true \
  --set image.registry=docker.io --set image.pullPolicy=Never \
  --set image.tag="$version" --set nodeImage.tag="$version" \
  --set "acceleration.registries={${in_cluster}}" --set "registry.plainHttp={${in_cluster}}" \
  --set webhook.replicas=1
kubectl wait node "$node_name" --for=jsonpath='{.metadata.labels.cloud\.tencent\.com/apparate}'=true --timeout=300s \
  || fail "the node agent did not label ${node_name} cloud.tencent.com/apparate=true"
"$helm" test "$release" -n "$release_ns" --timeout 2m || fail "helm test failed"

step "7. a pod in a labelled namespace: swapped image, Running, lazily pulled"
kubectl create namespace "$app_ns" --dry-run=client -o yaml | kubectl apply -f -
kubectl label namespace "$app_ns" apparate.io/inject=enabled --overwrite
kubectl -n "$app_ns" delete pod web --ignore-not-found --wait
kubectl -n "$app_ns" run web --image="${in_cluster}/demo/web:1.0" --restart=Never
image="$(kubectl -n "$app_ns" get pod web -o jsonpath='{.spec.containers[0].image}')"
[ "$image" = "${in_cluster}/demo/web:1.0-apparate" ] || fail "the pod's image is ${image}, not the -apparate variant"
selector="$(kubectl -n "$app_ns" get pod web -o jsonpath='{.spec.nodeSelector.cloud\.tencent\.com/apparate}')"
[ "$selector" = true ] || fail "the pod has no nodeSelector cloud.tencent.com/apparate=true"
kubectl -n "$app_ns" wait pod web --for=condition=Ready --timeout=180s || fail "the pod did not become Ready"
phase="$(kubectl -n "$app_ns" get pod web -o jsonpath='{.status.phase}')"
[ "$phase" = Running ] || fail "the pod is ${phase}, not Running"
mounts="$(docker exec "$node_name" grep -c 'fuse.rawBridge' /proc/mounts || true)"
[ "${mounts:-0}" -gt 0 ] || fail "no stargz FUSE mount on ${node_name}: the image was not pulled lazily"
echo "e2e-kind: OK: ${image} Running on ${node_name}, ${mounts} lazily mounted layer(s)"
