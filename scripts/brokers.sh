#!/usr/bin/env bash
# A local RabbitMQ cluster of N broker nodes beside the machine's default broker, for demos and
# tests (`tchsm dev up -brokers 3` and TestBrokerNodeFailover call it). Debian's
# rabbitmq-server, nodes fully separate from the default one: own node names, ports, data, logs
# and Erlang cookie (a private HOME), epmd on 127.0.0.1 only, Erlang's scheduler busy-waiting
# off so idle brokers leave the shared cores alone.
#
#   brokers.sh up DIR N BASEPORT   start N nodes (AMQP on BASEPORT..BASEPORT+N-1), clustered;
#                                  prints the AMQP URLs, comma-separated, on stdout. On a DIR
#                                  that holds a cluster already, starts the nodes that are not
#                                  running (N and BASEPORT are then those of DIR/env)
#   brokers.sh down DIR            stop every node of DIR (graceful, then SIGKILL)
#   brokers.sh stop DIR I          stop node I (1-based) gracefully (rabbitmqctl stop)
#   brokers.sh kill DIR I          kill node I with SIGKILL, as a crash would
#   brokers.sh start DIR I         start node I again and wait until it runs (it rejoins)
#   brokers.sh ctl DIR I ARGS...   rabbitmqctl -n NODE ARGS (e.g. list_queues)
#   brokers.sh urls DIR            the AMQP URLs of DIR's nodes, comma-separated
#
# Node I is named tchsm<BASEPORT>-<I>@localhost and listens on 127.0.0.1:BASEPORT+I-1 (AMQP)
# and BASEPORT+I-1+20000 (Erlang distribution); DIR/env records BASEPORT and N. Start-up takes
# 10-40 s per node on 2 cores. The /usr/sbin wrappers are not used: they switch user and use
# the default node's cookie. Nothing here touches the default broker (rabbit@<host>, 5672).
set -euo pipefail

RMQ=/usr/lib/rabbitmq/bin
cmd=${1:-}
dir=${2:-}
[[ -n $cmd && -n $dir ]] || { sed -n '2,22p' "$0" >&2; exit 2; }
mkdir -p "$dir"
dir=$(cd "$dir" && pwd)

# node_env I: the environment of node I (exported into the current shell).
node_env() {
	local i=$1 port=$((BASEPORT + $1 - 1)) b=$dir/node$1
	export HOME=$dir/home
	export RABBITMQ_NODENAME=tchsm$BASEPORT-$i@localhost RABBITMQ_NODE_IP_ADDRESS=127.0.0.1
	export RABBITMQ_NODE_PORT=$port RABBITMQ_DIST_PORT=$((port + 20000))
	export RABBITMQ_CONF_ENV_FILE=$b/rabbitmq-env.conf RABBITMQ_CONFIG_FILE=$b/rabbitmq.conf
	export RABBITMQ_ADVANCED_CONFIG_FILE=$b/advanced.config
	export RABBITMQ_MNESIA_BASE=$b/mnesia RABBITMQ_LOG_BASE=$b/log RABBITMQ_PID_FILE=$b/pid
	export RABBITMQ_ENABLED_PLUGINS_FILE=$b/enabled_plugins ERL_EPMD_ADDRESS=127.0.0.1
	# Busy-waiting off; distribution on loopback only.
	export RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS="+sbwt none +sbwtdcpu none +sbwtdio none -kernel inet_dist_use_interface {127,0,0,1}"
	NODE=$RABBITMQ_NODENAME B=$b
}

load_env() {
	[[ -f $dir/env ]] || { echo "brokers.sh: $dir has no cluster (run up first)" >&2; exit 1; }
	# shellcheck disable=SC1091
	. "$dir/env"
}

ctl() { # ctl I ARGS...
	(node_env "$1"; shift; "$RMQ/rabbitmqctl" -q -n "$NODE" "$@")
}

start_node() { # start_node I: launch in the background, detached from the caller's session
	(
		node_env "$1"
		mkdir -p "$B/mnesia" "$B/log"
		# max_message_size: as in the rabbitmq.conf fragment of tchsm init (4 MiB, not 128).
		printf 'listeners.tcp.local = 127.0.0.1:%s\nloopback_users = none\nmax_message_size = 4194304\n' "$RABBITMQ_NODE_PORT" >"$B/rabbitmq.conf"
		printf 'ERL_EPMD_ADDRESS=127.0.0.1\n' >"$B/rabbitmq-env.conf"
		[[ -f $B/enabled_plugins ]] || echo '[].' >"$B/enabled_plugins"
		[[ -f $B/advanced.config ]] || echo '[].' >"$B/advanced.config"
		cd "$B"
		setsid "$RMQ/rabbitmq-server" >>"$B/stdout.log" 2>&1 </dev/null &
		echo $! >"$B/launcher.pid"
	)
}

await_node() { # await_node I: until the node runs rabbit (or 120 s)
	local i=$1
	for _ in $(seq 240); do
		if ctl "$i" await_startup --timeout 5 >/dev/null 2>&1; then return 0; fi
		sleep 0.5
	done
	echo "brokers.sh: node $i did not start; see $dir/node$i/log and stdout.log" >&2
	return 1
}

node_pid() { cat "$dir/node$1/pid" 2>/dev/null || true; }

urls() {
	local out=() i
	for i in $(seq "$N"); do out+=("amqp://guest:guest@127.0.0.1:$((BASEPORT + i - 1))/"); done
	(IFS=,; echo "${out[*]}")
}

case $cmd in
up)
	if [[ -f $dir/env ]]; then
		load_env
		for i in $(seq "$N"); do
			if ! ctl "$i" await_startup --timeout 1 >/dev/null 2>&1; then start_node "$i"; fi
		done
		for i in $(seq "$N"); do await_node "$i"; done
		urls
		exit 0
	fi
	N=${3:?N}
	BASEPORT=${4:?BASEPORT}
	printf 'BASEPORT=%s\nN=%s\n' "$BASEPORT" "$N" >"$dir/env"
	mkdir -p "$dir/home"
	# One cookie for the cluster's nodes and for rabbitmqctl, private to DIR.
	head -c 15 /dev/urandom | od -An -tx1 | tr -d ' \n' | tr a-f A-Z >"$dir/home/.erlang.cookie"
	chmod 400 "$dir/home/.erlang.cookie"
	for i in $(seq "$N"); do start_node "$i"; done
	await_node 1
	for i in $(seq 2 "$N"); do
		(
			await_node "$i"
			{
				ctl "$i" stop_app
				ctl "$i" join_cluster "tchsm$BASEPORT-1@localhost"
				ctl "$i" start_app
			} >>"$dir/node$i/join.log" 2>&1 || { cat "$dir/node$i/join.log" >&2; exit 1; }
		) &
	done
	for j in $(jobs -p); do wait "$j" || { echo "brokers.sh: a node did not join the cluster" >&2; exit 1; }; done
	for i in $(seq "$N"); do await_node "$i"; done
	urls
	;;
down)
	load_env
	for i in $(seq "$N"); do
		(ctl "$i" stop >/dev/null 2>&1 || true) &
	done
	wait
	for i in $(seq "$N"); do
		p=$(node_pid "$i")
		if [[ -n $p ]] && kill -0 "$p" 2>/dev/null; then kill -9 "$p" 2>/dev/null || true; fi
	done
	;;
stop)
	load_env
	ctl "${3:?I}" stop
	;;
kill)
	load_env
	p=$(node_pid "${3:?I}")
	[[ -n $p ]] || { echo "brokers.sh: node $3 has no pid file" >&2; exit 1; }
	kill -9 "$p"
	while kill -0 "$p" 2>/dev/null; do sleep 0.05; done
	;;
start)
	load_env
	start_node "${3:?I}"
	await_node "$3"
	;;
ctl)
	load_env
	i=${3:?I}
	shift 3
	ctl "$i" "$@"
	;;
urls)
	load_env
	urls
	;;
*)
	sed -n '2,22p' "$0" >&2
	exit 2
	;;
esac
