#!/usr/bin/env bash
# Builds the node's prefetch recorder (src/nodeagent/recorder/main.go, standard library only)
# for the tests, as deploy/Dockerfile.node builds it for the node image.
set -euo pipefail
exec "$(dirname "$0")/build-go-tool.sh" .tmp/bin/apparate-prefetch-recorder src/nodeagent/recorder/main.go
