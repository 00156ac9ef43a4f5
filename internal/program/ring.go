package program

import (
	"sync/atomic"
)

// Ring keeps the newest chunks of one program in memory. One goroutine
// publishes; any number read without locks, each with its own position.
type Ring struct {
	headers []byte
	slots   []atomic.Pointer[Chunk]
	mask    uint64
	next    atomic.Uint64 // sequence number after the newest chunk
	ended   atomic.Bool
	notify  atomic.Pointer[chan struct{}]
	filling atomic.Int32 // fetches of missed chunks under way (Filling)
}

// NewRing returns a ring that keeps at least capacity chunks (rounded up to
// a power of two) after the given header pages.
func NewRing(headers []byte, capacity int) *Ring {
	n := 1
	for n < capacity {
		n <<= 1
	}
	r := &Ring{headers: headers, slots: make([]atomic.Pointer[Chunk], n), mask: uint64(n - 1)}
	ch := make(chan struct{})
	r.notify.Store(&ch)
	return r
}

// Headers returns the OpusHead and OpusTags pages. Callers must not modify
// them.
func (r *Ring) Headers() []byte { return r.headers }

// Publish adds c and wakes the readers. Chunks may skip sequence numbers
// (lost on the bus) but never go back: an old or duplicate chunk is ignored
// and Publish reports false.
func (r *Ring) Publish(c *Chunk) bool {
	if r.ended.Load() || c.Seq < r.next.Load() {
		return false
	}
	r.slots[c.Seq&r.mask].Store(c)
	r.next.Store(c.Seq + 1)
	if c.End {
		r.ended.Store(true)
	}
	r.wake()
	return true
}

// wake wakes the readers waiting on Wait.
func (r *Ring) wake() {
	ch := make(chan struct{})
	close(*r.notify.Swap(&ch))
}

// Fill puts back a chunk that was missed on the way (its sequence number
// was skipped) and wakes the readers; readers hold at a recent hole for a
// while (edge) so that a fetched chunk lands before they reach it. It
// reports false for a chunk that is not a hole in the ring: too old, not
// yet published, or already there. Fill may run beside Publish.
func (r *Ring) Fill(c *Chunk) bool {
	next := r.next.Load()
	if c.Seq >= next || c.Seq < r.Oldest() {
		return false
	}
	slot := &r.slots[c.Seq&r.mask]
	old := slot.Load()
	// A newer chunk in the slot means Publish went round meanwhile; the
	// swap fails too if Publish stores between the load and the swap.
	if (old != nil && old.Seq >= c.Seq) || !slot.CompareAndSwap(old, c) {
		return false
	}
	r.wake()
	return true
}

// Filling marks a fetch of missed chunks as under way (+1) or over (-1).
// While one is, readers hold at a hole rather than skip it; one ending
// wakes them, to go on past what it did not fill.
func (r *Ring) Filling(delta int32) {
	r.filling.Add(delta)
	if delta < 0 {
		r.wake()
	}
}

// Holding reports whether a hole may still be filled: a fetch is under
// way and the program has not ended.
func (r *Ring) Holding() bool { return r.filling.Load() > 0 && !r.ended.Load() }

// Next returns the sequence number the next chunk will have: the newest
// chunk's plus one, or 0 while the ring is empty.
func (r *Ring) Next() uint64 { return r.next.Load() }

// Oldest returns the sequence number of the oldest chunk that may still be in
// the ring.
func (r *Ring) Oldest() uint64 {
	next := r.next.Load()
	if size := uint64(len(r.slots)); next > size {
		return next - size
	}
	return 0
}

// Get returns the chunk with sequence number seq, or nil if it never arrived
// or was overwritten.
func (r *Ring) Get(seq uint64) *Chunk {
	c := r.slots[seq&r.mask].Load()
	if c == nil || c.Seq != seq {
		return nil
	}
	return c
}

// Ended reports whether the last chunk of the program was published.
func (r *Ring) Ended() bool { return r.ended.Load() }

// Wait returns a channel closed when the next chunk is published. To not miss
// one, call Wait before checking Next.
func (r *Ring) Wait() <-chan struct{} { return *r.notify.Load() }
