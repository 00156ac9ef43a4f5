#!/usr/bin/env bash
# Benchmark 5: what listeners' open pages cost. Runs the same audience twice
# against a fresh server, once listening only and once with every page
# polling the space's live state every 2 s (GET /spaces/{id}/state with
# If-None-Match), and reports the server's CPU for each: the difference
# over the number of polls is the cost of a poll in a real server, network
# stack included. Loopback only, bounded, stops by itself.
#
# Usage: scripts/bench/pages.sh
# Reports go to docs/bench/pages-{baseline,polling}.json.
set -euo pipefail
cd "$(dirname "$0")/../.."
port=${AMPHI_PORT:-28096}
. scripts/bench/lib.sh

# 2 000 listeners joining at 200/s for 30 s; the polls share 64 keep-alive
# connections from one address (browsers would each hold their own).
cat >"$tmp/baseline.json" <<JSON
{"listeners": 2000, "join_rate": 200, "duration": "30s"}
JSON
cat >"$tmp/polling.json" <<JSON
{"listeners": 2000, "join_rate": 200, "duration": "30s", "poll_state": "2s"}
JSON

for run in baseline polling; do
	start_server "$run"
	echo "== $run"
	"$bin" load --server "http://127.0.0.1:$port" --scenario "$tmp/$run.json" --pid "$server" \
		--quiet --json "$out/pages-$run.json"
	stop_server
done

jq -n --slurpfile b "$out/pages-baseline.json" --slurpfile p "$out/pages-polling.json" '
  ($p[0].state.sent) as $polls
  | ($p[0].server.cpu_seconds - $b[0].server.cpu_seconds) as $extra
  | {polls: $polls, not_modified: $p[0].state.not_modified, failed: $p[0].state.failed,
     poll_latency: $p[0].state.latency,
     extra_cpu_seconds: $extra,
     us_per_poll: (if $polls > 0 then $extra / $polls * 1e6 else null end),
     cpu_seconds: {baseline: $b[0].server.cpu_seconds, polling: $p[0].server.cpu_seconds},
     listeners_ok: {baseline: $b[0].listeners.ok, polling: $p[0].listeners.ok}}'
