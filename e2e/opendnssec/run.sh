#!/usr/bin/env bash
# Functions called only from traps look unreachable to shellcheck.
# shellcheck disable=SC2317
# OpenDNSSEC 2.1 end-to-end harness, parametrised by PKCS#11 module.
#
# Default mode: sign a generated zone with ods-enforcerd + ods-signerd against
# the given token and verify the result with ldns-verify-zone.
# --hsmutil-test: run `ods-hsmutil test` and judge its RSA part.
# --hsmspeed:     run `ods-hsmspeed` and print signatures per second.
#
# Everything lives in a private work dir. The script re-executes itself in a
# private mount namespace (unshare -m) where the work dir's etc/ and run/ are
# bind-mounted onto /etc/opendnssec and /run/opendnssec: ods-enforcer-db-setup
# reads only /etc/opendnssec/conf.xml, and ods-enforcerd notifies the signer
# with a hard-wired `/usr/sbin/ods-signer update` that talks to the default
# socket /run/opendnssec/engine.sock. Inside the namespace both resolve to this
# run's own files, so parallel runs do not see each other and nothing on the
# machine changes. See README.md.
set -euo pipefail

PROG=$(basename "$0")
SELF=$(readlink -f "$0")
HERE=$(dirname "$SELF")

die() { echo "$PROG: error: $*" >&2; exit 1; }
log() { echo "$PROG: $(date +%T) $*" >&2; }

usage() {
	cat <<EOF
usage: $PROG --module PATH --token-label L --pin P [options]

  --module PATH          PKCS#11 module (.so) to load (required)
  --token-label L        token label (required)
  --pin P                user PIN (required, or --pin-file)
  --pin-file F           read the user PIN from the first line of F (keeps it
                         off the command line, which every user can read)
  --repo NAME            repository name in conf.xml (default: E2E)
  --records N            data records in the generated zone (default: 1000)
  --zone NAME            zone name (default: example.test)
  --algorithm A          DNSSEC algorithm: 8 (RSASHA256, default) or 15 (ED25519;
                         key sizes are then 256)
  --ksk-bits B           KSK modulus size (default: 2048)
  --zsk-bits B           ZSK modulus size (default: 2048)
  --signer-threads T     <SignerThreads> of ods-signerd (default: 8)
  --validity V           the KASP's signature <Validity> (<Default> and <Denial>),
                         whole days as PnD (default: P14D)
  --timeout S            seconds to wait for keys + signed zone (default: 300)
  --listener-port P      port of ods-signerd's DNS listener on 127.0.0.1
                         (default: a random free port; 15354 is the daemon's
                         default and would collide between parallel runs)
  --workdir D            work dir (default: a new mktemp -d, removed at exit)
  --env K=V              extra environment for the OpenDNSSEC processes
                         (repeatable; e.g. TCHSM_CONFIG=/path, SOFTHSM2_CONF=/path)
  --keep                 keep the work dir (logs, configs, zones, db)
  --strict-shutdown      fail when a daemon does not stop cleanly (crash, hang,
                         non-zero exit); default: warn. ods-signerd 2.1.12
                         itself crashes now and then at exit (SIGSEGV in
                         xmlResetError) with SoftHSM2 too.
  --hsmutil-test         run 'ods-hsmutil test REPO' and judge its RSA part
  --hsmutil-min-bits B   RSA sizes below B may be rejected at key generation
                         (default: 1024; tchsm supports 1024..4096)
  --hsmspeed             run 'ods-hsmspeed' and print sig/s
  --speed-bits B         hsmspeed key size (default: 2048)
  --speed-threads T      hsmspeed threads (default: 4)
  --speed-iterations N   hsmspeed signatures per thread (default: 500)
  -h, --help             this help

Exit status 0 only on success (zone signed and verified / all RSA tests
passed / hsmspeed completed).
EOF
}

MODULE="" TOKEN_LABEL="" PIN="" REPO="E2E" RECORDS=1000 ZONE="example.test"
KSK_BITS=2048 ZSK_BITS=2048 SIGNER_THREADS=8 TIMEOUT=300 WORKDIR="" KEEP=0 PORT=0 VALIDITY=P14D
STRICT_STOP=0 MODE=sign MIN_BITS=1024 SPEED_BITS=2048 SPEED_THREADS=4 SPEED_ITER=500
INNER=0 ALG=8
EXTRA_ENV=()

need_arg() { [[ $# -ge 2 && -n $2 ]] || die "option $1 needs a value"; }
is_uint() { [[ $1 =~ ^[0-9]+$ ]]; }

while [[ $# -gt 0 ]]; do
	case $1 in
	--module) need_arg "$@"; MODULE=$2; shift 2 ;;
	--token-label) need_arg "$@"; TOKEN_LABEL=$2; shift 2 ;;
	--pin) need_arg "$@"; PIN=$2; shift 2 ;;
	--pin-file) need_arg "$@"; [[ -r $2 ]] || die "--pin-file $2: not readable"
		IFS= read -r PIN <"$2" || [[ -n $PIN ]] || die "--pin-file $2: empty"; shift 2 ;;
	--repo) need_arg "$@"; REPO=$2; shift 2 ;;
	--records) need_arg "$@"; RECORDS=$2; shift 2 ;;
	--zone) need_arg "$@"; ZONE=${2%.}; shift 2 ;;
	--algorithm) need_arg "$@"; ALG=$2; shift 2 ;;
	--ksk-bits) need_arg "$@"; KSK_BITS=$2; shift 2 ;;
	--zsk-bits) need_arg "$@"; ZSK_BITS=$2; shift 2 ;;
	--signer-threads) need_arg "$@"; SIGNER_THREADS=$2; shift 2 ;;
	--validity) need_arg "$@"; [[ $2 =~ ^P[1-9][0-9]*D$ ]] || die "--validity wants PnD (whole days), got '$2'"
		VALIDITY=$2; shift 2 ;;
	--timeout) need_arg "$@"; TIMEOUT=$2; shift 2 ;;
	--listener-port) need_arg "$@"; PORT=$2; shift 2 ;;
	--workdir) need_arg "$@"; WORKDIR=$2; shift 2 ;;
	--env) need_arg "$@"; [[ $2 == [A-Za-z_]*=* ]] || die "--env wants K=V, got '$2'"
		EXTRA_ENV+=("$2"); shift 2 ;;
	--keep) KEEP=1; shift ;;
	--strict-shutdown) STRICT_STOP=1; shift ;;
	--hsmutil-test) MODE=hsmutil; shift ;;
	--hsmutil-min-bits) need_arg "$@"; MIN_BITS=$2; shift 2 ;;
	--hsmspeed) MODE=hsmspeed; shift ;;
	--speed-bits) need_arg "$@"; SPEED_BITS=$2; shift 2 ;;
	--speed-threads) need_arg "$@"; SPEED_THREADS=$2; shift 2 ;;
	--speed-iterations) need_arg "$@"; SPEED_ITER=$2; shift 2 ;;
	--inner) INNER=1; shift ;; # internal: already inside the namespace
	-h | --help) usage; exit 0 ;;
	*) usage >&2; die "unknown option '$1'" ;;
	esac
done

[[ -n $MODULE ]] || die "--module is required"
[[ -n $TOKEN_LABEL ]] || die "--token-label is required"
# The outer part hands the PIN to the inner part in the environment.
if ((INNER == 1)); then PIN=${ODS_E2E_PIN:-}; unset ODS_E2E_PIN; fi
[[ -n $PIN ]] || die "--pin or --pin-file is required"
[[ -f $MODULE ]] || die "module $MODULE: no such file"
MODULE=$(readlink -f "$MODULE")
for v in PORT RECORDS KSK_BITS ZSK_BITS SIGNER_THREADS TIMEOUT MIN_BITS SPEED_BITS SPEED_THREADS SPEED_ITER; do
	is_uint "${!v}" || die "$v must be a non-negative integer, got '${!v}'"
done
((RECORDS >= 1)) || die "--records must be at least 1"
case $ALG in 8) ;; 15) KSK_BITS=256 ZSK_BITS=256 ;; *) die "--algorithm must be 8 or 15, got '$ALG'" ;; esac
((SIGNER_THREADS >= 1)) || die "--signer-threads must be at least 1"
[[ $REPO =~ ^[A-Za-z0-9_-]+$ ]] || die "--repo must match [A-Za-z0-9_-]+"
[[ $ZONE =~ ^[A-Za-z0-9.-]+$ ]] || die "--zone must be a plain DNS name"
# The label and PIN go into XML: refuse characters that would need escaping.
[[ $TOKEN_LABEL != *[\<\>\&\"\']* ]] || die "--token-label must not contain <>&\"'"
[[ $PIN != *[\<\>\&\"\']* ]] || die "--pin must not contain <>&\"'"

# ---------------------------------------------------------------- outer part
if ((INNER == 0)); then
	[[ $(id -u) -eq 0 ]] || die "must run as root (mount namespace, OpenDNSSEC daemons)"

	# Tools: install what a fresh Debian 12 machine lacks.
	declare -A PKG_OF=(
		[ods-enforcerd]=opendnssec [ods-signerd]=opendnssec [ods-enforcer]=opendnssec
		[ods-signer]=opendnssec [ods-enforcer-db-setup]=opendnssec
		[ods-hsmutil]=libhsm-bin [ods-hsmspeed]=libhsm-bin
		[ldns-verify-zone]=ldnsutils [unshare]=util-linux [awk]=gawk
	)
	missing=()
	for bin in "${!PKG_OF[@]}"; do
		command -v "$bin" >/dev/null 2>&1 || PATH=$PATH:/usr/sbin:/sbin command -v "$bin" >/dev/null 2>&1 ||
			missing+=("${PKG_OF[$bin]}")
	done
	# The sqlite enforcer back end is a separate package on Debian.
	if command -v dpkg-query >/dev/null 2>&1 &&
		! dpkg-query -W -f='${Status}' opendnssec-enforcer-sqlite3 2>/dev/null | grep -q 'ok installed'; then
		missing+=(opendnssec-enforcer-sqlite3)
	fi
	if ((${#missing[@]} > 0)); then
		mapfile -t missing < <(printf '%s\n' "${missing[@]}" | sort -u)
		log "installing missing packages: ${missing[*]}"
		export DEBIAN_FRONTEND=noninteractive
		apt-get install -y --no-install-recommends "${missing[@]}" >/dev/null ||
			{ apt-get update >/dev/null && apt-get install -y --no-install-recommends "${missing[@]}" >/dev/null; } ||
			die "apt-get install ${missing[*]} failed"
		# The package's own service must not start and take the default paths.
		systemctl stop opendnssec-enforcer opendnssec-signer >/dev/null 2>&1 || true
	fi
	[[ -d /etc/opendnssec ]] || die "/etc/opendnssec missing (opendnssec package broken?)"

	CREATED=0
	if [[ -z $WORKDIR ]]; then
		WORKDIR=$(mktemp -d "${TMPDIR:-/tmp}/ods-e2e.XXXXXX")
		CREATED=1
	else
		mkdir -p "$WORKDIR"
		[[ -z $(ls -A "$WORKDIR") ]] || die "work dir $WORKDIR is not empty"
	fi
	WORKDIR=$(readlink -f "$WORKDIR")
	chmod 700 "$WORKDIR" # conf.xml holds the PIN

	child=0
	outer_cleanup() {
		local rc=$?
		trap '' INT TERM # a second signal must not cut the cleanup short
		if ((child > 0)) && kill -0 "$child" 2>/dev/null; then
			kill -TERM "$child" 2>/dev/null || true
			wait "$child" 2>/dev/null || true
		fi
		if ((KEEP == 0 && CREATED == 1)); then
			rm -rf -- "$WORKDIR"
		elif ((KEEP == 1)); then
			log "work dir kept: $WORKDIR"
		fi
		exit "$rc"
	}
	trap outer_cleanup EXIT
	trap 'exit 130' INT
	trap 'exit 143' TERM

	args=(--inner --workdir "$WORKDIR" --module "$MODULE" --token-label "$TOKEN_LABEL"
		--repo "$REPO" --records "$RECORDS" --zone "$ZONE" --algorithm "$ALG"
		--ksk-bits "$KSK_BITS" --zsk-bits "$ZSK_BITS" --signer-threads "$SIGNER_THREADS" --validity "$VALIDITY"
		--timeout "$TIMEOUT" --listener-port "$PORT" --hsmutil-min-bits "$MIN_BITS" --speed-bits "$SPEED_BITS"
		--speed-threads "$SPEED_THREADS" --speed-iterations "$SPEED_ITER")
	for e in "${EXTRA_ENV[@]}"; do args+=(--env "$e"); done
	case $MODE in hsmutil) args+=(--hsmutil-test) ;; hsmspeed) args+=(--hsmspeed) ;; esac
	((STRICT_STOP == 0)) || args+=(--strict-shutdown)
	# Run (not exec) so that the EXIT trap above removes the work dir. The PIN
	# goes in the environment (readable by root only), not on a command line.
	ODS_E2E_PIN=$PIN unshare -m --propagation private -- bash "$SELF" "${args[@]}" &
	child=$!
	set +e
	wait "$child"
	rc=$?
	set -e
	child=0
	exit "$rc"
fi

# ---------------------------------------------------------------- inner part
# From here on we are inside the private mount namespace.
export PATH=$PATH:/usr/sbin:/sbin
WD=$WORKDIR
ETC=$WD/etc RUN=$WD/run LOGS=$WD/log
mkdir -p "$ETC" "$RUN" "$LOGS" "$WD/db" "$WD/enforcer" "$WD/signer" \
	"$WD/signconf" "$WD/unsigned" "$WD/signed"
CONF=$ETC/conf.xml KASP=$ETC/kasp.xml ZONELIST=$ETC/zonelist.xml
ENF_SOCK=$RUN/enforcer.sock SIG_SOCK=$RUN/engine.sock
ENF_PID=$RUN/enforcerd.pid
UNSIGNED=$WD/unsigned/$ZONE SIGNED=$WD/signed/$ZONE SIGNCONF=$WD/signconf/$ZONE.xml

# Relative paths a module writes (log files) land in the work dir.
cd "$WD"

# Extra environment for every OpenDNSSEC process (daemons and tools).
for e in "${EXTRA_ENV[@]}"; do export "${e?}"; done

# A port nobody listens on (TCP or UDP, v4 or v6) for the signer's listener.
port_busy() {
	local hex
	hex=$(printf '%04X' "$1")
	cat /proc/net/tcp /proc/net/tcp6 /proc/net/udp /proc/net/udp6 2>/dev/null |
		awk -v h="$hex" 'NR > 0 { split($2, a, ":"); if (toupper(a[2]) == h) found = 1 } END { exit !found }'
}
if ((PORT == 0)); then
	for ((try = 0; try < 100; try++)); do
		PORT=$((20000 + RANDOM % 40000))
		port_busy "$PORT" || break
	done
fi
((PORT > 0 && PORT < 65536)) || die "--listener-port out of range"

mkdir -p /run/opendnssec
mount --bind "$ETC" /etc/opendnssec
mount --bind "$RUN" /run/opendnssec

umask 077
cat >"$CONF" <<EOF
<?xml version="1.0" encoding="UTF-8"?>
<!-- Generated by e2e/opendnssec/run.sh; every path lies in $WD -->
<Configuration>
	<RepositoryList>
		<Repository name="$REPO">
			<Module>$MODULE</Module>
			<TokenLabel>$TOKEN_LABEL</TokenLabel>
			<PIN>$PIN</PIN>
			<SkipPublicKey/>
		</Repository>
	</RepositoryList>
	<Common>
		<Logging>
			<Verbosity>3</Verbosity>
		</Logging>
		<PolicyFile>$KASP</PolicyFile>
		<ZoneListFile>$ZONELIST</ZoneListFile>
	</Common>
	<Enforcer>
		<Datastore><SQLite>$WD/db/kasp.db</SQLite></Datastore>
		<AutomaticKeyGenerationPeriod>PT1H</AutomaticKeyGenerationPeriod>
		<PidFile>$ENF_PID</PidFile>
		<SocketFile>$ENF_SOCK</SocketFile>
		<WorkingDirectory>$WD/enforcer</WorkingDirectory>
		<WorkerThreads>2</WorkerThreads>
	</Enforcer>
	<!-- conf.rng allows no PidFile/SocketFile here: ods-signerd uses
	     /run/opendnssec/{signerd.pid,engine.sock}, which the mount
	     namespace maps to $RUN. -->
	<Signer>
		<!-- Without a Listener ods-signerd binds *:15354, which collides
		     with any other signer on the machine. -->
		<Listener>
			<Interface><Address>127.0.0.1</Address><Port>$PORT</Port></Interface>
		</Listener>
		<WorkingDirectory>$WD/signer</WorkingDirectory>
		<WorkerThreads>4</WorkerThreads>
		<SignerThreads>$SIGNER_THREADS</SignerThreads>
	</Signer>
</Configuration>
EOF

# ---------------------------------------------------------------- hsmutil test
if [[ $MODE == hsmutil ]]; then
	out=$LOGS/hsmutil-test.log
	log "ods-hsmutil -c $CONF test $REPO (output: $out)"
	set +e
	# Line-buffered so that libhsm's error lines (stderr) stay next to the
	# test they belong to; bounded by --timeout (4096-bit generation is slow
	# on a threshold back end).
	lb=()
	command -v stdbuf >/dev/null 2>&1 && lb=(stdbuf -oL -eL)
	timeout "$TIMEOUT" "${lb[@]}" ods-hsmutil -c "$CONF" test "$REPO" >"$out" 2>&1
	hrc=$?
	((hrc == 124)) && log "ods-hsmutil test timed out after ${TIMEOUT}s"
	set -e
	cat "$out"
	log "ods-hsmutil exited with $hrc (its exit status counts every failure, RSA or not)"
	# Judge the RSA part (rules in hsmutil_judge.awk).
	awk -v min="$MIN_BITS" -v prog="$PROG" -f "$HERE/hsmutil_judge.awk" "$out"
	exit $?
fi

# ---------------------------------------------------------------- hsmspeed
if [[ $MODE == hsmspeed ]]; then
	out=$LOGS/hsmspeed.log
	log "ods-hsmspeed -c $CONF -r $REPO -s $SPEED_BITS -t $SPEED_THREADS -i $SPEED_ITER"
	set +e
	timeout "$TIMEOUT" ods-hsmspeed -c "$CONF" -r "$REPO" -s "$SPEED_BITS" -t "$SPEED_THREADS" -i "$SPEED_ITER" >"$out" 2>&1
	hrc=$?
	set -e
	cat "$out"
	((hrc == 0)) || die "ods-hsmspeed exited with $hrc"
	line=$(grep -E '[0-9.]+ sig/s' "$out" | tail -n1) || die "ods-hsmspeed printed no sig/s line"
	sps=$(sed -E 's/.* ([0-9.]+) sig\/s.*/\1/' <<<"$line")
	echo "hsmspeed: bits=$SPEED_BITS threads=$SPEED_THREADS iterations=$SPEED_ITER sig_per_s=$sps"
	exit 0
fi

# ---------------------------------------------------------------- signing run
cat >"$KASP" <<EOF
<?xml version="1.0" encoding="UTF-8"?>
<KASP>
	<Policy name="e2e">
		<Description>tchsm e2e: sign at once, algorithm $ALG</Description>
		<Signatures>
			<Resign>PT2H</Resign>
			<Refresh>P3D</Refresh>
			<Validity>
				<Default>$VALIDITY</Default>
				<Denial>$VALIDITY</Denial>
			</Validity>
			<Jitter>PT1H</Jitter>
			<InceptionOffset>PT3600S</InceptionOffset>
			<MaxZoneTTL>PT300S</MaxZoneTTL>
		</Signatures>
		<Denial>
			<NSEC3>
				<Resalt>P100D</Resalt>
				<Hash>
					<Algorithm>1</Algorithm>
					<Iterations>0</Iterations>
					<Salt length="8"/>
				</Hash>
			</NSEC3>
		</Denial>
		<Keys>
			<TTL>PT300S</TTL>
			<RetireSafety>PT360S</RetireSafety>
			<PublishSafety>PT360S</PublishSafety>
			<Purge>P14D</Purge>
			<KSK>
				<Algorithm length="$KSK_BITS">$ALG</Algorithm>
				<Lifetime>P1Y</Lifetime>
				<Repository>$REPO</Repository>
			</KSK>
			<ZSK>
				<Algorithm length="$ZSK_BITS">$ALG</Algorithm>
				<Lifetime>P1Y</Lifetime>
				<Repository>$REPO</Repository>
			</ZSK>
		</Keys>
		<Zone>
			<PropagationDelay>PT300S</PropagationDelay>
			<SOA>
				<TTL>PT300S</TTL>
				<Minimum>PT300S</Minimum>
				<Serial>unixtime</Serial>
			</SOA>
		</Zone>
		<Parent>
			<PropagationDelay>PT300S</PropagationDelay>
			<DS>
				<TTL>PT300S</TTL>
			</DS>
			<SOA>
				<TTL>PT300S</TTL>
				<Minimum>PT300S</Minimum>
			</SOA>
		</Parent>
	</Policy>
</KASP>
EOF

cat >"$ZONELIST" <<EOF
<?xml version="1.0" encoding="UTF-8"?>
<ZoneList>
	<Zone name="$ZONE">
		<Policy>e2e</Policy>
		<SignerConfiguration>$SIGNCONF</SignerConfiguration>
		<Adapters>
			<Input><Adapter type="File">$UNSIGNED</Adapter></Input>
			<Output><Adapter type="File">$SIGNED</Adapter></Output>
		</Adapters>
	</Zone>
</ZoneList>
EOF

"$HERE/zonegen.sh" "$ZONE" "$RECORDS" >"$UNSIGNED"
UNSIGNED_RRS=$(grep -cvE '^\s*(;|\$|$)' "$UNSIGNED")
log "zone $ZONE: $UNSIGNED_RRS RRs in $UNSIGNED"

now_ms() { date +%s%3N; }
secs() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", (b - a) / 1000 }'; }

ENF_DPID=0 SIG_DPID=0
dump_logs() {
	local f
	((ENF_DPID == 0)) || alive "$ENF_DPID" || echo "$PROG: ods-enforcerd (pid $ENF_DPID) is not running" >&2
	((SIG_DPID == 0)) || alive "$SIG_DPID" || echo "$PROG: ods-signerd (pid $SIG_DPID) is not running" >&2
	for f in "$LOGS"/*.log; do
		[[ -s $f ]] || continue
		echo "===== $f (last 60 lines) =====" >&2
		tail -n 60 "$f" >&2
	done
}
# stop_daemon NAME PID SOCKET CTL-CMD...: ask politely (unless interrupted),
# then SIGTERM, then SIGKILL. A signer busy signing ignores both the stop
# command and SIGTERM until its current zone is done. On the normal path a
# daemon that needs a signal, crashes or exits non-zero is reported (a failure
# with --strict-shutdown): the HSM module must let OpenDNSSEC shut down
# cleanly (C_Finalize, exit).
STOP_PROBLEMS=()
stop_daemon() {
	local name=$1 pid=$2 sock=$3 forced="" st=0
	shift 3
	((pid > 0)) || return 0
	if kill -0 "$pid" 2>/dev/null && ((INTERRUPTED == 0)) && [[ -S $sock ]]; then
		timeout 10 "$@" >>"$LOGS/stop.log" 2>&1 || true
		wait_gone "$pid" 150
	fi
	if kill -0 "$pid" 2>/dev/null; then
		((INTERRUPTED)) || log "$name did not stop, sending SIGTERM"
		forced=SIGTERM
		kill -TERM "$pid" 2>/dev/null || true
		wait_gone "$pid" 30
	fi
	if kill -0 "$pid" 2>/dev/null; then
		log "$name still alive, SIGKILL"
		forced=SIGKILL
		kill -KILL "$pid" 2>/dev/null || true
	fi
	wait "$pid" 2>/dev/null || st=$?
	((INTERRUPTED == 0)) || return 0
	if [[ -n $forced ]]; then
		STOP_PROBLEMS+=("$name did not stop on '$*' within 15 s; needed $forced")
	elif ((st > 128)); then
		STOP_PROBLEMS+=("$name died from signal $((st - 128)) ($(kill -l $((st - 128)) 2>/dev/null || echo '?')) while stopping")
	elif ((st != 0)); then
		STOP_PROBLEMS+=("$name exited with status $st while stopping")
	fi
}
wait_gone() { # pid tenths-of-a-second
	local i
	for ((i = 0; i < $2; i++)); do
		kill -0 "$1" 2>/dev/null || return 0
		sleep 0.1
	done
}
inner_cleanup() {
	local rc=$? p
	trap - EXIT
	trap '' INT TERM # a second signal must not cut the cleanup short
	stop_daemon ods-signerd "$SIG_DPID" "$SIG_SOCK" ods-signer -s "$SIG_SOCK" stop
	stop_daemon ods-enforcerd "$ENF_DPID" "$ENF_SOCK" ods-enforcer -s "$ENF_SOCK" stop
	if ((${#STOP_PROBLEMS[@]} > 0)); then
		local what=WARN
		((STRICT_STOP == 0)) || what=FAIL
		for p in "${STOP_PROBLEMS[@]}"; do echo "$PROG: $what: unclean shutdown: $p" >&2; done
		for p in signerd enforcerd; do
			echo "===== $LOGS/$p.log (from shutdown, 40 lines) =====" >&2
			sed -n '/\] shutdown\|signer shutdown\|enforcer shutdown/,$p' "$LOGS/$p.log" | grep -v '^  unknown$' | head -n 40 >&2 || true
		done
		((STRICT_STOP == 0 || rc != 0)) || rc=1
	fi
	exit "$rc"
}
INTERRUPTED=0
trap inner_cleanup EXIT
trap 'INTERRUPTED=1; exit 130' INT
trap 'INTERRUPTED=1; exit 143' TERM

fail() { # message: print the daemons' logs and fail
	echo "$PROG: FAIL: $*" >&2
	dump_logs
	exit 1
}
alive() { kill -0 "$1" 2>/dev/null; }
wait_for() { # description deadline_ms command...: poll until command succeeds
	local what=$1 deadline=$2
	shift 2
	until "$@"; do
		alive "$ENF_DPID" || fail "ods-enforcerd died while waiting for $what"
		((SIG_DPID == 0)) || alive "$SIG_DPID" || fail "ods-signerd died while waiting for $what"
		(($(now_ms) < deadline)) || fail "timeout (${TIMEOUT}s) waiting for $what"
		sleep 0.2
	done
}

T0=$(now_ms)
DEADLINE=$((T0 + TIMEOUT * 1000))

log "ods-enforcer-db-setup (conf.xml bind-mounted on /etc/opendnssec)"
ods-enforcer-db-setup -f >"$LOGS/db-setup.log" 2>&1 || fail "ods-enforcer-db-setup failed"

log "starting ods-enforcerd"
ods-enforcerd -c "$CONF" -d >"$LOGS/enforcerd.log" 2>&1 &
ENF_DPID=$!
wait_for "enforcer socket" "$DEADLINE" test -S "$ENF_SOCK"

enf() { ods-enforcer -s "$ENF_SOCK" "$@" >>"$LOGS/enforcer-cli.log" 2>&1 || fail "ods-enforcer $* failed"; }
enf policy import

log "starting ods-signerd (SignerThreads=$SIGNER_THREADS)"
ods-signerd -c "$CONF" -d >"$LOGS/signerd.log" 2>&1 &
SIG_DPID=$!
wait_for "signer socket" "$DEADLINE" test -S "$SIG_SOCK"

T_ADD=$(now_ms)
enf zone add --zone "$ZONE" --policy e2e --input "$UNSIGNED" --output "$SIGNED" --signerconf "$SIGNCONF"

log "waiting (up to ${TIMEOUT}s) for keys and signer configuration"
wait_for "signer configuration $SIGNCONF (keys generated in the HSM)" "$DEADLINE" test -s "$SIGNCONF"
T_SIGNCONF=$(now_ms)
# The enforcer asks the signer to pick up the new signconf itself; asking
# again is harmless and covers a lost notification.
ods-signer -s "$SIG_SOCK" update "$ZONE" >>"$LOGS/signer-cli.log" 2>&1 || true

# ods-signerd logs "[STATS] ZONE ..." after the output adapter has written
# the whole signed zone (signer/src/signer/tools.c, tools_output), so the file
# is complete once that line shows up.
signed_ready() { [[ -s $SIGNED ]] && grep -qF "[STATS] $ZONE " "$LOGS/signerd.log"; }
log "waiting for the signed zone $SIGNED"
wait_for "signed zone $SIGNED" "$DEADLINE" signed_ready
T_SIGNED=$(now_ms)

log "ldns-verify-zone $SIGNED"
if ! ldns-verify-zone "$SIGNED" >"$LOGS/verify.log" 2>&1; then
	cat "$LOGS/verify.log" >&2
	fail "ldns-verify-zone rejected $SIGNED"
fi

RRSIGS=$(awk '$4 == "RRSIG"' "$SIGNED" | wc -l)
DNSKEYS=$(awk '$4 == "DNSKEY"' "$SIGNED" | wc -l)
KSKS=$(awk '$4 == "DNSKEY" && $5 == 257' "$SIGNED" | wc -l)
ZSKS=$(awk '$4 == "DNSKEY" && $5 == 256' "$SIGNED" | wc -l)
NSEC3S=$(awk '$4 == "NSEC3"' "$SIGNED" | wc -l)
ALGS=$(awk '$4 == "RRSIG" { print $6 }' "$SIGNED" | sort -u | tr '\n' ' ')
SIGNED_RRS=$(grep -cvE '^\s*(;|$)' "$SIGNED")
((DNSKEYS >= 2 && KSKS >= 1 && ZSKS >= 1)) || fail "expected a KSK and a ZSK in the signed zone, got $KSKS KSK, $ZSKS ZSK"
[[ $ALGS == "$ALG " ]] || fail "expected only algorithm $ALG RRSIGs, got: $ALGS"
# Every non-RRSIG RRset needs a signature; NSEC3 makes at least one per name.
((RRSIGS >= NSEC3S)) || fail "too few RRSIGs ($RRSIGS) for $NSEC3S NSEC3 records"

# The keys must live in the HSM: list them through libhsm.
ods-hsmutil -c "$CONF" list "$REPO" >"$LOGS/hsmutil-list.log" 2>&1 || fail "ods-hsmutil list $REPO failed"
HSM_KEYS=$(grep -cE "^${REPO}[[:space:]]" "$LOGS/hsmutil-list.log" || true)
((HSM_KEYS >= 2)) || fail "ods-hsmutil list $REPO shows $HSM_KEYS keys, expected at least 2"

STATS=$(grep -hF "[STATS] $ZONE " "$LOGS/signerd.log" | tail -n1 | sed 's/.*\[STATS\]/[STATS]/' || true)
cat <<EOF
verified: ldns-verify-zone accepted $SIGNED
zone:            $ZONE ($UNSIGNED_RRS RRs unsigned, $SIGNED_RRS RRs signed)
module:          $MODULE (token '$TOKEN_LABEL', repository $REPO)
keys:            algorithm $ALG, KSK $KSK_BITS bits, ZSK $ZSK_BITS bits; DNSKEY=$DNSKEYS (KSK=$KSKS ZSK=$ZSKS); keys in HSM=$HSM_KEYS
signatures:      RRSIG=$RRSIGS NSEC3=$NSEC3S
signer threads:  $SIGNER_THREADS
time keys+signconf: $(secs "$T_ADD" "$T_SIGNCONF") s (zone add -> signconf written)
time to sign:       $(secs "$T_SIGNCONF" "$T_SIGNED") s (signconf -> signed zone)
time total:         $(secs "$T0" "$T_SIGNED") s (db setup -> signed zone)
signer stats:    ${STATS:-none logged}
EOF
exit 0
