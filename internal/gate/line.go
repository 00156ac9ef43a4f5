package gate

import (
	"cmp"
	"encoding/json"
	"fmt"
	"maps"
	"math"
	"slices"
	"time"
)

// A space served by a fleet (an origin and its edges) has one waiting line
// however many doors it has: every node's waiters, in one order. Each node
// keeps its own queue and reports a summary of it every round: how many
// of its waiters of each tier arrived in each LineBucket. The origin merges
// the summaries in the fleet's order (higher tier first, then earlier
// bucket, then node name) and grants each node, for the next round, the
// admissions that fall to its waiters (Allot): the fleet admits its oldest
// waiters wherever they wait, and a space's cap and join rate hold across
// all its nodes. A waiter's position is its rank in its node's queue plus
// the waiters at other nodes served before it, as of the last round.

// LineBucket is the resolution of the fleet's order: waiters who arrive
// at different nodes within one bucket are served in node-name order.
const LineBucket = 100 * time.Millisecond

// maxLine bounds a node's summary of one space's line (about 20 bytes an
// entry). A line spread over more buckets (an hour and more of arrivals)
// reports its newest waiters as one entry with the key of the oldest of
// them, so positions deep in such a line are estimates.
const maxLine = 4096

// LineEntry counts one node's waiters of one tier who arrived within one
// LineBucket. It encodes as the JSON array [tier, bucket, n].
type LineEntry struct {
	Tier Tier
	// Bucket is the arrival time in LineBuckets since the Unix epoch;
	// math.MaxInt64 stands for "after everyone".
	Bucket int64
	N      int
}

// MarshalJSON encodes e as [tier, bucket, n]: a summary has thousands.
func (e LineEntry) MarshalJSON() ([]byte, error) {
	return json.Marshal([3]int64{int64(e.Tier), e.Bucket, int64(e.N)})
}

// UnmarshalJSON decodes [tier, bucket, n].
func (e *LineEntry) UnmarshalJSON(data []byte) error {
	var a [3]int64
	if err := json.Unmarshal(data, &a); err != nil {
		return err
	}
	if a[0] < 0 || a[0] >= int64(numTiers) || a[2] < 0 || a[2] > math.MaxInt32 {
		return fmt.Errorf("gate: line entry %v out of range", a)
	}
	*e = LineEntry{Tier: Tier(a[0]), Bucket: a[1], N: int(a[2])}
	return nil
}

// lineOrder orders line keys the way waiters are served: higher tier
// first, then earlier bucket.
func lineOrder(a, b LineEntry) int {
	if a.Tier != b.Tier {
		return cmp.Compare(b.Tier, a.Tier)
	}
	return cmp.Compare(a.Bucket, b.Bucket)
}

// NodeLine is one node's part in a space, reported every round.
type NodeLine struct {
	// Held is the places it holds (Room.Stats).
	Held int `json:"held"`
	// Line summarizes its waiters in the fleet's order (Room.Line).
	Line []LineEntry `json:"line,omitempty"`
	// Rate is its recent admissions per second.
	Rate float64 `json:"rate,omitempty"`
	// Round is the last grant it applied (Grant.Round).
	Round uint64 `json:"round,omitempty"`
}

// Waiting counts the waiters the line summarizes.
func (p NodeLine) Waiting() int {
	n := 0
	for _, e := range p.Line {
		n += e.N
	}
	return n
}

// Grant is what a node may do in a space until the next round.
type Grant struct {
	// Share is the places it may hold of the space's cap; -1: the space
	// has no cap across the fleet.
	Share int `json:"share"`
	// Admit is the admissions it may make; -1: no limit but the share.
	Admit int `json:"admit"`
	// Ahead says, for each entry of its line and last for each tier
	// (Bucket math.MaxInt64), how many waiters at other nodes are served
	// before its waiters of that entry.
	Ahead []LineEntry `json:"ahead,omitempty"`
	// Rate is the fleet's recent admissions per second in the space,
	// which ETAs divide positions by.
	Rate float64 `json:"rate,omitempty"`
	// Round numbers the grants of a space (Leases).
	Round uint64 `json:"round,omitempty"`
}

// NoGrant is a node's grant in a space without a fleet-wide limit.
var NoGrant = Grant{Share: -1, Admit: -1}

// FleetLimits are a space's limits across all its nodes.
type FleetLimits struct {
	// Cap is the most places held, 0 for none.
	Cap int `json:"cap,omitempty"`
	// Admit is the most admissions in one round, -1 for no limit: the
	// space's join rate times the round.
	Admit int `json:"admit"`
}

// Absent is the grant of a node the origin did not count in the round (a
// new edge, or one whose reports are late): no admissions, and no place
// beyond those it holds, until the next.
func (l FleetLimits) Absent() Grant {
	if l.Cap > 0 {
		return Grant{Share: 0, Admit: 0}
	}
	return Grant{Share: -1, Admit: 0}
}

// Allot grants every node its part of a space for one round: the
// admissions the round allows (the free places, and at most lim.Admit) go
// first to the oldest waiters of the fleet, wherever they wait, then to
// the nodes for newcomers, by their recent admissions; the places left after them are
// shared evenly too, so the shares add up to the cap, and listeners
// resuming from another node (Room.Resume) find a place. Nobody inside is
// evicted: a node keeps what it holds. A node that did not report gets
// nothing (Grants' zero value); nodes are ordered by name for ties.
func Allot(nodes map[string]NodeLine, lim FleetLimits) map[string]Grant {
	names := slices.Sorted(maps.Keys(nodes))
	held, rate := 0, 0.0
	for _, n := range names {
		held += nodes[n].Held
		rate += nodes[n].Rate
	}
	free := math.MaxInt
	if lim.Cap > 0 {
		free = max(lim.Cap-held, 0)
	}
	budget := free
	if lim.Admit >= 0 {
		budget = min(free, lim.Admit)
	}

	// The fleet's line: every node's entries in the serving order.
	type item struct {
		LineEntry
		node int
	}
	var line []item
	for i, n := range names {
		for _, e := range nodes[n].Line {
			line = append(line, item{e, i})
		}
	}
	slices.SortStableFunc(line, func(a, b item) int {
		if c := lineOrder(a.LineEntry, b.LineEntry); c != 0 {
			return c
		}
		return cmp.Compare(a.node, b.node)
	})
	// Walking the line: waiters met so far and how many of them stay
	// waiting after this round, all nodes' and each node's; admissions
	// left to grant.
	ahead := make([][]LineEntry, len(names))
	admit := make([]int, len(names))
	stay, ownStay := 0, make([]int, len(names))
	left := budget
	sentinels := func(tier Tier) {
		// The last entry of each tier: whoever arrives after the
		// summaries waits behind all of them.
		for i := range names {
			ahead[i] = append(ahead[i], LineEntry{Tier: tier, Bucket: math.MaxInt64, N: stay - ownStay[i]})
		}
	}
	tier := numTiers - 1
	for _, it := range line {
		for ; tier > it.Tier; tier-- {
			sentinels(tier)
		}
		// Those admitted this round are no longer ahead of anyone.
		ahead[it.node] = append(ahead[it.node], LineEntry{Tier: it.Tier, Bucket: it.Bucket, N: stay - ownStay[it.node]})
		take := min(it.N, left)
		admit[it.node] += take
		left -= take
		stay += it.N - take
		ownStay[it.node] += it.N - take
	}
	for ; ; tier-- {
		sentinels(tier)
		if tier == 0 {
			break
		}
	}

	grants := make(map[string]Grant, len(names))
	// Admissions no waiter took go where newcomers have been coming:
	// in proportion to each node's recent admissions, each getting some
	// so that a node the crowd turns to can start.
	demand := make([]int, len(names))
	for i, n := range names {
		demand[i] = 1 + int(min(nodes[n].Rate, 1e6))
	}
	walkIns := spreadBy(left, demand)
	var places []int // free places no admission took
	if lim.Cap > 0 {
		places = spread(free-budget, len(names))
	}
	// With a cap, admissions wait for the rounds too, so that a place
	// freed at one node goes to the fleet's next waiter, not its own;
	// a node alone needs no rounds for its cap.
	rounds := lim.Admit >= 0 || (lim.Cap > 0 && len(names) > 1)
	for i, n := range names {
		g := Grant{Share: -1, Admit: -1, Ahead: ahead[i], Rate: rate}
		if rounds {
			g.Admit = admit[i] + walkIns[i]
		}
		if lim.Cap > 0 {
			g.Share = nodes[n].Held + admit[i] + walkIns[i] + places[i]
		}
		grants[n] = g
	}
	return grants
}

// Leases allots a space's rounds (Allot) without counting a place twice.
// A node's report is up to a round old, so it may not show the places it
// took since under a share granted after it: a share is a lease on that
// many places until the node reports having applied a later grant. Until
// then the node counts as holding as much as any share it may be using,
// so no other node is granted the same places. The zero value is ready.
type Leases struct {
	round  uint64
	issued map[string][]lease // by node, oldest first
}

type lease struct {
	round uint64
	share int
}

// Allot is Allot for the next round, nodes' Held raised to what their
// unacknowledged shares allow, the grants numbered with the round.
func (l *Leases) Allot(nodes map[string]NodeLine, lim FleetLimits) map[string]Grant {
	l.round++
	if l.issued == nil {
		l.issued = make(map[string][]lease)
	}
	for n := range l.issued {
		if _, ok := nodes[n]; !ok {
			delete(l.issued, n) // gone: its places are free again
		}
	}
	held := make(map[string]NodeLine, len(nodes))
	for n, part := range nodes {
		ls := l.issued[n]
		for len(ls) > 0 && ls[0].round <= part.Round {
			ls = ls[1:] // applied before the report: its places are in Held
		}
		l.issued[n] = ls
		for _, x := range ls {
			part.Held = max(part.Held, x.share)
		}
		held[n] = part
	}
	grants := Allot(held, lim)
	for n, g := range grants {
		g.Round = l.round
		grants[n] = g
		if g.Share >= 0 {
			l.issued[n] = append(l.issued[n], lease{l.round, g.Share})
		}
	}
	return grants
}

// spread splits n evenly over k, the first ones getting the remainder;
// all zeros when n is unbounded (math.MaxInt): nothing to split.
func spread(n, k int) []int {
	even := make([]int, k)
	for i := range even {
		even[i] = 1
	}
	return spreadBy(n, even)
}

// spreadBy splits n over the weights (positive) by the largest
// remainders, ties to the first; all zeros when n is unbounded
// (math.MaxInt): nothing to split.
func spreadBy(n int, weights []int) []int {
	parts := make([]int, len(weights))
	if n == math.MaxInt || len(weights) == 0 {
		return parts
	}
	total := 0
	for _, w := range weights {
		total += w
	}
	rest := make([]int, len(weights))
	given := 0
	for i, w := range weights {
		parts[i], rest[i] = n*w/total, n*w%total
		given += parts[i]
	}
	order := make([]int, len(weights))
	for i := range order {
		order[i] = i
	}
	slices.SortStableFunc(order, func(a, b int) int { return cmp.Compare(rest[b], rest[a]) })
	for _, i := range order[:n-given] {
		parts[i]++
	}
	return parts
}
