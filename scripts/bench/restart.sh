#!/usr/bin/env bash
# Restart: how long after a kill -9 of `amphi serve` audio is back at a
# listener. Each run is TestRestartResumesTheConversation: a real server
# process with a live space, `amphi speak --loop` speaking a tone as a
# process, a listener (internal/client, as `amphi listen`); the server is
# killed with SIGKILL and started again at once on the same data directory
# and address. It logs three times from the kill: the space on air again,
# the first audio at the listener (the resumed program), and the speaker's
# tone at the listener (the speak process found the stage again by itself).
# Loopback only, bounded (a run takes ~10 s; the whole is cut at 10 min),
# stops by itself.
#
# Usage: scripts/bench/restart.sh [runs]   (default 10)
set -euo pipefail
cd "$(dirname "$0")/../.."
runs=${1:-10}
scripts/deps.sh libopus-dev libopusfile-dev pkg-config ffmpeg
log=$(mktemp)
trap 'rm -f "$log"' EXIT
if ! timeout 600 go test ./cmd/amphi -run '^TestRestartResumesTheConversation$' -count="$runs" -v >"$log" 2>&1; then
	tail -40 "$log" >&2
	exit 1
fi
echo "$(grep -c 'restart: kill to live' "$log") runs, $(nproc) cores, $(date -u '+%Y-%m-%d %H:%M UTC')"
# The test's lines: "restart: kill to live 353ms, to audio at the listener
# 511ms, to the tone at the listener 2.216s" and "recording: 5.2335s decoded
# by ffmpeg; live 1.93s before the kill, 3.33s after the restart, 5.60s in
# all"; Go prints these durations in ms or s.
grep -oE '(restart: kill to live|recording: ).*' "$log" | awk '
function ms(v) { return v ~ /ms$/ ? v + 0 : (v ~ /µs$/ ? v / 1000 : v * 1000) }
function report(name, a, n,   i, j, t) {
	for (i = 2; i <= n; i++) for (j = i; j > 1 && a[j-1] > a[j]; j--) { t = a[j]; a[j] = a[j-1]; a[j-1] = t }
	printf "%-40s p50 %6.0f ms   p99 %6.0f ms   max %6.0f ms\n", name, a[int((n + 1) / 2)], a[n - int(n / 100)], a[n]
}
{ gsub(/[,;]/, "") }
$1 == "restart:" { n++; live[n] = ms($5); audio[n] = ms($11); tone[n] = ms($18) }
$1 == "recording:" { m++; gap[m] = ms($15) - ms($2) }
END {
	report("kill -> space on air again", live, n)
	report("kill -> audio at the listener", audio, n)
	report("kill -> tone at the listener", tone, n)
	report("recording: time live less audio in it", gap, m)
}'
