package api

import (
	"cmp"
	"net/http"
	"sync"
	"time"

	"github.com/amphi-audio/amphi"
	"github.com/amphi-audio/amphi/internal/gate"
)

// WHIPLimitConfig limits WHIP offers. Each offer costs a peer connection,
// a UDP socket and a DTLS handshake, and a speaker makes one when it joins
// or reconnects: a handful an hour.
type WHIPLimitConfig struct {
	// Source limits offers per client address, checked before the
	// credentials. A zero value means no per-address limit.
	Source gate.LimiterConfig
	// SpeakerRate limits offers per speaker (a token, or a host's account)
	// to that many a second, from any address. Zero means no limit.
	SpeakerRate float64
	// SpeakerBurst is how many offers a speaker may make at once. Zero
	// means 1.
	SpeakerBurst int
	// Speakers caps how many speakers' limits are remembered at once. Zero
	// means 1<<14.
	Speakers int
}

// DefaultWHIPLimit returns the WHIP limits: one address may bring a full
// stage at once (13 speakers behind one NAT, or a rehearsal's bots) and
// then one offer every 2 s; one speaker may reconnect 5 times at once, then
// once every 5 s.
func DefaultWHIPLimit() WHIPLimitConfig {
	return WHIPLimitConfig{
		Source:       gate.LimiterConfig{SourceRate: 0.5, SourceBurst: 20, Entries: 1 << 14},
		SpeakerRate:  0.2,
		SpeakerBurst: 5,
		Speakers:     1 << 14,
	}
}

// whipLimiter applies a WHIPLimitConfig.
type whipLimiter struct {
	source   *gate.SourceLimiter
	speakers keyLimiter
}

func newWHIPLimiter(cfg WHIPLimitConfig) whipLimiter {
	return whipLimiter{
		source: gate.NewSourceLimiter(cfg.Source),
		speakers: keyLimiter{rate: cfg.SpeakerRate, burst: max(cfg.SpeakerBurst, 1),
			max: cmp.Or(cfg.Speakers, 1<<14), buckets: make(map[string]*gate.Bucket)},
	}
}

// limitWHIPSource refuses an offer from an address past its limit, before
// the credentials cost a database read.
func (s *Server) limitWHIPSource(r *http.Request, now time.Time) error {
	addr := s.gate.clientAddr(r)
	if err := s.gate.limit(s.whipLimit.source, addr, now); err != nil {
		return amphi.Errorf(amphi.ERateLimited, "too many WHIP offers from your address: retry in a few seconds")
	}
	return nil
}

// limitWHIPSpeaker refuses an offer from a speaker past its limit, from
// whatever address it comes: a leaked token used from many places.
func (s *Server) limitWHIPSpeaker(r *http.Request, speaker string, now time.Time) error {
	if s.whipLimit.speakers.allow(speaker, now) {
		return nil
	}
	addr := s.gate.clientAddr(r)
	s.gate.refuse(gate.RefusalRateSource, addr)
	return amphi.Errorf(amphi.ERateLimited, "this speaker joined too often: retry in a few seconds")
}

// keyLimiter gives each key (a speaker) its own gate.Bucket, in bounded
// memory. A bucket that has refilled to its burst is the same as a new one,
// so those are forgotten first when the table is full; only if none has, an
// arbitrary one is, which gives that key a fresh burst and nothing more.
type keyLimiter struct {
	rate  float64 // zero: no limit
	burst int
	max   int

	mu      sync.Mutex
	buckets map[string]*gate.Bucket
}

func (l *keyLimiter) allow(key string, now time.Time) bool {
	if l.rate <= 0 {
		return true
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	b := l.buckets[key]
	if b == nil {
		if len(l.buckets) >= l.max {
			l.forget(now)
		}
		nb := gate.NewBucket(l.rate, l.burst)
		b = &nb
		l.buckets[key] = b
	}
	return b.Allow(now)
}

// forget makes room for one key. Called with l.mu held.
func (l *keyLimiter) forget(now time.Time) {
	for k, b := range l.buckets {
		if b.Tokens(now) >= float64(l.burst) {
			delete(l.buckets, k)
		}
	}
	for k := range l.buckets {
		if len(l.buckets) < l.max {
			break
		}
		delete(l.buckets, k)
	}
}
