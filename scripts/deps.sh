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
want /usr/include/openssl/bn.h libssl-dev # libcrypto.a for the node's static build
want rabbitmqctl rabbitmq-server
want openssl openssl
want p11-kit p11-kit
want p11tool gnutls-bin
want knotd knot
want knotc knot
want pdns_server pdns-server
want pdnsutil pdns-server
want sqlite3 sqlite3
want /usr/lib/x86_64-linux-gnu/pdns/libgsqlite3backend.so pdns-backend-sqlite3
if ! dpkg -s opendnssec-enforcer-sqlite3 >/dev/null 2>&1; then need_pkgs+=(opendnssec-enforcer-sqlite3); fi

# BIND 9.20 and OpenSSL's pkcs11-provider come from Debian's bookworm-backports (Debian 12's own
# BIND 9.18 has no PKCS#11 path). The pin takes from backports the bind9 family, which must move
# together (dig and host become 9.20 too), and pkcs11-provider: nothing else.
backports_src=/etc/apt/sources.list.d/tchsm-backports.sources
backports_pin=/etc/apt/preferences.d/tchsm-backports
bind_ok() { named -v 2>/dev/null | grep -Eq '^BIND 9\.(2[0-9]|[3-9][0-9])\.' && [[ -e /usr/lib/x86_64-linux-gnu/ossl-modules/pkcs11.so || -e /usr/lib/$(uname -m)-linux-gnu/ossl-modules/pkcs11.so ]]; }
need_backports=
if ! bind_ok && grep -q bookworm /etc/os-release 2>/dev/null; then need_backports=1; fi

if ((${#need_pkgs[@]})) || [[ -n $need_backports ]]; then
	if ((${#need_pkgs[@]})); then mapfile -t need_pkgs < <(printf '%s\n' "${need_pkgs[@]}" | sort -u); fi
	export DEBIAN_FRONTEND=noninteractive
	if [[ $(id -u) -ne 0 ]]; then SUDO=sudo; else SUDO=; fi
	if [[ -n $need_backports ]]; then
		echo "deps: enabling bookworm-backports for bind9 (9.20) and pkcs11-provider" >&2
		$SUDO tee "$backports_src" >/dev/null <<-EOF
			Types: deb
			URIs: http://deb.debian.org/debian
			Suites: bookworm-backports
			Components: main
			Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
		EOF
		$SUDO tee "$backports_pin" >/dev/null <<-EOF
			Package: *
			Pin: release n=bookworm-backports
			Pin-Priority: 100

			Package: bind9 bind9-utils bind9-libs bind9-dnsutils bind9-host pkcs11-provider
			Pin: release n=bookworm-backports
			Pin-Priority: 990
		EOF
		need_pkgs+=(bind9 bind9-utils bind9-dnsutils pkcs11-provider)
	fi
	echo "deps: installing ${need_pkgs[*]}" >&2
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
