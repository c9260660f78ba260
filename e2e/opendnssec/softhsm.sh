#!/usr/bin/env bash
# cleanup is called from the EXIT trap only.
# shellcheck disable=SC2317
# softhsm.sh [run.sh options]: run the OpenDNSSEC harness against a private,
# throw-away SoftHSM2 token. Extra options go to run.sh (e.g. --records 5000,
# --hsmutil-test, --hsmspeed, --keep).
set -euo pipefail

HERE=$(dirname "$(readlink -f "$0")")
PROG=$(basename "$0")
die() { echo "$PROG: error: $*" >&2; exit 1; }

[[ $(id -u) -eq 0 ]] || die "must run as root"
if ! command -v softhsm2-util >/dev/null 2>&1; then
	echo "$PROG: installing softhsm2" >&2
	export DEBIAN_FRONTEND=noninteractive
	apt-get install -y --no-install-recommends softhsm2 >/dev/null ||
		{ apt-get update >/dev/null && apt-get install -y --no-install-recommends softhsm2 >/dev/null; } ||
		die "apt-get install softhsm2 failed"
fi

MODULE=${SOFTHSM2_MODULE:-}
if [[ -z $MODULE ]]; then
	for m in /usr/lib/softhsm/libsofthsm2.so /usr/lib/*/softhsm/libsofthsm2.so; do
		[[ -f $m ]] && { MODULE=$m; break; }
	done
fi
if [[ -z $MODULE ]] && command -v dpkg >/dev/null 2>&1; then
	MODULE=$(dpkg -L softhsm2 softhsm2-common 2>/dev/null | grep -m1 '/libsofthsm2\.so$' || true)
fi
[[ -n $MODULE && -f $MODULE ]] || die "libsofthsm2.so not found (set SOFTHSM2_MODULE)"

TOKDIR=$(mktemp -d "${TMPDIR:-/tmp}/softhsm-e2e.XXXXXX")
cleanup() { rm -rf -- "$TOKDIR"; }
trap cleanup EXIT
chmod 700 "$TOKDIR"
mkdir "$TOKDIR/tokens"
cat >"$TOKDIR/softhsm2.conf" <<CONF
directories.tokendir = $TOKDIR/tokens
objectstore.backend = file
log.level = ERROR
slots.removable = false
CONF
export SOFTHSM2_CONF=$TOKDIR/softhsm2.conf

LABEL=tchsm-e2e
# A throw-away token that lives only for this run; the PINs are random anyway.
PIN=$(od -An -N8 -tx1 /dev/urandom | tr -d ' \n')
SOPIN=$(od -An -N8 -tx1 /dev/urandom | tr -d ' \n')
softhsm2-util --init-token --free --label "$LABEL" --pin "$PIN" --so-pin "$SOPIN" >"$TOKDIR/init.log" 2>&1 ||
	{ cat "$TOKDIR/init.log" >&2; die "softhsm2-util --init-token failed"; }

# In the background so that a signal reaches run.sh and the token outlives
# its daemons: the EXIT trap removes the token only after run.sh is done.
printf '%s\n' "$PIN" >"$TOKDIR/pin"
"$HERE/run.sh" --module "$MODULE" --token-label "$LABEL" --pin-file "$TOKDIR/pin" \
	--env "SOFTHSM2_CONF=$SOFTHSM2_CONF" "$@" &
child=$!
trap 'kill -TERM "$child" 2>/dev/null || true' INT TERM
set +e
wait "$child"
rc=$?
while kill -0 "$child" 2>/dev/null; do # wait was interrupted by a signal
	wait "$child"
	rc=$?
done
exit "$rc"
