package bus_test

import (
	"errors"
	"testing"

	"github.com/amphi-audio/amphi/internal/bus"
)

// openWithKnobs opens an embedded bus whose publishes go through knobs.
func openWithKnobs(t *testing.T, knobs bus.Knobs) *bus.Bus {
	t.Helper()
	cfg := testConfig()
	cfg.Knobs = knobs
	b, err := bus.Open(t.Context(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	return b
}

func TestPublishKnobFailsAndCountsPublishes(t *testing.T) {
	errDown := errors.New("connection closed")
	b := openWithKnobs(t, bus.Knobs{Publish: func(id string) error {
		if id == "down" {
			return errDown
		}
		return nil
	}})
	rc := subscribe(t, b)
	flush(t, b)
	cs := program1(t, 5)
	for _, c := range cs {
		if err := b.PublishChunk("down", c); !errors.Is(err, errDown) {
			t.Fatalf("publish to a failing space: %v, want the injected error", err)
		}
		if err := b.PublishChunk("up", c); err != nil {
			t.Fatal(err)
		}
	}
	rc.wait(t, len(cs))
	flush(t, b)
	rc.mu.Lock()
	defer rc.mu.Unlock()
	if len(rc.chunks["down"]) != 0 || len(rc.chunks["up"]) != len(cs) {
		t.Errorf("received %d chunks of the failing space and %d of the other, want 0 and %d", len(rc.chunks["down"]), len(rc.chunks["up"]), len(cs))
	}
	if b.PublishErrors() != uint64(len(cs)) {
		t.Errorf("PublishErrors %d, want %d", b.PublishErrors(), len(cs))
	}
}

func TestPartitionKnobDropsChunksSilently(t *testing.T) {
	cut := true
	b := openWithKnobs(t, bus.Knobs{Partition: func(string) bool { return cut }})
	rc := subscribe(t, b)
	flush(t, b)
	cs := program1(t, 6)
	for i, c := range cs {
		cut = i < 3 // the first three go into the partition
		if err := b.PublishChunk("s", c); err != nil {
			t.Fatalf("chunk %d: %v; a partition is silent", i, err)
		}
	}
	rc.wait(t, 3)
	flush(t, b)
	rc.mu.Lock()
	defer rc.mu.Unlock()
	got := rc.chunks["s"]
	if len(got) != 3 || got[0].Seq != cs[3].Seq {
		t.Errorf("received %d chunks, the first seq %d; want the last 3 from seq %d", len(got), got[0].Seq, cs[3].Seq)
	}
	if b.PublishErrors() != 0 {
		t.Errorf("PublishErrors %d: a partition is not seen by the publisher", b.PublishErrors())
	}
}
