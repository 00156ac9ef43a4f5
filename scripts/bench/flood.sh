#!/usr/bin/env bash
# Benchmark 4: what refusing costs, and the legitimate goodput under a flood.
# Runs the same legitimate audience twice against a fresh server, once
# alone and once beside a flood of forged tickets and garbage joins, and
# reports the server's CPU for each: the difference over the number of
# refused requests is the cost of a refusal in a real server, network
# stack included. Loopback only, bounded, stops by itself.
#
# Usage: scripts/bench/flood.sh
# Reports go to docs/bench/flood-{baseline,attack}.json.
set -euo pipefail
cd "$(dirname "$0")/../.."
port=${AMPHI_PORT:-28095}
. scripts/bench/lib.sh

# 500 legitimate listeners joining at 50/s (about 100 requests/s with
# their tickets' GETs); the flood, ten times that: 700 listen requests/s
# with forged tickets and 300 garbage joins/s, from 4 096 addresses, for the
# whole 30 s. The attackers, the listeners and the server share this
# machine's cores: the attacker spends ~90 µs of CPU per request itself.
#
# Proof of work is armed by hand at 12 bits (~0.5 ms to solve) in both runs.
# Left to itself the server arms 20 bits under this flood, which is right
# for a crowd whose every listener solves on its own device (~0.3 s), but
# here all 500 listeners solve on these 2 cores: their solving, not the
# server, would set the result.
cat >"$tmp/baseline.json" <<JSON
{"listeners": 500, "join_rate": 50, "duration": "30s"}
JSON
cat >"$tmp/attack.json" <<JSON
{"listeners": 500, "join_rate": 50, "duration": "30s", "attacks": [
  {"Kind": "listen-flood", "Rate": 700, "Concurrency": 64, "Sources": 4096},
  {"Kind": "join-flood", "Rate": 300, "Concurrency": 64, "Sources": 4096}]}
JSON

for run in baseline attack; do
	start_server "$run" --pow 12
	echo "== $run"
	"$bin" load --server "http://127.0.0.1:$port" --scenario "$tmp/$run.json" --pid "$server" \
		--quiet --json "$out/flood-$run.json"
	curl -s -H 'Accept: application/json' "http://127.0.0.1:$ops_port/ops" | jq -c '{verdict, conditions}' || true
	stop_server
done

jq -n --slurpfile b "$out/flood-baseline.json" --slurpfile a "$out/flood-attack.json" '
  ($a[0].attacks | map(.Completed) | add) as $refused
  | ($a[0].server.cpu_seconds - $b[0].server.cpu_seconds) as $extra
  | {refused: $refused, extra_cpu_seconds: $extra,
     us_per_refusal: (if $refused > 0 then $extra / $refused * 1e6 else null end),
     refusals_per_core_second: (if $extra > 0 then $refused / $extra else null end),
     legit_ok: {baseline: $b[0].listeners.ok, attack: $a[0].listeners.ok},
     legit_ttfa_p99: {baseline: $b[0].ttfa.p99, attack: $a[0].ttfa.p99},
     legit_bytes_per_listener_second: {baseline: $b[0].bytes.per_listener_second, attack: $a[0].bytes.per_listener_second},
     stalls: {baseline: $b[0].stalls, attack: $a[0].stalls}}'
