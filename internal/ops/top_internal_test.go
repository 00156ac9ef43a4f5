package ops

import (
	"math/rand/v2"
	"net/netip"
	"testing"
)

// TestSpaceSavingTableKeepsItsInvariants drives evictions through a small
// table (tiny K, many distinct prefixes, colliding probe runs) and checks
// after each add that the heap and the open-addressing index agree: every
// entry is found from its slot, and the root is the least counted.
func TestSpaceSavingTableKeepsItsInvariants(t *testing.T) {
	for _, k := range []int{1, 2, 3, 8, 64} {
		tab := newSSTable(k, 12345)
		r := rand.New(rand.NewPCG(uint64(k), 9))
		for i := range 20_000 {
			p := netip.PrefixFrom(netip.AddrFrom4([4]byte{10, 0, byte(r.IntN(4 * k)), 0}), 24)
			if i%3 == 0 {
				p = netip.PrefixFrom(netip.AddrFrom4([4]byte{10, 1, byte(r.IntN(256)), byte(r.IntN(256))}), 32)
			}
			tab.add(p)
			if len(tab.entries) > k {
				t.Fatalf("k=%d: %d entries", k, len(tab.entries))
			}
			occupied := 0
			for s, idx := range tab.slots {
				if idx < 0 {
					continue
				}
				occupied++
				if int(tab.entries[idx].slot) != s {
					t.Fatalf("k=%d add %d: slot %d points at entry %d whose slot is %d", k, i, s, idx, tab.entries[idx].slot)
				}
			}
			if occupied != len(tab.entries) {
				t.Fatalf("k=%d add %d: %d slots for %d entries", k, i, occupied, len(tab.entries))
			}
			for j, e := range tab.entries {
				if tab.find(e.p) != j {
					t.Fatalf("k=%d add %d: entry %d (%v) not found", k, i, j, e.p)
				}
				if j > 0 && tab.entries[(j-1)/2].count > e.count {
					t.Fatalf("k=%d add %d: heap order broken at %d", k, i, j)
				}
			}
		}
	}
}
