#!/usr/bin/env bash
# Builds a test-only Go program (OUT from SRC) with Debian's Go and Debian's packaged
# stargz-snapshotter library, GOPATH mode, offline; installs them with apt when missing.
# Used by build-snapshotter.sh and build-convert-oracle.sh.
set -euo pipefail
cd "$(dirname "$0")/../.."
out=$1
src=$2
if [ -x "$out" ] && [ "$out" -nt "$src" ]; then exit 0; fi
if ! command -v go >/dev/null || [ ! -d /usr/share/gocode/src/github.com/containerd/stargz-snapshotter ]; then
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO=sudo
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends golang-go golang-github-containerd-stargz-snapshotter-dev >/dev/null
fi
mkdir -p "$(dirname "$out")" .tmp/gocache
GO111MODULE=off GOPATH=/usr/share/gocode GOCACHE="$PWD/.tmp/gocache" go build -o "$out" "$src"
echo "built $out"
