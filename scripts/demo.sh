#!/usr/bin/env bash
# The main job: start a local 3-of-5 tchsm cluster (five node processes and a dealer against the
# local RabbitMQ), let OpenDNSSEC 2.1 generate its KSK and ZSK in it through libtchsm.so, sign a
# generated zone, and check the result with ldns-verify-zone. Then stop the cluster.
# Usage: scripts/demo.sh [--records N] [--keep]   (run `make build` first; `make demo` does both)
set -euo pipefail
cd "$(dirname "$0")/.."
records=1000
keep=0
while (($#)); do
	case $1 in
	--records) records=$2; shift 2 ;;
	--keep) keep=1; shift ;;
	*) echo "usage: $0 [--records N] [--keep]" >&2; exit 2 ;;
	esac
done
dir=$(mktemp -d /tmp/tchsm-demo.XXXXXX)
# A private RabbitMQ vhost, deleted at the end, so the demo leaves no queues behind.
vhost="tchsm-demo-$(basename "$dir" | cut -d. -f2)"
rabbitmqctl -q add_vhost "$vhost"
rabbitmqctl -q set_permissions -p "$vhost" guest '.*' '.*' '.*'
cleanup() {
	bin/tchsm dev down -dir "$dir/cluster" || true
	rabbitmqctl -q delete_vhost "$vhost" || true
	if ((keep)); then echo "kept $dir" >&2; else rm -rf "$dir"; fi
}
trap cleanup EXIT
bin/tchsm dev up -dir "$dir/cluster" -k 3 -n 5 -pin 1234 -amqp "amqp://guest:guest@127.0.0.1:5672/$vhost" >"$dir/env"
# shellcheck disable=SC1090
source "$dir/env"
echo "== cluster"
bin/tchsm status
echo "== OpenDNSSEC signs a ${records}-record zone through libtchsm.so"
start=$(date +%s.%N)
e2e/opendnssec/run.sh --module "$PWD/bin/libtchsm.so" --token-label tchsm --pin 1234 \
	--env "TCHSM_CONFIG=$TCHSM_CONFIG" --records "$records" --timeout 600
end=$(date +%s.%N)
echo "== keys in the cluster"
bin/tchsm keys list
printf '== done in %.1f s: the zone was signed by a 3-of-5 threshold cluster and ldns-verify-zone accepted it\n' "$(echo "$end - $start" | bc)"
