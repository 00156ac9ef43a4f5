package ops

import (
	"cmp"
	"encoding/binary"
	"math/bits"
	"math/rand/v2"
	"net/netip"
	"slices"
	"sync"
)

// DefaultTopK is how many prefixes a TopPrefixes tracks when asked for none:
// enough to name every source of a flood worth naming, small enough that an
// Add touches a few cache lines.
const DefaultTopK = 64

// PrefixCount is one source prefix and how many refusals it drew.
type PrefixCount struct {
	Prefix netip.Prefix `json:"prefix"`
	// Count may overestimate the true count by at most Error (space-saving
	// gives every newcomer the count of the entry it evicts).
	Count uint64 `json:"count"`
	Error uint64 `json:"error"`
	// Share is Count over all refusals added in the same windows.
	Share float64 `json:"share"`
}

// TopPrefixes counts the heaviest source prefixes of refusals with the
// space-saving algorithm (Metwally et al., 2005): K counters, and a prefix
// that holds more than 1/K of the adds is always among them. It keeps two
// windows, the one in progress and the last complete one; Rotate starts a
// new window, so Top shows who floods now rather than since boot. The
// Monitor rotates it every Window. It is safe for concurrent use; Add takes
// one mutex and allocates nothing.
type TopPrefixes struct {
	mu        sync.Mutex
	cur, prev *ssTable
}

// NewTopPrefixes returns a counter of the k heaviest prefixes per window.
// k <= 0 means DefaultTopK.
func NewTopPrefixes(k int) *TopPrefixes {
	if k <= 0 {
		k = DefaultTopK
	}
	seed := rand.Uint64()
	return &TopPrefixes{cur: newSSTable(k, seed), prev: newSSTable(k, seed)}
}

// Add counts one refusal from prefix p. Addresses inside the prefix are
// masked off, so any address of a /24 counts for the /24. An invalid prefix
// is ignored.
func (t *TopPrefixes) Add(p netip.Prefix) {
	if !p.IsValid() {
		return
	}
	p = p.Masked()
	t.mu.Lock()
	t.cur.add(p)
	t.mu.Unlock()
}

// Rotate ends the window in progress: it becomes the last complete one and
// the one before it is forgotten.
func (t *TopPrefixes) Rotate() {
	t.mu.Lock()
	t.prev, t.cur = t.cur, t.prev
	t.cur.reset()
	t.mu.Unlock()
}

// Total returns the refusals added in the window in progress and the last
// complete one.
func (t *TopPrefixes) Total() uint64 {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.cur.total + t.prev.total
}

// Top returns the n heaviest prefixes of the window in progress and the
// last complete one together, heaviest first. n <= 0 means all tracked.
func (t *TopPrefixes) Top(n int) []PrefixCount {
	t.mu.Lock()
	all := make([]PrefixCount, 0, len(t.cur.entries)+len(t.prev.entries))
	for _, e := range t.prev.entries {
		all = append(all, PrefixCount{Prefix: e.p, Count: e.count, Error: e.err})
	}
	for _, e := range t.cur.entries {
		if i := t.prev.find(e.p); i >= 0 {
			// Entries of prev were appended in prev's order, so
			// prev's index is the index in all.
			all[i].Count += e.count
			all[i].Error += e.err
			continue
		}
		all = append(all, PrefixCount{Prefix: e.p, Count: e.count, Error: e.err})
	}
	total := t.cur.total + t.prev.total
	t.mu.Unlock()

	slices.SortFunc(all, func(a, b PrefixCount) int {
		if c := cmp.Compare(b.Count, a.Count); c != 0 {
			return c
		}
		return a.Prefix.Addr().Compare(b.Prefix.Addr())
	})
	if n > 0 && len(all) > n {
		all = all[:n]
	}
	for i := range all {
		if total > 0 {
			all[i].Share = float64(all[i].Count) / float64(total)
		}
	}
	return all
}

// ssTable is one window of space-saving counters: a min-heap of entries by
// count, so the entry to evict is at the root, and an open-addressing index
// from prefix to heap position. Both are sized once; nothing allocates
// after newSSTable.
type ssTable struct {
	k       int
	entries []ssEntry // min-heap by count
	slots   []int32   // index into entries, or -1; linear probing
	mask    uint64
	seed    uint64
	total   uint64
}

type ssEntry struct {
	p     netip.Prefix
	count uint64
	err   uint64
	hash  uint64 // of p, kept for probing and for backward shifts
	slot  int32  // where slots points back at this entry
}

func newSSTable(k int, seed uint64) *ssTable {
	// A load factor of at most 1/4 keeps probe sequences short.
	n := 1 << bits.Len(uint(4*k-1))
	t := &ssTable{k: k, entries: make([]ssEntry, 0, k), slots: make([]int32, n), mask: uint64(n - 1), seed: seed}
	t.reset()
	return t
}

func (t *ssTable) reset() {
	for i := range t.slots {
		t.slots[i] = -1
	}
	t.entries = t.entries[:0]
	t.total = 0
}

// hash mixes the prefix's address and length with the table's random seed,
// so a flooder cannot choose prefixes that collide.
func (t *ssTable) hash(p netip.Prefix) uint64 {
	a := p.Addr().As16()
	hi := binary.BigEndian.Uint64(a[:8])
	lo := binary.BigEndian.Uint64(a[8:])
	return mix64(hi^t.seed) ^ mix64(lo^uint64(p.Bits())<<1^bits.RotateLeft64(t.seed, 31))
}

// mix64 is the finalizer of MurmurHash3.
func mix64(x uint64) uint64 {
	x ^= x >> 33
	x *= 0xff51afd7ed558ccd
	x ^= x >> 33
	x *= 0xc4ceb9fe1a85ec53
	x ^= x >> 33
	return x
}

// lookup returns the slot holding p, whose hash is h, or the empty slot
// where it would go, and whether it was found.
func (t *ssTable) lookup(p netip.Prefix, h uint64) (uint64, bool) {
	for s := h & t.mask; ; s = (s + 1) & t.mask {
		i := t.slots[s]
		if i < 0 {
			return s, false
		}
		if e := &t.entries[i]; e.hash == h && e.p == p {
			return s, true
		}
	}
}

// find returns p's index in entries, or -1.
func (t *ssTable) find(p netip.Prefix) int {
	s, ok := t.lookup(p, t.hash(p))
	if !ok {
		return -1
	}
	return int(t.slots[s])
}

func (t *ssTable) add(p netip.Prefix) {
	t.total++
	h := t.hash(p)
	s, ok := t.lookup(p, h)
	if ok {
		i := int(t.slots[s])
		t.entries[i].count++
		t.down(i)
		return
	}
	if len(t.entries) < t.k {
		i := len(t.entries)
		t.entries = append(t.entries, ssEntry{p: p, count: 1, hash: h, slot: int32(s)})
		t.slots[s] = int32(i)
		t.up(i)
		return
	}
	// Evict the least counted prefix; the newcomer inherits its count,
	// which bounds how much the newcomer's count can be overestimated.
	least := t.entries[0].count
	t.unslot(uint64(t.entries[0].slot))
	s, _ = t.lookup(p, h) // the removal may have shifted p's empty slot
	t.entries[0] = ssEntry{p: p, count: least + 1, err: least, hash: h, slot: int32(s)}
	t.slots[s] = 0
	t.down(0)
}

// unslot empties slot s, shifting later entries of its probe run back so
// lookups never stop early (deletion without tombstones).
func (t *ssTable) unslot(s uint64) {
	t.slots[s] = -1
	for j := (s + 1) & t.mask; t.slots[j] >= 0; j = (j + 1) & t.mask {
		i := t.slots[j]
		home := t.entries[i].hash & t.mask
		// Move entry j into the hole s unless its home lies cyclically
		// in (s, j], where it can still be found.
		if (j > s && (home <= s || home > j)) || (j < s && home <= s && home > j) {
			t.slots[s] = i
			t.entries[i].slot = int32(s)
			t.slots[j] = -1
			s = j
		}
	}
}

// place puts e at heap position i and points its slot there.
func (t *ssTable) place(i int, e ssEntry) {
	t.entries[i] = e
	t.slots[e.slot] = int32(i)
}

// up and down restore the heap order after entry i's count changed. They
// move the entry through a hole instead of swapping: one copy per level.
func (t *ssTable) up(i int) {
	e := t.entries[i]
	for i > 0 {
		parent := (i - 1) / 2
		if t.entries[parent].count <= e.count {
			break
		}
		t.place(i, t.entries[parent])
		i = parent
	}
	t.place(i, e)
}

func (t *ssTable) down(i int) {
	n := len(t.entries)
	if 2*i+1 >= n {
		return // a leaf: where the heaviest prefixes settle
	}
	e := t.entries[i]
	for {
		l := 2*i + 1
		if l >= n {
			break
		}
		least := l
		if r := l + 1; r < n && t.entries[r].count < t.entries[l].count {
			least = r
		}
		if e.count <= t.entries[least].count {
			break
		}
		t.place(i, t.entries[least])
		i = least
	}
	t.place(i, e)
}
