# Shared by the amphi-only benchmark scripts: sourced after `cd` to the
# repository root with $port set. Builds bin/amphi unless AMPHI_BIN names a
# binary, raises the open-files limit, and starts and stops one server.
out=${BENCH_OUT:-docs/bench}
bin=${AMPHI_BIN:-bin/amphi}
mkdir -p "$out"
if [ -z "${AMPHI_BIN:-}" ]; then
	scripts/deps.sh libopus-dev libopusfile-dev pkg-config jq curl
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

# The server's /ops and /metrics, which its main address does not serve.
ops_port=$((port + 1000))

# start_server NAME [SERVE FLAGS...]: a fresh server on $port (/ops on
# $ops_port), waited for.
start_server() {
	local name=$1
	shift
	"$bin" serve --addr 127.0.0.1:$port --ops-addr 127.0.0.1:$ops_port --data "$tmp/data-$name" --log warn "$@" >"$tmp/serve-$name.log" 2>&1 &
	server=$!
	for _ in $(seq 50); do curl -sf "http://127.0.0.1:$port/healthz" >/dev/null && return; sleep 0.1; done
	echo "the server did not start: $(cat "$tmp/serve-$name.log")" >&2
	exit 1
}

stop_server() {
	kill "$server"
	wait "$server" 2>/dev/null || true
	server=""
}
