#!/usr/bin/env bash
# Builds bin/amphi-static: amphi with libopus, libopusfile and libogg linked
# in and no shared library at all, for a machine without the packages (the
# benchmark `device` has no package registry). Debian's -dev packages ship
# the static archives; pkg-config --static gives their link order.
# Without libavcodec (the noaac tag): Debian's archive pulls in every codec
# library it was built with (x264, VA-API, X11…), which have no static
# archives, so this binary serves LL-HLS in Opus only.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/deps.sh libopus-dev libopusfile-dev libogg-dev pkg-config
wrapper=$(mktemp)
trap 'rm -f "$wrapper"' EXIT
printf '#!/bin/sh\nexec pkg-config --static "$@"\n' >"$wrapper"
chmod +x "$wrapper"
PKG_CONFIG=$wrapper CGO_ENABLED=1 go build -tags netgo,osusergo,noaac \
	-ldflags '-s -w -linkmode external -extldflags "-static -lopusfile -logg -lopus -lm"' -o bin/amphi-static ./cmd/amphi
echo "bin/amphi-static: $(du -h bin/amphi-static | cut -f1), $(file -b bin/amphi-static | cut -d, -f1-2)"
