#!/usr/bin/env bash
# Benchmark 8 (issue 12): listeners against edge processes.
#
# An origin (`amphi serve --role origin`, its embedded NATS on a fixed
# loopback port) makes a live space with a speaker bot; N edge processes
# share one port (`amphi serve --role edge --procs N`, SO_REUSEPORT) and
# take the program from the origin's bus; `amphi load`, itself split into
# worker processes of at most 19 000 listeners, joins LISTENERS listeners
# at the edges' port at RATE a second, each asking for one write a second
# (?flush=1s, what plain players get). Over the STEADY seconds after the
# last join, the edges' CPU (utime+stime from /proc) is read, which gives
# the CPU per listener-second to set beside the floor in DESIGN.md (8.7 us
# at 1 s writes on 2 cores), and their memory (RSS) at the end, less what
# they held before the first listener, per listener.
#
# Usage: scripts/bench/edges.sh N LISTENERS RATE [STEADY]
#   e.g. scripts/bench/edges.sh 4 16000 800
# AMPHI_BIN names a binary to use (the device machine has no Go: carry
# bin/amphi-static from scripts/build-static.sh); else bin/amphi is built.
# Needs bash, python3 and procfs; the report goes to
# $BENCH_OUT/edges-N-LISTENERS.json (default docs/bench), one summary line
# to stdout. Loopback only; bounded; stops by itself.
set -euo pipefail
cd "$(dirname "$0")/../.."
n=$1 listeners=$2 rate=$3 steady=${4:-30}
out=${BENCH_OUT:-docs/bench}
bin=${AMPHI_BIN:-bin/amphi}
port=${AMPHI_PORT:-28300}
mkdir -p "$out"
if [ -z "${AMPHI_BIN:-}" ]; then
	scripts/deps.sh libopus-dev libopusfile-dev pkg-config
	go build -o bin/amphi ./cmd/amphi
fi
ulimit -n 20000
tmp=$(mktemp -d)
pids=()
cleanup() {
	for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
	wait 2>/dev/null || true
	rm -rf "$tmp"
}
trap cleanup EXIT

# up PORT: waits for an HTTP server's /healthz on loopback.
up() {
	for _ in $(seq 100); do
		if (exec 3<>"/dev/tcp/127.0.0.1/$1" && printf 'GET /healthz HTTP/1.0\r\n\r\n' >&3 && grep -q ok <&3) 2>/dev/null; then
			return
		fi
		sleep 0.1
	done
	echo "nothing answers on port $1" >&2
	exit 1
}

# tree_cpu PID...: the CPU seconds of the processes and all their
# descendants; tree_rss: their resident memory in KiB.
descendants() {
	local p
	for p in "$@"; do
		echo "$p"
		descendants $(cat /proc/"$p"/task/*/children 2>/dev/null || true)
	done
}
tree_cpu() {
	local ticks=0 p
	for p in $(descendants "$@"); do
		set -- $(sed 's/^.*) //' /proc/"$p"/stat 2>/dev/null || echo)
		[ $# -ge 13 ] && ticks=$((ticks + ${12} + ${13}))
	done
	python3 -c "print($ticks / $(getconf CLK_TCK))"
}
tree_rss() {
	local kib=0 p r
	for p in $(descendants "$@"); do
		r=$(awk '/^VmRSS/ {print $2}' /proc/"$p"/status 2>/dev/null || echo 0)
		kib=$((kib + ${r:-0}))
	done
	echo "$kib"
}

edge_port=$((port + 1)) nats_port=$((port + 2)) ops_port=$((port + 3)) edge_ops=$((port + 100))
"$bin" serve --role origin --addr 127.0.0.1:$port --ops-addr 127.0.0.1:$ops_port --data "$tmp/origin" \
	--nats-listen 127.0.0.1:$nats_port --log warn >"$tmp/origin.log" 2>&1 &
origin=$!
pids+=("$origin")
up $port
"$bin" serve --role edge --procs "$n" --addr 127.0.0.1:$edge_port --ops-addr 127.0.0.1:$edge_ops \
	--nats "nats://$(cat "$tmp/origin/nats.token")@127.0.0.1:$nats_port" --gate-key-file "$tmp/origin/gate.key" \
	--log warn >"$tmp/edges.log" 2>&1 &
edges=$!
pids+=("$edges")
up $edge_port
for _ in $(seq 100); do [ "$(descendants $edges | wc -l)" -gt "$n" ] && break; sleep 0.1; done
sleep 1
rss_base=$(tree_rss $edges)

joining=$(python3 -c "import math; print(math.ceil($listeners / $rate))")
duration=$((joining + 5 + steady + 5))
report="$out/edges-$n-$listeners.json"
"$bin" load --server http://127.0.0.1:$port --listen-server http://127.0.0.1:$edge_port \
	--listeners "$listeners" --rate "$rate" --flush 1s --timeout 30s --duration ${duration}s \
	--quiet --json "$report" >"$tmp/load.log" 2>&1 &
load=$!
pids+=("$load")
sleep $((joining + 5))
cpu0=$(tree_cpu $edges) lcpu0=$(tree_cpu $load) t0=$(date +%s.%N)
sleep "$steady"
cpu1=$(tree_cpu $edges) lcpu1=$(tree_cpu $load) t1=$(date +%s.%N)
rss=$(tree_rss $edges) origin_rss=$(tree_rss $origin)
wait $load || { echo "amphi load failed:" >&2; tail -20 "$tmp/load.log" >&2; exit 1; }
python3 - "$report" <<PY
import json, sys
r = json.load(open(sys.argv[1]))
l = r["listeners"]
secs = $t1 - $t0
cpu, lcpu = $cpu1 - $cpu0, $lcpu1 - $lcpu0
ok = l["ok"]
print(json.dumps({
    "edges": $n, "cores": $(nproc), "target": l["target"], "ok": ok, "failed": l["failed"],
    "stalled": l["stalled"], "stalls": r.get("stalls", 0), "holes": r.get("holes", 0),
    "failed_by": l.get("failed_by", {}),
    "edge_cpu_cores": round(cpu / secs, 2),
    "us_per_listener_second": round(cpu * 1e6 / (ok * secs), 1) if ok else None,
    "load_cpu_cores": round(lcpu / secs, 2),
    "edge_rss_base_mib": round($rss_base / 1024, 1),
    "edge_rss_kib_per_listener": round(($rss - $rss_base) / ok, 2) if ok else None,
    "origin_rss_mib": round($origin_rss / 1024, 1),
    "ttfa_p99": r.get("ttfa", {}).get("p99"),
    "per_edge": {k: v.get("started") for k, v in (r.get("edges") or {}).items()},
}))
PY
