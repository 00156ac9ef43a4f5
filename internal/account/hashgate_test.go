package account

import (
	"context"
	"testing"
	"time"

	"github.com/amphi-audio/amphi"
)

func TestHashGateRunsItsLimitQueuesTheNextAndRefusesTheRest(t *testing.T) {
	g := newHashGate(2, 1, time.Hour)
	release := make(chan struct{})
	started := make(chan struct{}, 3)
	done := make(chan error, 3)
	for range 2 {
		go func() { done <- g.do(t.Context(), func() { started <- struct{}{}; <-release }) }()
	}
	<-started
	<-started
	// The third waits in the queue: it runs once a slot frees.
	go func() { done <- g.do(t.Context(), func() { started <- struct{}{} }) }()
	for len(g.admitted) < 3 {
		time.Sleep(time.Millisecond)
	}
	// The fourth finds the queue full.
	if err := g.do(t.Context(), func() { t.Error("ran past the queue") }); amphi.ErrorCode(err) != amphi.EUnavailable {
		t.Fatalf("fourth: %v, want unavailable", err)
	}
	close(release)
	for range 3 {
		if err := <-done; err != nil {
			t.Fatal(err)
		}
	}
	if st := g.stats(); st.Limit != 2 || st.Peak != 2 || st.Running != 0 || st.Hashes != 3 || st.Refused != 1 {
		t.Fatalf("stats %+v, want limit 2, peak 2, 3 hashes, 1 refused", st)
	}
}

func TestHashGateGivesUpAtItsDeadlineOrWhenTheCallerLeaves(t *testing.T) {
	g := newHashGate(1, 4, 50*time.Millisecond)
	release := make(chan struct{})
	defer close(release)
	busy := make(chan struct{})
	go g.do(context.Background(), func() { close(busy); <-release })
	<-busy
	if err := g.do(t.Context(), func() { t.Error("ran without a slot") }); amphi.ErrorCode(err) != amphi.EUnavailable {
		t.Fatalf("after the deadline: %v, want unavailable", err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	g.wait = time.Hour
	if err := g.do(ctx, func() { t.Error("ran without a slot") }); amphi.ErrorCode(err) != amphi.EUnavailable {
		t.Fatalf("caller gone: %v, want unavailable", err)
	}
}

func TestHashSlotsKeepHashingMemoryUnderTheBudget(t *testing.T) {
	for _, mem := range []uint32{64, 19 * 1024, 64 * 1024, 1 << 20} {
		n := hashSlots(Params{Memory: mem})
		if n < 1 || (n > 1 && n*int(mem)<<10 > hashMemoryBudget) {
			t.Errorf("m=%d KiB: %d slots, %d MiB", mem, n, n*int(mem)>>10)
		}
	}
}
