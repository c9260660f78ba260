#!/usr/bin/env bash
# Builds the static tchsm binary exactly as the container image does (Dockerfile runs this
# script; so does the test suite, through TestEntrypoint).
# Usage: scripts/build-binary.sh OUTDIR [VERSION]
#
# cgo is on: the node computes its signature shares with OpenSSL's constant-time exponentiation
# (internal/modexp/openssl, issue 17), linked statically from Debian's libcrypto.a (libssl-dev)
# together with glibc, so the binary still runs on distroless/static. netgo and osusergo keep
# the resolver and user lookups in Go (glibc's would need its shared NSS modules at run time).
# The linker warns that libcrypto.a's DSO loader (dlopen) and BIO address lookups
# (getaddrinfo, gethostbyname) need glibc's shared libraries at run time: the node calls
# neither (it uses libcrypto's BIGNUM functions only, and loads no configuration or provider).
set -euo pipefail
out=${1:?usage: build-binary.sh OUTDIR [VERSION]}
version=${2:-${VERSION:-dev}}
mkdir -p "$out"
CGO_ENABLED=1 go build -trimpath -tags netgo,osusergo \
	-ldflags "-s -w -X main.version=${version} -linkmode external -extldflags -static" \
	-o "$out/tchsm" ./cmd/tchsm
# Refuse a binary that is not static or does not compute shares with OpenSSL.
if readelf -l "$out/tchsm" | grep -q 'INTERP'; then
	echo "build-binary.sh: $out/tchsm is dynamically linked" >&2
	exit 1
fi
if ! "$out/tchsm" version | grep -q '^share exponentiation: openssl'; then
	echo "build-binary.sh: $out/tchsm does not link OpenSSL's exponentiation:" >&2
	"$out/tchsm" version >&2
	exit 1
fi
