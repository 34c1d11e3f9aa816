#!/usr/bin/env bash
# make manifests: plain Kubernetes manifests rendered from the chart with its default
# values, for clusters that do not use helm. The cleanup hooks and `helm test` pods are
# helm-only and left out; uninstall with `kubectl delete -f` after running
# `apparate node-agent --uninstall` on each node (see README, "Uninstall").
set -euo pipefail
cd "$(dirname "$0")/.."
helm=.tmp/bin/helm
[ -x "$helm" ] || bash test/support/install-helm.sh >/dev/null
out="${OUT:-deploy/manifests/apparate.yaml}"
mkdir -p "$(dirname "$out")"
namespace="${NAMESPACE:-apparate-system}"
{
  echo "# Rendered by 'make manifests' from charts/apparate (default values, namespace ${namespace})."
  echo "# Do not edit: change the chart or its values and render again."
  echo "apiVersion: v1"
  echo "kind: Namespace"
  echo "metadata:"
  echo "  name: ${namespace}"
  "$helm" template apparate charts/apparate --namespace "$namespace" --include-crds --skip-tests "$@" \
    | awk 'BEGIN{RS="\n---\n"; ORS=""} { sub(/^---\n/, "") } NF && !/helm.sh\/hook/ { print "---\n" $0 "\n" }'
} > "$out.tmp"
mv "$out.tmp" "$out"
echo "wrote $out ($(grep -c '^kind:' "$out") objects)"
