# Targets a newcomer can guess. The README's two commands are scripts/run.sh
# and scripts/test.sh; these wrap them and the rest.
.PHONY: run build test stress bench fuzz lint

run:
	scripts/run.sh

build:
	go build -o bin/amphi ./cmd/amphi

test:
	scripts/test.sh

# The whole suite STRESS_RUNS times (5) beside two CPU-burning processes.
STRESS_RUNS ?= 5
stress:
	scripts/stress-test.sh $(STRESS_RUNS)

bench:
	go test -run '^$$' -bench . -benchmem ./...

# Each fuzz target for FUZZTIME (30 s); corpora are kept in testdata/fuzz.
FUZZTIME ?= 30s
FUZZ = internal/gate:FuzzVerify internal/gate:FuzzVerifySolution internal/gate:FuzzClientAddr \
	internal/ogg:FuzzReader internal/ogg:FuzzAppendPackets internal/wav:FuzzRead internal/program:FuzzParseWire \
	internal/stage:FuzzParseOffer internal/whip:FuzzStatusError internal/mix:FuzzPacketSamples \
	internal/load:FuzzPageScanner internal/attack:FuzzParseStatusLine \
	internal/api:FuzzFreeText internal/api:FuzzCalendarText
fuzz:
	for t in $(FUZZ); do \
		go test -run '^$$' -fuzz "^$${t#*:}$$" -fuzztime $(FUZZTIME) ./$${t%%:*} || exit 1; \
	done

lint:
	test -z "$$(gofmt -l $$(git ls-files '*.go'))"
	go vet ./...
