#!/usr/bin/env bash
# Builds test/apiserver/driver (a Go program on the real k8s.io/apiserver mutating webhook
# admission plugin) into .tmp/bin/admission-driver. Go 1.26 and the k8s.io 0.36 sources come
# from Debian unstable's packages, unpacked into a private root by fetch-debs.sh (never over
# the system's packages); the build is GOPATH mode and offline, as Debian builds Go code.
# A no-op when the binary is newer than the driver's sources. Cold: ~4 min, 1.3 GB, 2 cores.
set -euo pipefail
cd "$(dirname "$0")/../.."
out=.tmp/bin/admission-driver
src=test/apiserver/driver
newest=$(find "$src" test/support/build-apiserver-driver.sh -type f -newer "$out" 2>/dev/null | head -n1 || true)
if [ -x "$out" ] && [ -z "$newest" ]; then exit 0; fi

root="$PWD/.tmp/debs/apiserver"
# Go 1.26 (k8s.io 0.36 declares go 1.26.0; 1.24 fails) and the packages the plugin's import
# graph needs (mapped from `go list -deps`; ../shared/research/apiserver-admission.md).
pkgs=(golang-1.26-go golang-1.26-src)
for p in api apimachinery apiserver client-go component-base klog kube-openapi utils \
  component-helpers sigs-apiserver-network-proxy sigs-json sigs-randfill sigs-structured-merge-diff-v6 sigs-yaml; do
  pkgs+=("golang-k8s-$p-dev")
done
pkgs+=(golang-cel-cel-go-dev golang-cel-expr-dev golang-github-antlr4-go-antlr-dev)
for p in beorn7-perks blang-semver cenkalti-backoff-v5 cespare-xxhash-v2 davecgh-go-spew \
  emicklei-go-restful evanphx-json-patch felixge-httpsnoop fsnotify-fsnotify fxamacker-cbor \
  go-logr-logr go-logr-stdr go-openapi-jsonpointer go-openapi-jsonreference go-openapi-swag \
  golang-protobuf-1-5 google-gnostic-models google-uuid grpc-ecosystem-grpc-gateway \
  json-iterator-go modern-go-concurrent modern-go-reflect2 munnerz-goautoneg pkg-errors \
  pmezard-go-difflib prometheus-client-golang prometheus-client-model prometheus-common \
  prometheus-procfs spf13-cobra spf13-pflag x448-float16; do
  pkgs+=("golang-github-$p-dev")
done
for p in exp net oauth2 sync sys term text time; do pkgs+=("golang-golang-x-$p-dev"); done
for p in genproto grpc protobuf; do pkgs+=("golang-google-$p-dev"); done
for p in inf.v0 yaml.v2 yaml.v3; do pkgs+=("golang-gopkg-$p-dev"); done
for p in contrib otel proto; do pkgs+=("golang-opentelemetry-$p-dev"); done
bash test/support/fetch-debs.sh unstable "$root" "${pkgs[@]}"

goroot="$root/usr/lib/go-1.26"
# GOPATH mode: the driver is a package under its own GOPATH, the libraries under Debian's.
gopath="$PWD/.tmp/apiserver-gopath"
mkdir -p "$gopath/src/apparate.test" .tmp/gocache "$(dirname "$out")"
ln -sfn "$PWD/$src" "$gopath/src/apparate.test/admission-driver"
env -u GOFLAGS GO111MODULE=off GOPATH="$gopath:$root/usr/share/gocode" GOROOT="$goroot" \
  GOPROXY=off GOTOOLCHAIN=local CGO_ENABLED=0 GOCACHE="$PWD/.tmp/gocache" \
  "$goroot/bin/go" build -trimpath -ldflags="-s -w" -o "$out" apparate.test/admission-driver
echo "built $out"
