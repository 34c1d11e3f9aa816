#!/usr/bin/env bash
# Builds the test-only lazy-loading snapshotter (test/nodeagent/snapshotter/main.go).
set -euo pipefail
exec "$(dirname "$0")/build-go-tool.sh" .tmp/bin/apparate-test-snapshotter test/nodeagent/snapshotter/main.go
