#!/usr/bin/env bash
# Starts a three-node NATS cluster of `amphi nats` on loopback (clients on
# 127.0.0.1:4222-4224, routes on 6222-6224), for a rehearsal of scale-out on
# one machine, and prints the --nats list that `amphi serve` joins it with.
# The token and the cluster secret are kept in DIR (default ./nats-cluster),
# 0600. Ctrl-C stops the three; kill one (the pids are printed) to rehearse
# a node's death.
set -euo pipefail
cd "$(dirname "$0")/.."
dir=${1:-./nats-cluster}
mkdir -p bin "$dir"
go build -o bin/amphi ./cmd/amphi

pids=()
trap 'kill "${pids[@]}" 2>/dev/null; wait' EXIT
for i in 0 1 2; do
	routes=()
	for j in 0 1 2; do
		[ "$j" = "$i" ] || routes+=("nats-route://127.0.0.1:$((6222 + j))")
	done
	bin/amphi nats --name "n$((i + 1))" --listen "127.0.0.1:$((4222 + i))" \
		--cluster "127.0.0.1:$((6222 + i))" --routes "$(IFS=,; echo "${routes[*]}")" \
		--token-file "$dir/nats.token" --cluster-secret-file "$dir/nats-cluster.secret" &
	pids+=($!)
	# The first node makes the token and the secret; the others read them.
	until [ -s "$dir/nats-cluster.secret" ]; do sleep 0.1; done
done
echo "nodes n1 n2 n3: pids ${pids[*]}"
echo "join with:"
echo "  T=\$(cat $dir/nats.token)"
echo "  bin/amphi serve --nats \"nats://\$T@127.0.0.1:4222,nats://\$T@127.0.0.1:4223,nats://\$T@127.0.0.1:4224\""
wait
