#!/usr/bin/env bash
# Restart and takeover: how long after an origin stops audio is back at a
# listener. Each run has a real server process with a live space, `amphi
# speak --loop` speaking a tone as a process, and a listener
# (internal/client, as `amphi listen`), and logs three times: the space on
# air again, the first audio at the listener (the resumed program), and
# the speaker's tone at the listener (the speak process found the stage
# again by itself).
#   restart: TestRestartResumesTheConversation: kill -9, and the server
#            started again at once on the same data directory and address;
#   standby: TestAStandbyTakesOverAndTheOldActiveStandsBy: kill -9 of the
#            active with a standby waiting (takeover), then SIGTERM of the
#            new active with the old one back as its standby (handover).
# Loopback only, bounded (a run takes ~10 s; the whole is cut at 10 min),
# stops by itself.
#
# Usage: scripts/bench/restart.sh [runs] [restart|standby]   (default 10 restart)
set -euo pipefail
cd "$(dirname "$0")/../.."
runs=${1:-10}
case ${2:-restart} in
restart) test=TestRestartResumesTheConversation ;;
standby) test=TestAStandbyTakesOverAndTheOldActiveStandsBy ;;
*) echo "usage: $0 [runs] [restart|standby]" >&2; exit 2 ;;
esac
scripts/deps.sh libopus-dev libopusfile-dev pkg-config ffmpeg
log=$(mktemp)
trap 'rm -f "$log"' EXIT
if ! timeout 600 go test ./cmd/amphi -run "^$test\$" -count="$runs" -v >"$log" 2>&1; then
	tail -40 "$log" >&2
	exit 1
fi
echo "$(grep -c -- '--- PASS' "$log") runs of $test, $(nproc) cores, $(date -u '+%Y-%m-%d %H:%M UTC')"
# The tests' lines: "restart: kill to live 353ms, to audio at the listener
# 511ms, to the tone at the listener 2.216s" (or "takeover: kill to …",
# "handover: term to …") and "recording: 5.2335s decoded by ffmpeg; live
# 1.93s before the kill, 3.33s after the restart, 5.60s in all"; Go prints
# these durations in ms or s.
grep -oE '(restart|takeover|handover): (kill|term) to live.*|recording: .*decoded by ffmpeg.*' "$log" | awk '
function ms(v) { return v ~ /ms$/ ? v + 0 : (v ~ /µs$/ ? v / 1000 : v * 1000) }
function report(name, k, n,   i, j, t, a) {
	for (i = 1; i <= n; i++) a[i] = v[k, i]
	for (i = 2; i <= n; i++) for (j = i; j > 1 && a[j-1] > a[j]; j--) { t = a[j]; a[j] = a[j-1]; a[j-1] = t }
	printf "%-45s p50 %6.0f ms   p99 %6.0f ms   max %6.0f ms\n", name, a[int((n + 1) / 2)], a[n - int(n / 100)], a[n]
}
{ gsub(/[,;]/, "") }
$3 == "to" && $4 == "live" { k = $1; sub(/:$/, "", k); c = ++n[k]; v[k "live", c] = ms($5); v[k "audio", c] = ms($11); v[k "tone", c] = ms($18); why[k] = $2 }
$1 == "recording:" { g = ++n["gap"]; v["gap", g] = ms($15) - ms($2) }
END {
	for (k in why) {
		if (k == "gap") continue
		report(k ": " why[k] " -> space on air again", k "live", n[k])
		report(k ": " why[k] " -> audio at the listener", k "audio", n[k])
		report(k ": " why[k] " -> tone at the listener", k "tone", n[k])
	}
	if (n["gap"]) report("recording: time live less audio in it", "gap", n["gap"])
}'
