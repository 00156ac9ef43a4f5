#!/usr/bin/env bash
# Benchmark 6: a legitimate crowd against the default server, no flags.
# Three crowds, each against a fresh `amphi serve` as a new user runs it:
#
#   spread: 18 000 listeners joining at 900/s, 18 per /24 (1 000 prefixes)
#   nat:    the same, 250 per /24 (a mobile carrier's NAT pool), 72 prefixes
#   herd:   15 000 listeners (10 per /24) in line for a scheduled space before its start,
#           the host starting it 20 s later
#
# Each must end with 0 failed and 0 stalled and proof of work never asked.
# The verdict of /ops is sampled every 2 s into a timeline. Loopback only,
# bounded, stops by itself.
#
# Usage: scripts/bench/crowd.sh [spread|nat|herd|all]
# Reports go to docs/bench/crowd-{spread,nat,herd}.json and the verdict
# timelines to docs/bench/crowd-{spread,nat,herd}-verdicts.jsonl.
set -euo pipefail
cd "$(dirname "$0")/../.."
port=${AMPHI_PORT:-28096}
. scripts/bench/lib.sh
which=${1:-all}

# timeline NAME: samples /ops every 2 s in the background until killed.
timeline() {
	while :; do
		curl -s -H 'Accept: application/json' "http://127.0.0.1:$ops_port/ops" |
			jq -c '{at, verdict, conditions, waiting, waiting_for_start, pow: .pow_difficulty, listeners,
				joins: .rates.joins_per_second, polls: .rates.polls_per_second, invalid: .rates.invalid_share,
				evidence: [.evidence[] | select(.condition != "healthy") | .text]}' || true
		sleep 2
	done >"$out/crowd-$1-verdicts.jsonl"
}

# summary NAME: the figures the issue asks for, from the report and timeline.
summary() {
	jq -c --slurpfile v <(jq -s . "$out/crowd-$1-verdicts.jsonl") '{
		run: "'"$1"'", target: .listeners.target, ok: .listeners.ok, failed: .listeners.failed,
		stalled: .listeners.stalled, failed_by: .listeners.failed_by,
		ttfa_p99: .ttfa.p99, ttfa_max: .ttfa.max, rss_per_listener_kib: (.server.rss_per_listener / 1024),
		pow_max: ($v[0] | map(.pow) | max),
		verdicts: ($v[0] | reduce .[] as $p ([]; if length > 0 and .[-1].verdict == $p.verdict
			then .[-1].samples += 1 else . + [{verdict: $p.verdict, from: $p.at, samples: 1}] end))}' "$out/crowd-$1.json"
}

crowd() {
	local name=$1 per=$2
	start_server "$name"
	timeline "$name" &
	local tl=$!
	"$bin" load --server "http://127.0.0.1:$port" --listeners 18000 --rate 900 --per-prefix "$per" \
		--duration 45s --pid "$server" --quiet --json "$out/crowd-$name.json"
	kill "$tl"
	stop_server
	summary "$name"
}

herd() {
	start_server herd
	timeline herd &
	local tl=$!
	local created
	created=$("$bin" create --server "http://127.0.0.1:$port" --title "The herd" --at "$(date -u -d '+1 hour' +%Y-%m-%dT%H:%M:%SZ)")
	local id token
	id=$(jq -r .id <<<"$created")
	token=$(jq -r .host_token <<<"$created")
	# The herd joins at once, at the start of the run; the host starts the
	# space 20 s later.
	(sleep 20 && "$bin" start --server "http://127.0.0.1:$port" --space "$id" --token "$token" >/dev/null) &
	"$bin" load --server "http://127.0.0.1:$port" --space "$id" --listeners 15000 --rate 0 --per-prefix 10 \
		--duration 60s --timeout 1m --pid "$server" --quiet --json "$out/crowd-herd.json"
	kill "$tl"
	stop_server
	summary herd
}

case $which in
spread) crowd spread 18 ;;
nat) crowd nat 250 ;;
herd) herd ;;
all)
	crowd spread 18
	crowd nat 250
	herd
	;;
*)
	echo "usage: $0 [spread|nat|herd|all]" >&2
	exit 2
	;;
esac
