package gate

import (
	"math"
	"net/netip"
	"testing"
	"time"
)

func TestBucketAllowsBurstThenRate(t *testing.T) {
	b := NewBucket(10, 3)
	for i, st := range []struct {
		at   time.Duration
		want bool
	}{
		{0, true}, {0, true}, {0, true}, {0, false}, // burst of 3
		{50 * time.Millisecond, false}, // half a token
		{100 * time.Millisecond, true}, // one token per 100 ms
		{100 * time.Millisecond, false},
		{10 * time.Second, true}, {10 * time.Second, true}, {10 * time.Second, true}, // refills to burst, not beyond
		{10 * time.Second, false},
		{5 * time.Second, false}, // the clock went back: nothing refills
	} {
		if got := b.Allow(t0.Add(st.at)); got != st.want {
			t.Errorf("step %d at %v: Allow = %v, want %v", i, st.at, got, st.want)
		}
	}
	inf := NewBucket(math.Inf(1), 0)
	if !inf.Allow(t0) || !inf.Allow(t0) {
		t.Error("an infinite rate refused")
	}
	zero := NewBucket(0, 1)
	if !zero.Allow(t0) || zero.Allow(t0.Add(time.Hour)) {
		t.Error("a zero rate should allow its burst once and never refill")
	}
}

func TestSourceLimiterLimitsByAddressAndPrefix(t *testing.T) {
	l := NewSourceLimiter(LimiterConfig{SourceRate: 1, SourceBurst: 2, PrefixRate: 1, PrefixBurst: 5})
	a := netip.MustParseAddr
	for i, st := range []struct {
		addr   string
		ok     bool
		reason Refusal
	}{
		{"192.0.2.1", true, 0},
		{"192.0.2.1", true, 0},
		{"192.0.2.1", false, RefusalRateSource},        // address burst spent
		{"::ffff:192.0.2.1", false, RefusalRateSource}, // the same address, IPv4-mapped
		{"192.0.2.2", true, 0},
		{"192.0.2.3", true, 0},
		{"192.0.2.4", true, 0},
		{"192.0.2.5", false, RefusalRatePrefix}, // the /24's burst of 5 spent
		{"192.0.3.1", true, 0},                  // another /24
		{"2001:db8:0:1::1", true, 0},
		{"2001:db8:0:1::2", true, 0},
		{"2001:db8:0:1::3", true, 0},
		{"2001:db8:0:ff::4", true, 0}, // same /56 (0x00ff < 0x0100)
		{"2001:db8:0:2::5", true, 0},
		{"2001:db8:0:3::6", false, RefusalRatePrefix}, // a rotating IPv6 client in one /56
		{"2001:db8:0:100::1", true, 0},                // the next /56
	} {
		ok, reason := l.Allow(a(st.addr), t0)
		if ok != st.ok || reason != st.reason {
			t.Errorf("step %d %s: Allow = %v %v, want %v %v", i, st.addr, ok, reason, st.ok, st.reason)
		}
	}
	s := l.Stats()
	if s.Allowed != 12 {
		t.Errorf("Stats = %+v", s)
	}
	// A second later each bucket has one more token.
	if ok, _ := l.Allow(a("192.0.2.1"), t0.Add(time.Second)); !ok {
		t.Error("no refill after a second")
	}
}

func TestSourceLimiterMemoryIsBounded(t *testing.T) {
	const entries = 1024
	l := NewSourceLimiter(LimiterConfig{SourceRate: 1, PrefixRate: 10, Entries: entries})
	var b [16]byte
	b[0] = 0x20
	for i := 0; i < 50_000; i++ { // an attacker rotating IPv6 addresses and prefixes
		b[4], b[5], b[6], b[15] = byte(i>>16), byte(i>>8), byte(i), byte(i)
		l.Allow(netip.AddrFrom16(b), t0)
	}
	s := l.Stats()
	if s.Sources > entries || s.Prefixes > entries {
		t.Errorf("limiter remembers %d sources and %d prefixes, cap %d", s.Sources, s.Prefixes, entries)
	}
	if s.Evicted < 2*(50_000-entries) {
		t.Errorf("Evicted = %d, want at least %d", s.Evicted, 2*(50_000-entries))
	}
	// A source seen recently is still limited: the least recently seen go first.
	hot := netip.MustParseAddr("198.51.100.7")
	for i := 0; i < 10; i++ {
		l.Allow(hot, t0)
		b[5], b[15] = byte(i), byte(i)
		l.Allow(netip.AddrFrom16(b), t0)
	}
	if ok, reason := l.Allow(hot, t0); ok || reason != RefusalRateSource {
		t.Errorf("recently seen source: Allow = %v %v, want refused by source", ok, reason)
	}
}

func TestSourceLimiterWithNoLimitsAllowsAll(t *testing.T) {
	l := NewSourceLimiter(LimiterConfig{})
	for i := 0; i < 100; i++ {
		if ok, _ := l.Allow(netip.Addr{}, t0); !ok {
			t.Fatal("refused with no limits")
		}
	}
}

func TestPrefix(t *testing.T) {
	for _, tc := range []struct{ addr, want string }{
		{"192.0.2.77", "192.0.2.0/24"},
		{"::ffff:192.0.2.77", "192.0.2.0/24"},
		{"2001:db8:aaaa:bbcc:1:2:3:4", "2001:db8:aaaa:bb00::/56"},
		{"fe80::1%eth0", "fe80::/56"},
	} {
		if got := Prefix(netip.MustParseAddr(tc.addr)); got.String() != tc.want {
			t.Errorf("Prefix(%s) = %s, want %s", tc.addr, got, tc.want)
		}
	}
	if got := Prefix(netip.Addr{}); got.IsValid() {
		t.Errorf("Prefix(invalid) = %v, want the zero Prefix", got)
	}
}

func TestClientAddr(t *testing.T) {
	proxies := []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8"), netip.MustParsePrefix("fd00::/8")}
	for _, tc := range []struct {
		name, remote, xff string
		trusted           []netip.Prefix
		want              string
	}{
		{"no proxy", "203.0.113.9:5000", "", nil, "203.0.113.9"},
		{"xff ignored by default", "203.0.113.9:5000", "1.2.3.4", nil, "203.0.113.9"},
		{"xff ignored from an untrusted peer", "203.0.113.9:5000", "1.2.3.4", proxies, "203.0.113.9"},
		{"trusted proxy", "10.0.0.2:80", "198.51.100.1", proxies, "198.51.100.1"},
		{"right-most untrusted wins over a spoofed left", "10.0.0.2:80", "6.6.6.6, 198.51.100.1, 10.0.0.3", proxies, "198.51.100.1"},
		{"all trusted: the left-most", "10.0.0.2:80", "10.1.1.1,10.0.0.3", proxies, "10.1.1.1"},
		{"garbage hop stops at the trusted proxy", "10.0.0.2:80", "198.51.100.1, garbage", proxies, "10.0.0.2"},
		{"hop with port", "10.0.0.2:80", "198.51.100.1:4444", proxies, "198.51.100.1"},
		{"IPv6 peer and hop", "[fd00::1]:443", "2001:db8::5", proxies, "2001:db8::5"},
		{"IPv4-mapped peer", "[::ffff:10.0.0.2]:80", "198.51.100.1", proxies, "198.51.100.1"},
		{"bare address", "203.0.113.9", "", nil, "203.0.113.9"},
		{"empty xff from a proxy", "10.0.0.2:80", "", proxies, "10.0.0.2"},
		{"unparsable peer", "pipe", "", nil, "invalid IP"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := ClientAddr(tc.remote, tc.xff, tc.trusted); got.String() != tc.want {
				t.Errorf("ClientAddr = %s, want %s", got, tc.want)
			}
		})
	}
}
