package api

import (
	"cmp"
	"errors"
	"math"
	"net/http"
	"strconv"
	"time"

	"github.com/amphi-audio/amphi"
	"github.com/amphi-audio/amphi/internal/gate"
	"github.com/amphi-audio/amphi/internal/live"
	"github.com/amphi-audio/amphi/internal/store"
)

// What keeps the spaces on air within what the node carries: each costs a
// mixer and writes a recording, so creating one is limited far below any
// other request, the node takes at most live.Config.MaxLive at once, and a
// space nobody speaks in ends by itself (space.Lifecycle).

// CreateLimitConfig limits how fast spaces are created.
type CreateLimitConfig struct {
	// Source limits creations by requests that are not signed in, per
	// client address and prefix. A zero value means no limit.
	Source gate.LimiterConfig
	// AccountRate limits creations per signed-in account to that many a
	// second, from any address. Zero means no limit.
	AccountRate float64
	// AccountBurst is how many spaces an account may create at once. Zero
	// means 1.
	AccountBurst int
}

// DefaultCreateLimit returns the creation limits: five spaces at once, then
// one a minute, per address and per account; twenty at once and then five
// a minute per /24 (/56), which may be a company behind one NAT.
func DefaultCreateLimit() CreateLimitConfig {
	return CreateLimitConfig{
		Source:      gate.LimiterConfig{SourceRate: 1.0 / 60, SourceBurst: 5, PrefixRate: 5.0 / 60, PrefixBurst: 20, Entries: 1 << 14},
		AccountRate: 1.0 / 60, AccountBurst: 5,
	}
}

// createLimiter applies a CreateLimitConfig.
type createLimiter struct {
	cfg      CreateLimitConfig
	source   *gate.SourceLimiter
	accounts keyLimiter
}

func newCreateLimiter(cfg CreateLimitConfig) createLimiter {
	return createLimiter{cfg: cfg, source: gate.NewSourceLimiter(cfg.Source),
		// Accounts are made by invitation: few, so the table never fills.
		accounts: keyLimiter{rate: cfg.AccountRate, burst: max(cfg.AccountBurst, 1), max: 1 << 14, buckets: make(map[string]*gate.Bucket)}}
}

// admitCreate decides whether the request may create a space: one on air
// at once needs a place on air (amphi.EFull past the node's cap), then the
// creator must be within its limit (amphi.ERateLimited). It returns the
// place held for a space on air, nil for a scheduled one.
func (s *Server) admitCreate(r *http.Request, onAir bool, owner *store.User) (*live.Place, error) {
	var place *live.Place
	if onAir {
		var err error
		if place, err = s.life.Reserve(); err != nil {
			return nil, err
		}
	}
	if err := s.limitCreate(r, owner); err != nil {
		if place != nil {
			place.Release()
		}
		return nil, err
	}
	return place, nil
}

// limitCreate holds an account to its own limit, wherever it signs in
// from, and anyone else to its address's and network's.
func (s *Server) limitCreate(r *http.Request, owner *store.User) error {
	l, now := &s.createLimit, s.cfg.Now()
	if owner != nil {
		if l.accounts.allow(owner.ID, now) {
			return nil
		}
		every := perEvent(l.cfg.AccountRate)
		return &retryLater{after: every, err: amphi.Errorf(amphi.ERateLimited,
			"this account created %d spaces in a short time, the most it may: it may create one more every %d s",
			max(l.cfg.AccountBurst, 1), int(every.Seconds()))}
	}
	if err := s.gate.limit(l.source, s.gate.clientAddr(r), now); err != nil {
		every := perEvent(cmp.Or(l.cfg.Source.SourceRate, l.cfg.Source.PrefixRate))
		return &retryLater{after: every, err: amphi.Errorf(amphi.ERateLimited,
			"too many spaces created from your address or its network: it may create one more every %d s; sign in to host more",
			int(every.Seconds()))}
	}
	return nil
}

// perEvent is the time one event takes to come back at rate per second.
func perEvent(rate float64) time.Duration {
	return time.Duration(float64(time.Second) / rate).Round(time.Second)
}

// retryLater is an error whose Retry-After is its own, not the default.
type retryLater struct {
	err   error
	after time.Duration
}

func (e *retryLater) Error() string { return e.err.Error() }
func (e *retryLater) Unwrap() error { return e.err }

// retryAfter is the Retry-After of a refusal, in seconds: its own, or 5.
func retryAfter(err error) string {
	var rl *retryLater
	if errors.As(err, &rl) {
		return strconv.Itoa(max(1, int(math.Ceil(rl.after.Seconds()))))
	}
	return "5"
}
