package gate

import (
	"context"
	"net/netip"
	"testing"
	"time"
)

func BenchmarkVerifyValid(b *testing.B) {
	s := newTestSigner(b)
	tok := mustIssue(b, s, Ticket{Space: "k3v7q2m9x4b8n6c1", Place: PlaceID(NewListenerID()), Expires: t0.Add(time.Hour)})
	b.ReportAllocs()
	for b.Loop() {
		if _, err := s.Verify(tok, "k3v7q2m9x4b8n6c1", t0); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkVerifyForged(b *testing.B) {
	s := newTestSigner(b)
	tok := mustIssue(b, s, Ticket{Space: "k3v7q2m9x4b8n6c1", Place: PlaceID(NewListenerID()), Expires: t0.Add(time.Hour)})
	forged := tok[:len(tok)-2] + "AA"
	b.ReportAllocs()
	for b.Loop() {
		if _, err := s.Verify(forged, "k3v7q2m9x4b8n6c1", t0); err == nil {
			b.Fatal("accepted")
		}
	}
}

func BenchmarkVerifyGarbage(b *testing.B) {
	s := newTestSigner(b)
	for _, tc := range []struct{ name, tok string }{
		{"WrongLength", "not-a-ticket"},
		{"BadBase64", "!" + string(make([]byte, 75))},
	} {
		b.Run(tc.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := s.Verify(tc.tok, "k3v7q2m9x4b8n6c1", t0); err == nil {
					b.Fatal("accepted")
				}
			}
		})
	}
}

func BenchmarkVerifyParallel(b *testing.B) {
	s := newTestSigner(b)
	tok := mustIssue(b, s, Ticket{Space: "k3v7q2m9x4b8n6c1", Place: PlaceID(NewListenerID()), Expires: t0.Add(time.Hour)})
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			s.Verify(tok, "k3v7q2m9x4b8n6c1", t0)
		}
	})
}

func BenchmarkIssue(b *testing.B) {
	s := newTestSigner(b)
	tk := Ticket{Space: "k3v7q2m9x4b8n6c1", Place: PlaceID(NewListenerID()), Expires: t0.Add(time.Hour)}
	b.ReportAllocs()
	for b.Loop() {
		s.Issue(tk)
	}
}

func BenchmarkSolve16(b *testing.B) {
	s := newTestSigner(b)
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		b.StopTimer()
		c := mustChallenge(b, s, "k3v7q2m9x4b8n6c1", 16, t0)
		b.StartTimer()
		if _, err := Solve(ctx, c); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkVerifySolution(b *testing.B) {
	cfg := DefaultSignerConfig()
	cfg.ReplayEntries = 1 << 30
	s, _ := NewSignerConfig(cfg, testKey(0))
	const n = 4096
	cs, ns := make([]string, n), make([]string, n)
	for i := range cs {
		cs[i] = mustChallenge(b, s, "sp", 4, t0)
		ns[i] = mustSolve(b, cs[i])
	}
	b.Run("Accepted", func(b *testing.B) {
		b.ReportAllocs()
		i := n // fresh challenges first: a previous run redeemed these
		for b.Loop() {
			if i == n {
				b.StopTimer()
				for j := range cs {
					cs[j] = mustChallenge(b, s, "sp", 4, t0)
					ns[j] = mustSolve(b, cs[j])
				}
				i = 0
				b.StartTimer()
			}
			if err := s.VerifySolution(cs[i], ns[i], "sp", 0, t0); err != nil {
				b.Fatal(err)
			}
			i++
		}
	})
	b.Run("WrongAnswer", func(b *testing.B) {
		c := mustChallenge(b, s, "sp", 20, t0)
		w := wrongNonce(c, 20)
		b.ReportAllocs()
		for b.Loop() {
			s.VerifySolution(c, w, "sp", 0, t0)
		}
	})
}

func BenchmarkSourceLimiterAllow(b *testing.B) {
	b.Run("KnownSource", func(b *testing.B) {
		l := NewSourceLimiter(LimiterConfig{SourceRate: 1e12, SourceBurst: 1 << 30, PrefixRate: 1e12, PrefixBurst: 1 << 30})
		addrs := make([]netip.Addr, 1024)
		for i := range addrs {
			addrs[i] = netip.AddrFrom4([4]byte{198, 51, byte(i >> 8), byte(i)})
		}
		b.ReportAllocs()
		i := 0
		for b.Loop() {
			l.Allow(addrs[i&1023], t0)
			i++
		}
	})
	b.Run("RotatingIPv6", func(b *testing.B) {
		l := NewSourceLimiter(LimiterConfig{SourceRate: 1, PrefixRate: 10, Entries: 1 << 14})
		var a [16]byte
		a[0] = 0x20
		b.ReportAllocs()
		i := 0
		for b.Loop() {
			a[4], a[5], a[6], a[15] = byte(i>>16), byte(i>>8), byte(i), byte(i)
			l.Allow(netip.AddrFrom16(a), t0)
			i++
		}
	})
}

func BenchmarkRoomJoin(b *testing.B) {
	// A full room: every Join queues (the flash-crowd case).
	cfg := DefaultRoomConfig()
	cfg.MaxListeners, cfg.MaxWaiting = 1, 1<<30
	r := NewRoom(cfg, NewCapacity(CapacityConfig{}))
	r.Join("inside", TierAnonymous, t0)
	ids := make([]string, 1<<20)
	for i := range ids {
		ids[i] = NewListenerID()
	}
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		r.Join(ids[i&(1<<20-1)], TierAnonymous, t0)
		i++
	}
}

func BenchmarkRoomPoll(b *testing.B) {
	// 100 000 waiters polling their positions.
	cfg := DefaultRoomConfig()
	cfg.MaxListeners = 1
	r := NewRoom(cfg, NewCapacity(CapacityConfig{}))
	r.Join("inside", TierAnonymous, t0)
	const n = 100_000
	ids := make([]string, n)
	for i := range ids {
		ids[i] = NewListenerID()
		r.Join(ids[i], TierAnonymous, t0)
	}
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		if r.Poll(ids[i%n], t0).Verdict != Waiting {
			b.Fatal("not waiting")
		}
		i++
	}
}
