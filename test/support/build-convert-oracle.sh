#!/usr/bin/env bash
# Builds oracle 1 of the converter tests (test/convert/oracle/main.go) with Debian's Go
# and Debian's packaged stargz-snapshotter estargz library, GOPATH mode, offline.
set -euo pipefail
cd "$(dirname "$0")/../.."
out=.tmp/bin/estargz-oracle
src=test/convert/oracle/main.go
if [ -x "$out" ] && [ "$out" -nt "$src" ]; then exit 0; fi
if ! command -v go >/dev/null || [ ! -d /usr/share/gocode/src/github.com/containerd/stargz-snapshotter ]; then
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO=sudo
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends golang-go golang-github-containerd-stargz-snapshotter-dev >/dev/null
fi
mkdir -p .tmp/bin .tmp/gocache
GO111MODULE=off GOPATH=/usr/share/gocode GOCACHE="$PWD/.tmp/gocache" go build -o "$out" "$src"
echo "built $out"
