package ops_test

import (
	"math/rand/v2"
	"net/netip"
	"sync"
	"testing"

	"github.com/amphi-audio/amphi/internal/ops"
)

func randomPrefix(r *rand.Rand) netip.Prefix {
	return netip.PrefixFrom(netip.AddrFrom4([4]byte{byte(r.IntN(256)), byte(r.IntN(256)), byte(r.IntN(256)), 0}), 24)
}

func TestTopPrefixesFindsTheFlooder(t *testing.T) {
	tests := []struct {
		name    string
		flooder netip.Prefix
	}{
		{"IPv4 /24", netip.MustParsePrefix("203.0.113.0/24")},
		{"IPv6 /48", netip.MustParsePrefix("2001:db8:42::/48")},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := rand.New(rand.NewPCG(1, 2))
			crowd := make([]netip.Prefix, 10_000)
			for i := range crowd {
				crowd[i] = randomPrefix(r)
			}
			top := ops.NewTopPrefixes(64)
			const adds = 100_000
			var want uint64
			for range adds {
				if r.Float64() < 0.3 {
					top.Add(tt.flooder)
					want++
				} else {
					top.Add(crowd[r.IntN(len(crowd))])
				}
			}
			got := top.Top(3)
			if len(got) != 3 || got[0].Prefix != tt.flooder {
				t.Fatalf("top %v, want %v first", got, tt.flooder)
			}
			// Space-saving overestimates by at most Error, never under.
			if got[0].Count < want || got[0].Count-got[0].Error > want {
				t.Errorf("count %d ± %d, true count %d", got[0].Count, got[0].Error, want)
			}
			if got[0].Share < 0.29 || got[0].Share > 0.31+float64(got[0].Error)/adds {
				t.Errorf("share %.3f, want about 0.3", got[0].Share)
			}
			if got[1].Share > 0.05 {
				t.Errorf("second prefix %v holds %.3f, want a crowd member's small share", got[1].Prefix, got[1].Share)
			}
			if top.Total() != adds {
				t.Errorf("total %d, want %d", top.Total(), adds)
			}
		})
	}
}

func TestTopPrefixesCountsAddressesOfAPrefixTogether(t *testing.T) {
	top := ops.NewTopPrefixes(4)
	top.Add(netip.MustParsePrefix("192.0.2.1/24"))
	top.Add(netip.MustParsePrefix("192.0.2.200/24"))
	top.Add(netip.Prefix{}) // ignored
	got := top.Top(0)
	if len(got) != 1 || got[0].Prefix != netip.MustParsePrefix("192.0.2.0/24") || got[0].Count != 2 {
		t.Fatalf("top %v, want 192.0.2.0/24 twice", got)
	}
}

func TestTopPrefixesShowsTheLastTwoWindows(t *testing.T) {
	top := ops.NewTopPrefixes(8)
	a := netip.MustParsePrefix("198.51.100.0/24")
	b := netip.MustParsePrefix("203.0.113.0/24")
	for range 10 {
		top.Add(a)
	}
	top.Rotate()
	for range 5 {
		top.Add(a)
		top.Add(b)
	}
	got := top.Top(0)
	if len(got) != 2 || got[0].Prefix != a || got[0].Count != 15 || got[1].Count != 5 {
		t.Fatalf("after one rotation: %v, want a 15, b 5", got)
	}
	top.Rotate()
	got = top.Top(0)
	if len(got) != 2 || got[0].Count != 5 || got[1].Count != 5 {
		t.Fatalf("after two rotations: %v, want a 5, b 5", got)
	}
	top.Rotate()
	if got := top.Top(0); len(got) != 0 || top.Total() != 0 {
		t.Fatalf("after three rotations: %v, want nothing", got)
	}
}

func TestTopPrefixesIsSafeForConcurrentUse(t *testing.T) {
	top := ops.NewTopPrefixes(16)
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Go(func() {
			r := rand.New(rand.NewPCG(uint64(g), 7))
			for i := range 5000 {
				top.Add(randomPrefix(r))
				if i%1000 == 0 {
					top.Top(5)
				}
			}
		})
	}
	wg.Go(func() {
		for range 10 {
			top.Rotate()
		}
	})
	wg.Wait()
	if n := len(top.Top(0)); n > 32 {
		t.Errorf("%d prefixes tracked, want at most 2 windows of 16", n)
	}
}

func BenchmarkTopPrefixesAdd(b *testing.B) {
	r := rand.New(rand.NewPCG(1, 2))
	flooder := netip.MustParsePrefix("203.0.113.0/24")
	stream := make([]netip.Prefix, 4096)
	for i := range stream {
		if r.Float64() < 0.3 {
			stream[i] = flooder
		} else {
			stream[i] = randomPrefix(r)
		}
	}
	top := ops.NewTopPrefixes(0)
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		top.Add(stream[i&4095])
		i++
	}
}

func BenchmarkTopPrefixesAddParallel(b *testing.B) {
	top := ops.NewTopPrefixes(0)
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		r := rand.New(rand.NewPCG(rand.Uint64(), 2))
		stream := make([]netip.Prefix, 1024)
		for i := range stream {
			stream[i] = randomPrefix(r)
		}
		i := 0
		for pb.Next() {
			top.Add(stream[i&1023])
			i++
		}
	})
}
