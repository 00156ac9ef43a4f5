# Targets a newcomer can guess. The README's two commands are scripts/run.sh
# and scripts/test.sh; these wrap them and the rest.
.PHONY: run build test bench fuzz lint

run:
	scripts/run.sh

build:
	go build -o bin/amphi ./cmd/amphi

test:
	scripts/test.sh

bench:
	go test -run '^$$' -bench . -benchmem ./...

# Each fuzz target for 30 s; corpora are kept in testdata/fuzz.
fuzz:
	go test -run '^$$' -fuzz FuzzReader -fuzztime 30s ./internal/ogg
	go test -run '^$$' -fuzz FuzzRead -fuzztime 30s ./internal/wav
	go test -run '^$$' -fuzz FuzzParseOffer -fuzztime 30s ./internal/stage
	go test -run '^$$' -fuzz FuzzStatusError -fuzztime 30s ./internal/whip

lint:
	test -z "$$(gofmt -l $$(git ls-files '*.go'))"
	go vet ./...
