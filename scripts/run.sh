#!/usr/bin/env bash
# Installs what the system lacks, builds amphi and serves with the embedded
# defaults (http://127.0.0.1:8080, data in ./amphi-data). Extra arguments go
# to `amphi serve`.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/deps.sh libopus-dev libopusfile-dev libavcodec-dev pkg-config gcc
mkdir -p bin
go build -o bin/amphi ./cmd/amphi
exec bin/amphi serve "$@"
