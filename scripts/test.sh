#!/usr/bin/env bash
# Installs what the tests need (libopus, libavcodec for the AAC rendition,
# ffmpeg as an independent decoder,
# nginx as the cache in front of LL-HLS,
# Chromium for browser tests, an emoji font for their screenshots), checks
# formatting and vet, and runs every test. Extra arguments go to `go test`.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/deps.sh libopus-dev libopusfile-dev libavcodec-dev pkg-config gcc ffmpeg nginx chromium fonts-noto-color-emoji
unformatted=$(gofmt -l $(git ls-files '*.go'))
if [ -n "$unformatted" ]; then
	echo "gofmt would change:" $unformatted >&2
	exit 1
fi
go vet ./...
go test -timeout 12m "$@" ./...
