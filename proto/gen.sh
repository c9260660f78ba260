#!/bin/sh
# Regenerates tchsm.pb.go from tchsm.proto with protoc and the protoc-gen-go version pinned in
# go.mod (the `tool` directive). Usage: proto/gen.sh [OUTDIR]   (default: the proto directory).
# Needs protoc on PATH (Debian: protobuf-compiler; CI uses 3.21.12) and the go command.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
out=${1:-$here}
out=$(mkdir -p "$out" && cd "$out" && pwd)
command -v protoc >/dev/null 2>&1 || { echo "proto/gen.sh: protoc not found (apt-get install protobuf-compiler)" >&2; exit 1; }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
# Build the plugin from go.mod's pinned version; protoc looks it up by --plugin.
(cd "$here" && go build -o "$tmp/protoc-gen-go" google.golang.org/protobuf/cmd/protoc-gen-go)
cd "$here"
protoc --plugin=protoc-gen-go="$tmp/protoc-gen-go" -I . \
	--go_out="$out" --go_opt=paths=source_relative tchsm.proto
