#!/usr/bin/env bash
# zonegen.sh ZONE N: print a zone file for ZONE with SOA, NS (+ glue) and N
# data records, cycling A, AAAA, TXT, MX (MX targets are in-zone A names).
set -euo pipefail
[[ $# -eq 2 ]] || { echo "usage: zonegen.sh ZONE N" >&2; exit 2; }
zone=${1%.}
n=$2
[[ $n =~ ^[0-9]+$ && $n -ge 1 ]] || { echo "zonegen.sh: N must be a positive integer" >&2; exit 2; }
awk -v zone="$zone" -v n="$n" 'BEGIN {
	printf "$ORIGIN %s.\n$TTL 300\n", zone
	printf "@\t300\tIN\tSOA\tns1.%s. hostmaster.%s. 1 3600 900 604800 300\n", zone, zone
	printf "@\t300\tIN\tNS\tns1.%s.\n@\t300\tIN\tNS\tns2.%s.\n", zone, zone
	printf "ns1\t300\tIN\tA\t192.0.2.1\nns2\t300\tIN\tA\t192.0.2.2\n"
	for (i = 0; i < n; i++) {
		name = sprintf("h%06d", int(i / 4))
		k = i % 4
		if (k == 0) printf "%s\t300\tIN\tA\t10.%d.%d.%d\n", name, int(i / 65536) % 256, int(i / 256) % 256, i % 256
		else if (k == 1) printf "%s\t300\tIN\tAAAA\t2001:db8::%x:%x\n", name, int(i / 65536), i % 65536
		else if (k == 2) printf "%s\t300\tIN\tTXT\t\"tchsm e2e record %d\"\n", name, i
		else printf "%s\t300\tIN\tMX\t10 h%06d.%s.\n", name, int(i / 4), zone
	}
}'
