#!/usr/bin/env bash
# Builds oracle 1 of the converter tests (test/convert/oracle/main.go): the snapshotter's
# own estargz library verifies every converted layer.
set -euo pipefail
exec "$(dirname "$0")/build-go-tool.sh" .tmp/bin/estargz-oracle test/convert/oracle/main.go
