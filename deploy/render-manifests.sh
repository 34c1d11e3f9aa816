#!/usr/bin/env bash
# make manifests: plain Kubernetes manifests rendered from the chart with its default
# values, for clusters that do not use helm. The cleanup hooks and `helm test` pods are
# helm-only and left out; uninstall with `kubectl delete -f` after running
# `apparate node-agent --uninstall` on each node (see README, "Uninstall").
# Rendered for the oldest supported Kubernetes (KUBE_VERSION, default 1.25.0), so features
# gated on 1.30 (preStop sleep, the node agent's own-node policy) are left out; render with
# KUBE_VERSION=1.31.0 for a newer cluster.
set -euo pipefail
cd "$(dirname "$0")/.."
helm=.tmp/bin/helm
[ -x "$helm" ] || bash test/support/install-helm.sh >/dev/null
out="${OUT:-deploy/manifests/apparate.yaml}"
mkdir -p "$(dirname "$out")"
namespace="${NAMESPACE:-apparate-system}"
kube_version="${KUBE_VERSION:-1.25.0}"
{
  echo "# Rendered by 'make manifests' from charts/apparate (default values, namespace ${namespace}, Kubernetes ${kube_version})."
  echo "# Do not edit: change the chart or its values and render again."
  echo "apiVersion: v1"
  echo "kind: Namespace"
  echo "metadata:"
  echo "  name: ${namespace}"
  echo "  labels:"
  echo "    # the node agent is privileged: baseline or restricted enforcement would reject it"
  echo "    pod-security.kubernetes.io/enforce: privileged"
  "$helm" template apparate charts/apparate --namespace "$namespace" --kube-version "$kube_version" --include-crds --skip-tests "$@" \
    | awk 'BEGIN{RS="\n---\n"; ORS=""} { sub(/^---\n/, "") } NF && !/helm.sh\/hook/ { print "---\n" $0 "\n" }'
} > "$out.tmp"
mv "$out.tmp" "$out"
echo "wrote $out ($(grep -c '^kind:' "$out") objects)"
