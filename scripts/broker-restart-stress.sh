#!/usr/bin/env bash
# Runs TestBrokerRestart RUNS times in a row (default 20) while both cores are kept busy with
# RSA exponentiations (`openssl speed rsa2048`, one loop per core), and prints one line per run
# and a closing count. It stops the shared RabbitMQ application during each run, like
# `make test` does for this test alone. Usage: scripts/broker-restart-stress.sh [RUNS]
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH=/usr/local/go/bin:$PATH
runs=${1:-20}
log_dir=$(mktemp -d /tmp/tchsm-broker-stress.XXXXXX)

make --no-print-directory build >/dev/null
go test -c -o "$log_dir/cluster.test" ./e2e/cluster

burners=()
cleanup() { ((${#burners[@]})) && kill "${burners[@]}" 2>/dev/null; wait 2>/dev/null || true; }
trap cleanup EXIT
for _ in $(seq "$(nproc)"); do
	# Bounded: each burner stops by itself after an hour even if this script is killed.
	timeout 3600 bash -c 'while :; do openssl speed -seconds 2 rsa2048 >/dev/null 2>&1; done' &
	burners+=($!)
done

pass=0 fail=0
for i in $(seq "$runs"); do
	out="$log_dir/run-$i.log"
	if (cd e2e/cluster && TCHSM_BROKER_RESTART=1 "$log_dir/cluster.test" -test.count=1 -test.timeout 10m \
		-test.run '^TestBrokerRestart$' -test.v) >"$out" 2>&1; then
		pass=$((pass + 1)); verdict=ok
	else
		fail=$((fail + 1)); verdict=FAIL
	fi
	line=$(grep -ho 'under load: .*' "$out" | head -1 || true)
	echo "run $i: $verdict ${line:-(no load line; see $out)}"
done
echo "logs: $log_dir"
echo "broker restart under CPU load: $pass passed, $fail failed"
((fail == 0))
