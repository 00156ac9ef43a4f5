#!/usr/bin/env bash
# Benchmark 7: the labelled verdict suite (issue 10). Each scenario in
# scripts/bench/verdicts/ runs against a fresh default server (with
# --rehearsal-faults, which changes nothing until a fault is posted); /ops is
# sampled every 2 s into a timeline, and a table says which verdicts /ops
# gave over time and whether each scenario reached its label. Loopback only,
# bounded, stops by itself: about 1 minute a scenario.
#
# A scenario file holds:
#   label       the verdict /ops should reach
#   allowed     other verdicts that may also show (healthy always may: a
#               window must fill before anything shows)
#   with        conditions that must hold beside the label at once
#   legitimate  under_attack and failing_internally must never show, not
#               even among the conditions
#   scheduled   the space is scheduled, and its host starts it this long
#               after the run's start (else it is live from the start)
#   tickets     this many real tickets are taken (joins from 127.8.N.2);
#               an attack whose Path holds $ticket is made once for each
#   why         what it is, in a sentence
#   scenario    the `amphi load` scenario; "$space" and "$token" stand for
#               the space made for it and its host token
#
# Usage: scripts/bench/verdicts.sh [NAME...]   (NAME: a file's name without
# .json; default all). Timelines (t: seconds since amphi load started;
# failing: the components with errors or stalls in the window) go to
# docs/bench/verdicts-NAME.jsonl, amphi load's text reports to
# docs/bench/verdicts-NAME.txt, the table to stdout and docs/bench/verdicts.md.
set -euo pipefail
cd "$(dirname "$0")/../.."
port=${AMPHI_PORT:-28097}
. scripts/bench/lib.sh
dir=scripts/bench/verdicts
base=http://127.0.0.1:$port
if [ $# -gt 0 ]; then
	names=("$@")
else
	names=()
	for f in "$dir"/*.json; do names+=("$(basename "$f" .json)"); done
fi

# timeline NAME T0: samples /ops every 2 s until killed.
timeline() {
	while :; do
		curl -s -H 'Accept: application/json' "http://127.0.0.1:$ops_port/ops" |
			jq -c --argjson t0 "$2" --argjson now "$(date +%s.%N)" '{t: ($now - $t0 | floor), verdict, conditions,
				waiting, waiting_for_start, listeners, pow: .pow_difficulty, invalid: .rates.invalid_share,
				failing: [.components[]? | select(.failing) | .name]}' || true
		sleep 2
	done >"$out/verdicts-$1.jsonl"
}

# scenario NAME ID TOKEN TICKETS: the load scenario of NAME for space ID.
scenario() {
	jq --arg space "$2" --arg token "$3" --argjson tickets "$4" '.scenario
		| walk(if type == "string" then gsub("\\$space"; $space) | gsub("\\$token"; $token) else . end)
		| if .attacks then .attacks |= [.[] | if ((.Path // "") | contains("$ticket"))
			then . as $a | $tickets[] | . as $t | $a | .Path |= sub("\\$ticket"; $t) else . end] else . end' "$dir/$1.json"
}

# row NAME: the table's row for NAME, from its file, timeline and report.
row() {
	jq -rs --arg name "$1" --slurpfile spec "$dir/$1.json" --slurpfile rep "$tmp/$1-report.json" '
		$spec[0] as $s | . as $tl
		| ([$s.label, "healthy"] + ($s.allowed // [])) as $ok
		| (reduce $tl[] as $p ([]; ($p.conditions | join("+")) as $k
			| if length > 0 and .[-1].k == $k then .[-1].to = $p.t else . + [{k: $k, from: $p.t, to: $p.t}] end)) as $runs
		| ($tl | any(.verdict == $s.label and ((($s.with // []) - .conditions) | length == 0))) as $reached
		| ($tl | all(.verdict as $v | any($ok[]; . == $v))) as $within
		| ($tl | all(any(.conditions[]; . == "under_attack" or . == "failing_internally") | not)) as $clean
		| "| \($name) | \($s.label)\(if $s.with then " with " + ($s.with | join(", ")) else "" end) | "
		+ ($runs | map("\(.k) \(.from)–\(.to) s") | join(" · "))
		+ " | \(if $reached and $within then "yes" else "**no**" end) | "
		+ (if $s.legitimate then (if $clean then "yes" else "**no**" end) else "–" end)
		+ ($rep[0].listeners // {} | " | \(.ok // "?") / \(.stalled // "?") / \(.failed // "?") of \(.target // "?") |")' "$out/verdicts-$1.jsonl"
}

run() {
	local name=$1 f=$dir/$1.json created id token at n tickets t0 tl
	start_server "$name" --rehearsal-faults
	at=$(jq -r '.scheduled // ""' "$f")
	if [ -n "$at" ]; then
		created=$("$bin" create --server "$base" --title "$name" --at "$(date -u -d '+1 hour' +%Y-%m-%dT%H:%M:%SZ)")
	else
		created=$("$bin" create --server "$base" --title "$name")
	fi
	id=$(jq -r .id <<<"$created")
	token=$(jq -r .host_token <<<"$created")
	tickets='[]'
	n=$(jq -r '.tickets // 0' "$f")
	for i in $(seq "$n"); do
		tickets=$(curl -sf --interface "127.8.$i.2" -X POST "$base/spaces/$id/join" |
			jq -c --argjson all "$tickets" '$all + [.ticket]')
	done
	scenario "$name" "$id" "$token" "$tickets" >"$tmp/$name.json"
	t0=$(date +%s.%N)
	timeline "$name" "$t0" &
	tl=$!
	if [ -n "$at" ]; then
		(sleep "$at" && "$bin" start --server "$base" --space "$id" --token "$token" >/dev/null) &
	fi
	echo "{}" >"$tmp/$name-report.json"
	"$bin" load --server "$base" --scenario "$tmp/$name.json" --ops "http://127.0.0.1:$ops_port" --pid "$server" \
		--quiet --json "$tmp/$name-report.json" >"$out/verdicts-$name.txt" || echo "$name: amphi load failed" >&2
	sleep 3 # a last sample after the run
	kill "$tl"
	wait "$tl" 2>/dev/null || true
	stop_server
}

table="$out/verdicts.md"
{
	echo "| scenario | label | verdicts over time (conditions) | label reached | no attack or fault shown | listeners ok / stalled / failed |"
	echo "|---|---|---|---|---|---|"
} >"$table"
for name in "${names[@]}"; do
	echo "== $name: $(jq -r .why "$dir/$name.json")" >&2
	run "$name"
	row "$name" >>"$table"
	tail -n 1 "$table" >&2
done
cat "$table"
