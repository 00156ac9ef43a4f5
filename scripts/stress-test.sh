#!/usr/bin/env bash
# Runs scripts/test.sh N times in a row (default 5) beside two processes
# that each burn a core, as on a shared 2-core CI machine: a test that
# passes alone but fails on a busy machine fails here. Stops at the first
# failing run and says which one; the burners are always stopped. Further
# arguments go to scripts/test.sh, and so to `go test`, after -count=1:
# without it every run after the first would only replay go's test cache.
#
# Usage: scripts/stress-test.sh [N] [go test flags...]
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${1:-5}
case $runs in
'' | *[!0-9]* | 0)
	echo "usage: $0 [N] [go test flags...]" >&2
	exit 2
	;;
esac
[ $# -gt 0 ] && shift

burners=()
stop_burners() {
	for pid in "${burners[@]}"; do
		kill "$pid" 2>/dev/null || true
	done
	wait "${burners[@]}" 2>/dev/null || true
}
trap stop_burners EXIT
trap 'exit 130' INT TERM
for _ in 1 2; do
	yes >/dev/null &
	burners+=($!)
done

for i in $(seq "$runs"); do
	echo "== stress-test: run $i of $runs, beside ${#burners[@]} CPU burners"
	start=$SECONDS
	if ! scripts/test.sh -count=1 "$@"; then
		echo "== stress-test: run $i of $runs FAILED after $((SECONDS - start)) s" >&2
		exit 1
	fi
	echo "== stress-test: run $i of $runs passed in $((SECONDS - start)) s"
done
echo "== stress-test: all $runs runs passed beside two CPU burners"
