#!/usr/bin/env bash
# Builds the static tchsm binary exactly as the container image does (Dockerfile runs this
# script; so does the test suite, through TestContainerBuildScript).
# Usage: scripts/build-binary.sh OUTDIR [VERSION]
set -euo pipefail
out=${1:?usage: build-binary.sh OUTDIR [VERSION]}
version=${2:-${VERSION:-dev}}
mkdir -p "$out"
CGO_ENABLED=0 go build -trimpath -ldflags "-s -w -X main.version=${version}" -o "$out/tchsm" ./cmd/tchsm
