#!/usr/bin/env bash
# Benchmark 1: amphi and Icecast 2 side by side on this machine, loopback
# only, one server after the other so each has the machine to itself (the
# load generator shares it).
#
# Usage: scripts/bench/compare.sh [icecast|amphi|both] [5000|18000|all]
#
#   5000:  5 000 listeners joining at 500/s (10 s), 25 s run
#   18000: 18 000 listeners joining at 900/s (20 s), 35 s run
#
# ICECAST_PAGE_US=200000 makes ffmpeg cut an Ogg page every 200 ms (its
# default is up to 1 s), the cadence amphi writes at; its reports are then
# named icecast-N-page200ms.json.
# AMPHI_BIN=path runs that binary instead of building bin/amphi.
# Reports go to docs/bench/{icecast,amphi}-N.json (BENCH_OUT overrides the
# folder); server logs and `ss -s` snapshots to artifacts/bench/.
# Both servers get the same program: 32 kbit/s mono Opus, 20 ms frames,
# a 440 Hz tone. Icecast is fed by ffmpeg; amphi by `amphi speak`.
set -euo pipefail

cd "$(dirname "$0")/../.."

servers=${1:-both}
scenarios=${2:-all}
out=${BENCH_OUT:-docs/bench}
logs=artifacts/bench
icecast_port=${ICECAST_PORT:-28000}
amphi_port=${AMPHI_PORT:-28080}

case $servers in icecast | amphi | both) ;; *) echo "usage: $0 [icecast|amphi|both] [5000|18000|all]" >&2; exit 2 ;; esac
case $scenarios in 5000 | 18000 | all) ;; *) echo "usage: $0 [icecast|amphi|both] [5000|18000|all]" >&2; exit 2 ;; esac

# icecast.xml has Icecast start as root and drop to icecast2:icecast
# (changeowner), and its log folder is chowned to that user.
if [ "$servers" != amphi ] && [ "$(id -u)" -ne 0 ]; then
	echo "the Icecast runs need root (run with sudo, or: $0 amphi)" >&2
	exit 2
fi

scripts/deps.sh icecast2 ffmpeg curl jq libopus-dev pkg-config
# AMPHI_BIN runs a binary built before instead of building the tree.
amphi=${AMPHI_BIN:-}
if [ -z "$amphi" ]; then
	export PATH=$PATH:/usr/local/go/bin
	go build -o bin/amphi ./cmd/amphi
	amphi=bin/amphi
fi
mkdir -p "$out" "$logs"

# 20 000 open files is the hard cap on these machines: one listener is one
# socket on each side, and both servers need the limit raised.
ulimit -n 20000 2>/dev/null || ulimit -n "$(ulimit -Hn)"
echo "open files: $(ulimit -n)" >&2

tmp=$(mktemp -d)
# Icecast drops to icecast2:icecast after binding; its log folder must be
# reachable by that user, so it is a top-level temporary folder of its own.
icedir=""
pids=()

# stop ends one process: TERM, up to 5 s, then KILL.
stop() {
	local pid=$1
	kill -0 "$pid" 2>/dev/null || return 0
	kill -TERM "$pid" 2>/dev/null || true
	for _ in $(seq 50); do
		kill -0 "$pid" 2>/dev/null || { wait "$pid" 2>/dev/null || true; return 0; }
		sleep 0.1
	done
	kill -KILL "$pid" 2>/dev/null || true
	wait "$pid" 2>/dev/null || true
}

# stop_all ends what this script started, newest first.
stop_all() {
	local i
	for ((i = ${#pids[@]} - 1; i >= 0; i--)); do
		stop "${pids[i]}"
	done
	pids=()
}

cleanup() {
	stop_all
	rm -rf "$tmp"
	[ -n "$icedir" ] && rm -rf "$icedir"
	return 0
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# port_free fails when something already listens on PORT: the benchmark
# would otherwise measure someone else's server.
port_free() {
	if [ -n "$(ss -Hltn "sport = :$1")" ]; then
		echo "port $1 is already in use; set ICECAST_PORT or AMPHI_PORT" >&2
		return 1
	fi
}

# wait_http waits up to 20 s for URL to answer 200 while PID lives.
wait_http() {
	for _ in $(seq 200); do
		kill -0 "$2" 2>/dev/null || { echo "the server exited; see $logs" >&2; return 1; }
		[ "$(curl -s -o /dev/null -m 1 -w '%{http_code}' "$1" || true)" = 200 ] && return 0
		sleep 0.1
	done
	echo "no answer from $1" >&2
	return 1
}

# snapshot records `ss -s` and the server's RSS while the run is at its peak.
snapshot() {
	local name=$1 pid=$2 at=$3
	(
		sleep "$at"
		{
			date -u +%FT%TZ
			ss -s
			grep -E 'VmRSS|Threads' "/proc/$pid/status" 2>/dev/null || true
			grep -E '^(TCP|sockstat)' /proc/net/sockstat 2>/dev/null || true
		} >"$logs/$name.ss.txt"
	) &
	pids+=($!)
}

# idle_cpu prints PID's CPU use over 5 s, in percent of a core: the
# program's cost with no listener, which the per-listener-second figure
# includes.
idle_cpu() {
	local a b hz
	hz=$(getconf CLK_TCK)
	a=$(awk '{print $14 + $15}' "/proc/$1/stat")
	sleep 5
	b=$(awk '{print $14 + $15}' "/proc/$1/stat")
	awk -v a="$a" -v b="$b" -v hz="$hz" 'BEGIN{printf "%.1f\n", (b - a) / hz / 5 * 100}'
}

# listen_drops prints the kernel's count of connections dropped because a
# listen queue overflowed (all sockets of the machine).
listen_drops() {
	nstat -az TcpExtListenDrops 2>/dev/null | awk '/ListenDrops/{print $2}'
}

# measure NAME PID AT LOAD-ARGS... records the idle CPU, runs the load
# with a snapshot AT seconds in, and records the listen-queue drops.
measure() {
	local name=$1 pid=$2 at=$3
	shift 3
	echo "idle CPU with the program running, no listener: $(idle_cpu "$pid") % of a core" | tee "$logs/$name.idle.txt" >&2
	snapshot "$name" "$pid" "$at"
	local d0 d1
	d0=$(listen_drops)
	"$amphi" load "$@" --pid "$pid" --quiet --json "$out/$name.json" | tee "$logs/$name.txt"
	d1=$(listen_drops)
	echo "listen queue drops during the run: $((d1 - d0))" | tee -a "$logs/$name.idle.txt" >&2
}

# peak_at N RATE prints when the run is at its peak: 3 s after the last join.
peak_at() {
	awk -v n="$1" -v r="$2" 'BEGIN{print int(n / r) + 3}'
}

# scenario N prints "RATE DURATION".
scenario() {
	case $1 in
	5000) echo "500 25s" ;;
	18000) echo "900 35s" ;;
	esac
}

run_icecast() {
	local n=$1 rate dur port=$((icecast_port + ($1 == 18000 ? 1 : 0)))
	read -r rate dur <<<"$(scenario "$n")"
	local name="icecast-$n" page=()
	if [ -n "${ICECAST_PAGE_US:-}" ]; then
		page=(-page_duration "$ICECAST_PAGE_US")
		name="icecast-$n-page$((ICECAST_PAGE_US / 1000))ms"
	fi
	port_free "$port"
	icedir=$(mktemp -d)
	chown icecast2:icecast "$icedir"
	sed -e "s|ICECAST_PORT|$port|g" -e "s|ICECAST_DIR|$icedir|g" scripts/bench/icecast.xml >"$icedir/icecast.xml"
	chmod 644 "$icedir/icecast.xml"
	icecast2 -c "$icedir/icecast.xml" >"$logs/$name.stdout.log" 2>&1 &
	local ice=$!
	pids+=("$ice")
	wait_http "http://127.0.0.1:$port/status-json.xsl" "$ice"
	ffmpeg -nostdin -hide_banner -loglevel warning -re -f lavfi -i sine=f=440 \
		-c:a libopus -b:a 32k -ac 1 -ar 48000 -application voip -frame_duration 20 \
		"${page[@]}" -f ogg -content_type audio/ogg "icecast://source:bench@127.0.0.1:$port/amphi.opus" \
		>"$logs/$name.ffmpeg.log" 2>&1 &
	pids+=($!)
	# The mount is live once it serves bytes.
	local got=0
	for _ in $(seq 50); do
		got=$(curl -sf -m 1 "http://127.0.0.1:$port/amphi.opus" 2>/dev/null | head -c 200 | wc -c || true)
		[ "$got" -gt 0 ] && break
		sleep 0.2
	done
	[ "$got" -gt 0 ] || { echo "icecast mount /amphi.opus is not live" >&2; return 1; }
	echo "== icecast $n listeners at $rate/s for $dur (pid $ice, port $port)" >&2
	measure "$name" "$ice" "$(peak_at "$n" "$rate")" --server "http://127.0.0.1:$port" --stream /amphi.opus \
		--listeners "$n" --rate "$rate" --duration "$dur"
	stop_all
	cp "$icedir/error.log" "$logs/$name.error.log" 2>/dev/null || true
	rm -rf "$icedir"
	icedir=""
}

run_amphi() {
	local n=$1 rate dur port=$((amphi_port + ($1 == 18000 ? 1 : 0)))
	read -r rate dur <<<"$(scenario "$n")"
	local url="http://127.0.0.1:$port" data="$tmp/amphi-data-$n"
	port_free "$port"
	[ -f "$tmp/tone.wav" ] || ffmpeg -nostdin -hide_banner -loglevel error -f lavfi -i sine=f=440:d=30 -ac 1 -ar 48000 "$tmp/tone.wav"
	# --join-rate: the node admits 500 joins/s by default; 900/s needs more.
	"$amphi" serve --addr "127.0.0.1:$port" --ops-addr 127.0.0.1:0 --data "$data" --max-listeners 19000 --join-rate 1000 --log warn \
		>"$logs/amphi-$n.log" 2>&1 &
	local srv=$!
	pids+=("$srv")
	wait_http "$url/healthz" "$srv"
	local created id token
	created=$("$amphi" create --server "$url" --title "bench $n")
	id=$(jq -r .id <<<"$created")
	token=$(jq -r .speaker_token <<<"$created")
	"$amphi" speak --server "$url" --space "$id" --token "$token" --loop "$tmp/tone.wav" \
		>"$logs/amphi-$n.speak.log" 2>&1 &
	pids+=($!)
	# The program is live once the stream serves bytes (/listen joins for
	# plain players and redirects to the ticketed stream).
	local got=0
	for _ in $(seq 50); do
		got=$(curl -sfL -m 1 "$url/spaces/$id/listen" 2>/dev/null | head -c 200 | wc -c || true)
		[ "$got" -gt 0 ] && break
		sleep 0.2
	done
	[ "$got" -gt 0 ] || { echo "amphi space $id is not live" >&2; return 1; }
	echo "== amphi $n listeners at $rate/s for $dur (pid $srv, port $port, space $id)" >&2
	measure "amphi-$n" "$srv" "$(peak_at "$n" "$rate")" --server "$url" --space "$id" \
		--listeners "$n" --rate "$rate" --duration "$dur"
	stop_all
	rm -rf "$data"
}

# settle lets the previous run's sockets drain before the next one.
settle() {
	sleep 5
	ss -s | sed -n 1,2p >&2
}

ns=(5000 18000)
[ "$scenarios" != all ] && ns=("$scenarios")
for n in "${ns[@]}"; do
	if [ "$servers" != amphi ]; then
		run_icecast "$n"
		settle
	fi
	if [ "$servers" != icecast ]; then
		run_amphi "$n"
		settle
	fi
done

# A summary of every report present.
printf '\n| report | target | joined | ok | stalled | cut | pending | failed (by cause) | TTFA p50 | TTFA p99 | CPU µs/listener-s | RSS KiB/listener | B/listener-s | stalls |\n'
printf '|---|---|---|---|---|---|---|---|---|---|---|---|---|---|\n'
for f in "$out"/icecast-*.json "$out"/amphi-*.json; do
	[ -f "$f" ] || continue
	jq -r --arg f "$(basename "$f" .json)" '
		def ms: if type == "number" then (. / 1e6 | floor | tostring) + " ms" else tostring end;
		"| \($f) | \(.listeners.target) | \(.listeners.joined) | \(.listeners.ok) | \(.listeners.stalled) | \(.listeners.cut) | \(.listeners.pending) | \(.listeners.failed) \(.listeners.failed_by // {} | tostring) | \(.ttfa.p50 | ms) | \(.ttfa.p99 | ms) | \(.server.cpu_per_listener_second * 1e6 * 10 | round / 10) | \(.server.rss_per_listener / 1024 * 100 | round / 100) | \(.bytes.per_listener_second | round) | \(.stalls) |"' "$f"
done
