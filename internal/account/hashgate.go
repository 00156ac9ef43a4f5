package account

import (
	"context"
	"runtime"
	"sync/atomic"
	"time"

	"github.com/amphi-audio/amphi"
)

// hashMemoryBudget is the memory argon2id may hold at once, in bytes: what a
// small server spares without swapping. Unbounded, 40 concurrent failed
// sign-ins at 19 MiB each took a server from 103 MB to 878 MB of RSS.
const hashMemoryBudget = 256 << 20

// Defaults of the queue in front of the hashing slots: a burst of sign-ins
// waits its turn for a few seconds rather than being refused at once.
const (
	defaultHashQueue = 64
	defaultHashWait  = 5 * time.Second
)

// errBusy refuses a sign-in or account creation that could not get a turn
// to hash; the API answers 503 with Retry-After.
var errBusy = amphi.Errorf(amphi.EUnavailable, "too many sign-ins at once: try again in a few seconds")

// hashSlots is the default bound on concurrent hashes with params p: one per
// core (at least two), fewer if their memory would pass hashMemoryBudget.
func hashSlots(p Params) int {
	return max(1, min(max(2, runtime.NumCPU()), hashMemoryBudget/(int(p.Memory)<<10)))
}

// HashStats is what the bound on password hashing has seen.
type HashStats struct {
	// Limit is how many hashes may run at once.
	Limit int
	// Running is how many run now; Peak the most that ever ran at once.
	Running, Peak int
	// Hashes counts hashes computed: one per sign-in, known email or not.
	Hashes uint64
	// Refused counts requests turned away: the queue was full, or the
	// turn did not come in time.
	Refused uint64
}

// hashGate lets a fixed number of argon2id computations run at once, each
// holding its memory parameter, and a bounded queue wait for a turn with a
// deadline, so a flood of sign-ins costs a known amount of memory.
type hashGate struct {
	slots    chan struct{} // one per running hash
	admitted chan struct{} // one per running or waiting hash
	wait     time.Duration

	running, peak   atomic.Int64
	hashes, refused atomic.Uint64
}

func newHashGate(slots, queue int, wait time.Duration) *hashGate {
	return &hashGate{slots: make(chan struct{}, slots), admitted: make(chan struct{}, slots+queue), wait: wait}
}

// do runs f once a slot is free, or fails with errBusy when the queue is
// full, the wait passes its deadline or ctx ends first.
func (g *hashGate) do(ctx context.Context, f func()) error {
	select {
	case g.admitted <- struct{}{}:
	default:
		g.refused.Add(1)
		return errBusy
	}
	defer func() { <-g.admitted }()
	t := time.NewTimer(g.wait)
	defer t.Stop()
	select {
	case g.slots <- struct{}{}:
	case <-t.C:
		g.refused.Add(1)
		return errBusy
	case <-ctx.Done(): // the client left: nobody reads the answer
		g.refused.Add(1)
		return errBusy
	}
	defer func() { <-g.slots }()
	n := g.running.Add(1)
	for p := g.peak.Load(); n > p && !g.peak.CompareAndSwap(p, n); p = g.peak.Load() {
	}
	defer g.running.Add(-1)
	g.hashes.Add(1)
	f()
	return nil
}

func (g *hashGate) stats() HashStats {
	return HashStats{Limit: cap(g.slots), Running: int(g.running.Load()), Peak: int(g.peak.Load()),
		Hashes: g.hashes.Load(), Refused: g.refused.Load()}
}
