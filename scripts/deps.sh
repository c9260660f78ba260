#!/usr/bin/env bash
# Installs everything tchsm's build, tests and demo need on a Debian 12 machine, and makes sure
# the local RabbitMQ broker answers. Safe to run again: it only installs what is missing.
set -euo pipefail

need_pkgs=()
have() { command -v "$1" >/dev/null 2>&1; }
want() { # want BINARY-OR-FILE PACKAGE
	if [[ "$1" == /* ]]; then [[ -e "$1" ]] || need_pkgs+=("$2"); else have "$1" || need_pkgs+=("$2"); fi
}
want protoc protobuf-compiler
want softhsm2-util softhsm2
want ods-enforcer opendnssec
want ods-hsmutil libhsm-bin
want ldns-verify-zone ldnsutils
want pkcs11-tool opensc
want unshare util-linux
want gcc gcc
want rabbitmqctl rabbitmq-server
want openssl openssl
want p11-kit p11-kit
want p11tool gnutls-bin
want knotd knot
want knotc knot
if ! dpkg -s opendnssec-enforcer-sqlite3 >/dev/null 2>&1; then need_pkgs+=(opendnssec-enforcer-sqlite3); fi

if ((${#need_pkgs[@]})); then
	mapfile -t need_pkgs < <(printf '%s\n' "${need_pkgs[@]}" | sort -u)
	echo "deps: installing ${need_pkgs[*]}" >&2
	export DEBIAN_FRONTEND=noninteractive
	if [[ $(id -u) -ne 0 ]]; then SUDO=sudo; else SUDO=; fi
	$SUDO apt-get update -qq
	$SUDO apt-get install -y -qq --no-install-recommends "${need_pkgs[@]}" >/dev/null
fi

if ! have go; then
	if [[ -x /usr/local/go/bin/go ]]; then export PATH=/usr/local/go/bin:$PATH; else
		echo "deps: Go 1.26 is required (https://go.dev/dl/); /usr/local/go/bin/go not found" >&2; exit 1
	fi
fi
go mod download

# The broker: tests and the demo need RabbitMQ on 127.0.0.1:5672 (guest/guest).
if ! rabbitmqctl -q status >/dev/null 2>&1; then
	echo "deps: starting rabbitmq-server" >&2
	rabbitmq-server -detached >/dev/null 2>&1 || true
	for _ in $(seq 1 60); do
		rabbitmqctl -q await_startup >/dev/null 2>&1 && break
		sleep 1
	done
	rabbitmqctl -q status >/dev/null 2>&1 || { echo "deps: RabbitMQ did not start" >&2; exit 1; }
fi
