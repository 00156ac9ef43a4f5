package program

import (
	"bytes"
	"sync"
	"testing"
	"time"
)

func chunk(seq uint64, end bool) *Chunk {
	return &Chunk{Seq: seq, End: end, Page: []byte{byte(seq)}}
}

func closed(ch <-chan struct{}) bool {
	select {
	case <-ch:
		return true
	default:
		return false
	}
}

func TestRingRoundsCapacityUpToPowerOfTwo(t *testing.T) {
	for _, tt := range []struct{ capacity, want int }{{0, 1}, {1, 1}, {3, 4}, {8, 8}, {300, 512}} {
		r := NewRing(nil, tt.capacity)
		if len(r.slots) != tt.want {
			t.Errorf("NewRing(%d) keeps %d, want %d", tt.capacity, len(r.slots), tt.want)
		}
	}
}

func TestRingGetReturnsPublishedChunks(t *testing.T) {
	h := Headers(testSerial)
	r := NewRing(h, 8)
	if !bytes.Equal(r.Headers(), h) {
		t.Error("Headers differ")
	}
	if r.Next() != 0 || r.Oldest() != 0 || r.Get(0) != nil || r.Ended() {
		t.Fatal("empty ring not empty")
	}
	for seq := range uint64(5) {
		c := chunk(seq, false)
		if !r.Publish(c) {
			t.Fatalf("Publish(%d) refused", seq)
		}
		if r.Get(seq) != c {
			t.Fatalf("Get(%d) is not the published chunk", seq)
		}
	}
	if r.Next() != 5 || r.Oldest() != 0 {
		t.Errorf("Next %d Oldest %d, want 5 0", r.Next(), r.Oldest())
	}
	if r.Get(5) != nil || r.Get(13) != nil {
		t.Error("Get of an unpublished seq returned a chunk")
	}
}

func TestRingReaderSkipsOverwrittenChunks(t *testing.T) {
	r := NewRing(nil, 4)
	for seq := range uint64(10) {
		r.Publish(chunk(seq, false))
	}
	if r.Next() != 10 || r.Oldest() != 6 {
		t.Fatalf("Next %d Oldest %d, want 10 6", r.Next(), r.Oldest())
	}
	for seq := range uint64(10) {
		got := r.Get(seq)
		if seq < 6 && got != nil {
			t.Errorf("Get(%d) returned chunk %d, overwritten", seq, got.Seq)
		}
		if seq >= 6 && (got == nil || got.Seq != seq) {
			t.Errorf("Get(%d) = %v", seq, got)
		}
	}
}

func TestRingPublishIgnoresOldAndDuplicateChunks(t *testing.T) {
	r := NewRing(nil, 8)
	first := chunk(3, false)
	r.Publish(first)
	for _, seq := range []uint64{3, 2, 0} {
		if r.Publish(chunk(seq, false)) {
			t.Errorf("Publish(%d) after 3 accepted", seq)
		}
	}
	if r.Get(3) != first || r.Next() != 4 {
		t.Error("an ignored chunk replaced the first")
	}
}

func TestRingToleratesGaps(t *testing.T) {
	r := NewRing(nil, 8)
	r.Publish(chunk(0, false))
	r.Publish(chunk(1, false))
	if !r.Publish(chunk(9, false)) { // 2 to 8 lost on the bus
		t.Fatal("Publish after a gap refused")
	}
	if r.Next() != 10 || r.Oldest() != 2 {
		t.Errorf("Next %d Oldest %d, want 10 2", r.Next(), r.Oldest())
	}
	// Slot 1 still holds chunk 1, which seq 9 did not replace; seq 1 is
	// older than Oldest but Get answers by seq, and nothing maps 2..8.
	for seq := uint64(2); seq < 9; seq++ {
		if r.Get(seq) != nil {
			t.Errorf("Get(%d) of a lost chunk returned one", seq)
		}
	}
	if r.Get(9) == nil {
		t.Error("Get(9) = nil")
	}
}

func TestRingWaitIsClosedByNextPublish(t *testing.T) {
	r := NewRing(nil, 4)
	w := r.Wait()
	if closed(w) {
		t.Fatal("Wait closed before any Publish")
	}
	if r.Wait() != w {
		t.Fatal("two Waits without a Publish differ")
	}
	r.Publish(chunk(0, false))
	if !closed(w) {
		t.Fatal("Wait not closed by Publish")
	}
	w2 := r.Wait()
	if closed(w2) {
		t.Fatal("Wait after Publish already closed")
	}
	r.Publish(chunk(0, false)) // duplicate: ignored, wakes no one
	if closed(w2) {
		t.Error("an ignored Publish closed Wait")
	}
	r.Publish(chunk(1, false))
	if !closed(w2) {
		t.Error("second Publish did not close Wait")
	}
}

func TestRingEndsWithEndChunk(t *testing.T) {
	r := NewRing(nil, 4)
	r.Publish(chunk(0, false))
	if r.Ended() {
		t.Fatal("Ended before the End chunk")
	}
	w := r.Wait()
	r.Publish(chunk(1, true))
	if !r.Ended() || !closed(w) {
		t.Fatalf("Ended %v, Wait closed %v after End chunk", r.Ended(), closed(w))
	}
	if r.Publish(chunk(2, false)) {
		t.Error("Publish after the end accepted")
	}
	if r.Next() != 2 {
		t.Errorf("Next %d after end, want 2", r.Next())
	}
}

// TestRingReadersFollowOnePublisher runs under -race: readers that follow the
// ring as cursors see every chunk in order, or skip ahead when overwritten,
// and never see a chunk with the wrong sequence number.
func TestRingReadersFollowOnePublisher(t *testing.T) {
	const total = 3000
	r := NewRing(nil, 16)
	var wg sync.WaitGroup
	errs := make(chan string, 8)
	for range 4 {
		wg.Go(func() {
			var pos uint64
			seen := 0
			for {
				wait := r.Wait()
				next := r.Next()
				for ; pos < next; pos++ {
					if pos < r.Oldest() {
						pos = r.Oldest()
					}
					c := r.Get(pos)
					if c == nil {
						continue // overwritten between Oldest and Get
					}
					if c.Seq != pos || c.Page[0] != byte(pos) {
						errs <- "chunk with the wrong seq"
						return
					}
					seen++
					if c.End {
						if seen == 0 {
							errs <- "no chunk seen"
						}
						return
					}
				}
				if r.Ended() && pos >= r.Next() {
					return
				}
				select {
				case <-wait:
				case <-time.After(10 * time.Second):
					errs <- "reader stuck"
					return
				}
			}
		})
	}
	for seq := range uint64(total) {
		r.Publish(chunk(seq, seq == total-1))
		if seq%64 == 0 {
			time.Sleep(time.Millisecond) // let readers keep up at times
		}
	}
	wg.Wait()
	close(errs)
	for e := range errs {
		t.Error(e)
	}
}

func BenchmarkRingPublish(b *testing.B) {
	r := NewRing(nil, 512)
	chunks := make([]*Chunk, 512)
	for i := range chunks {
		chunks[i] = chunk(uint64(i), false)
	}
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		c := chunks[i%len(chunks)]
		c.Seq = uint64(i) // single goroutine: reusing chunks is safe here
		r.Publish(c)
	}
}

func BenchmarkRingGet(b *testing.B) {
	r := NewRing(nil, 512)
	for seq := range uint64(1000) {
		r.Publish(chunk(seq, false))
	}
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		if r.Get(uint64(600+i%400)) == nil {
			b.Fatal("nil")
		}
	}
}

func TestRingFillPutsBackOnlyHoles(t *testing.T) {
	r := NewRing(nil, 8)
	r.Publish(chunk(0, false))
	r.Publish(chunk(3, false)) // 1 and 2 lost
	wait := r.Wait()
	if !r.Fill(chunk(1, false)) || r.Get(1) == nil {
		t.Fatal("a hole was not filled")
	}
	if !closed(wait) {
		t.Error("a fill did not wake the readers")
	}
	for _, c := range []*Chunk{chunk(1, false), chunk(3, false), chunk(4, false)} {
		if r.Fill(c) {
			t.Errorf("filled chunk %d: already there, or not yet published", c.Seq)
		}
	}
	for seq := uint64(4); seq < 20; seq++ {
		r.Publish(chunk(seq, false))
	}
	if r.Fill(chunk(2, false)) || r.Get(2) != nil {
		t.Error("filled a chunk that left the ring")
	}
}

func TestRingHoldsHolesOnlyWhileAFillIsUnderWay(t *testing.T) {
	r := NewRing(nil, 8)
	if r.Holding() {
		t.Fatal("holding with no fill")
	}
	r.Filling(1)
	if !r.Holding() {
		t.Fatal("not holding during a fill")
	}
	wait := r.Wait()
	r.Filling(-1)
	if r.Holding() || !closed(wait) {
		t.Error("a fill's end did not release and wake the readers")
	}
	r.Filling(1)
	r.Publish(chunk(0, true))
	if r.Holding() {
		t.Error("holding after the end")
	}
}
