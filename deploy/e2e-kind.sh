#!/usr/bin/env bash
# make e2e-kind: the demo's flow on a real cluster, for users who have Docker, kind and
# kubectl. It is not part of `make test` (CI machines have no Docker engine): the tests
# run the same parts for real without a cluster (see README, "Development").
#
# Steps: a kind cluster with a local registry (kind's documented pattern), the two
# apparate images built and loaded, an image and its -apparate variant pushed, helm
# install, a pod created, and its image and node selector printed.
set -euo pipefail
cd "$(dirname "$0")/.."
for t in docker kind kubectl; do command -v "$t" >/dev/null || { echo "e2e-kind needs $t" >&2; exit 1; }; done
helm=.tmp/bin/helm
[ -x "$helm" ] || bash test/support/install-helm.sh >/dev/null
cluster="${CLUSTER:-apparate-e2e}"
reg_name=kind-registry
reg_port=5001
version="$(node -p 'require("./package.json").version')"

if ! docker inspect "$reg_name" >/dev/null 2>&1; then
  docker run -d --restart=always -p "127.0.0.1:${reg_port}:5000" --network bridge --name "$reg_name" registry:2
fi
if ! kind get clusters | grep -qx "$cluster"; then
  cat <<YAML | kind create cluster --name "$cluster" --config=-
kind: Cluster
apiVersion: kind.x-k8s.io/v1alpha4
containerdConfigPatches:
  - |-
    [plugins."io.containerd.grpc.v1.cri".registry]
      config_path = "/etc/containerd/certs.d"
YAML
fi
for node in $(kind get nodes --name "$cluster"); do
  docker exec "$node" mkdir -p "/etc/containerd/certs.d/localhost:${reg_port}"
  printf '[host."http://%s:5000"]\n' "$reg_name" | docker exec -i "$node" cp /dev/stdin "/etc/containerd/certs.d/localhost:${reg_port}/hosts.toml"
done
docker network connect kind "$reg_name" 2>/dev/null || true

docker build -f deploy/Dockerfile.webhook -t "apparate/apparate:${version}" .
docker build -f deploy/Dockerfile.node -t "apparate/apparate-node:${version}" .
# kind stores these as docker.io/apparate/...; the chart pulls them from there (pullPolicy Never).
kind load docker-image --name "$cluster" "apparate/apparate:${version}" "apparate/apparate-node:${version}"

# An image and its -apparate (eStargz) variant, converted with upstream's ctr-remote.
docker pull nginx:1.27
docker tag nginx:1.27 "localhost:${reg_port}/demo/web:1.0"
docker push "localhost:${reg_port}/demo/web:1.0"
node=$(kind get nodes --name "$cluster" | head -1)
docker exec "$node" sh -c "command -v ctr-remote" >/dev/null 2>&1 || echo "note: the node image installs the snapshotter; ctr-remote is needed only to convert images (README, 'Producing -apparate images')"

"$helm" upgrade --install apparate charts/apparate -n apparate-system --create-namespace --wait \
  --set image.registry=docker.io --set image.repository=apparate/apparate --set image.tag="$version" \
  --set nodeImage.repository=apparate/apparate-node --set nodeImage.tag="$version" \
  --set image.pullPolicy=Never \
  --set "acceleration.registries={localhost:${reg_port}}" --set "registry.plainHttp={localhost:${reg_port}}"
kubectl label node "$node" apparate.io/node=enabled --overwrite
kubectl -n default run web --image="localhost:${reg_port}/demo/web:1.0" --restart=Never --dry-run=server -o yaml \
  | grep -E 'image:|nodeSelector|apparate' || true
echo "uninstall: $helm uninstall apparate -n apparate-system; kind delete cluster --name $cluster"
