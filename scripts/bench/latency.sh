#!/usr/bin/env bash
# Benchmark 2: mouth-to-ear latency at 1 000 and 10 000 listeners.
# A mark bot speaks timing marks over WHIP; 20 listeners (of worker 0)
# decode the program and detect them; every listener asks ?flush=200ms as
# amphi's own clients do. Loopback only, bounded, stops by itself.
#
# Usage: scripts/bench/latency.sh [1000|10000|all]
# Reports go to docs/bench/latency-N.json (BENCH_OUT overrides the folder).
set -euo pipefail
cd "$(dirname "$0")/../.."
which=${1:-all}
port=${AMPHI_PORT:-28090}
. scripts/bench/lib.sh

run() {
	local n=$1 rate=$2 dur=$3
	start_server "$n" --join-rate 1000 --max-listeners 19000
	echo "== $n listeners at $rate/s for $dur, 20 of them decoding marks"
	"$bin" load --server "http://127.0.0.1:$port" --listeners "$n" --rate "$rate" --duration "$dur" \
		--flush 200ms --latency-sample 20 --pid "$server" --quiet --json "$out/latency-$n.json"
	stop_server
}

case $which in
1000 | all) run 1000 200 25s ;;&
10000 | all) run 10000 500 40s ;;
1000) ;;
*) echo "usage: $0 [1000|10000|all]" >&2; exit 2 ;;
esac
