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
out=${BENCH_OUT:-docs/bench}
port=${AMPHI_PORT:-28090}
bin=${AMPHI_BIN:-bin/amphi}
mkdir -p "$out"
if [ -z "${AMPHI_BIN:-}" ]; then
	scripts/deps.sh libopus-dev libopusfile-dev pkg-config
	go build -o bin/amphi ./cmd/amphi
fi
ulimit -n 20000
tmp=$(mktemp -d)
server=""
cleanup() {
	[ -n "$server" ] && kill "$server" 2>/dev/null && wait "$server" 2>/dev/null
	rm -rf "$tmp"
}
trap cleanup EXIT

run() {
	local n=$1 rate=$2 dur=$3
	"$bin" serve --addr 127.0.0.1:$port --data "$tmp/data-$n" --log warn --join-rate 1000 --max-listeners 19000 >"$tmp/serve-$n.log" 2>&1 &
	server=$!
	for _ in $(seq 50); do curl -sf "http://127.0.0.1:$port/healthz" >/dev/null && break; sleep 0.1; done
	echo "== $n listeners at $rate/s for $dur, 20 of them decoding marks"
	"$bin" load --server "http://127.0.0.1:$port" --listeners "$n" --rate "$rate" --duration "$dur" \
		--flush 200ms --latency-sample 20 --pid "$server" --quiet --json "$out/latency-$n.json"
	kill "$server"; wait "$server" 2>/dev/null || true; server=""
}

case $which in
1000 | all) run 1000 200 25s ;;&
10000 | all) run 10000 500 40s ;;
1000) ;;
*) echo "usage: $0 [1000|10000|all]" >&2; exit 2 ;;
esac
