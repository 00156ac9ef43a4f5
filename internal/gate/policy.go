package gate

import (
	"math"
	"sync"
	"sync/atomic"
	"time"
)

// MaxVisitorDifficulty is the most proof of work a visitor is ever asked
// for: what a phone's browser solves in under a second on average. The
// page's worker makes 2^d attempts on average at d bits; in headless
// Chromium on this project's 2-core machines an attempt takes 2.2-3 µs
// (BenchmarkWebPoWWorker, docs/BENCHMARKS.md). A phone is taken as 4×
// slower: 2^16 attempts ≈ 0.6-0.8 s there; 2^17 would be past a second.
const MaxVisitorDifficulty = 16

// PoWConfig tunes when proof of work arms itself and how hard it gets.
// Only evidence of abuse arms it: invalid requests (forged or expired
// tickets, wrong answers, rate limits, probing). Demand never does: a
// flash crowd or a herd in line waits its turn in the waiting room.
type PoWConfig struct {
	// Base is the difficulty, in leading zero bits, once the evidence
	// crosses a threshold. Zero means 12 (~10 ms in a desktop browser).
	Base uint8
	// Max caps the adaptive difficulty. Zero means MaxVisitorDifficulty;
	// more is cut to it.
	Max uint8
	// InvalidShare is the share of invalid requests (0-1) at which proof
	// of work arms. Zero means 0.2.
	InvalidShare float64
	// InvalidRate is the rate of invalid requests per second below which
	// proof of work never arms, whatever their share: a few mistyped
	// links or expired tickets on a quiet server are no attack. Zero
	// means 20.
	InvalidRate float64
	// Cooldown is how long the pressure must stay lower before the
	// difficulty steps down, so that it does not flap. Zero means 2 minutes.
	Cooldown time.Duration
}

// DefaultPoWConfig returns the defaults described on PoWConfig.
func DefaultPoWConfig() PoWConfig {
	return PoWConfig{Base: 12, Max: MaxVisitorDifficulty, InvalidShare: 0.2, InvalidRate: 20, Cooldown: 2 * time.Minute}
}

// Pressure is the evidence of abuse PoWPolicy reads, measured by the
// caller over its last observation window (a few seconds).
type Pressure struct {
	// InvalidShare is invalid / total requests at the gate (bad tickets,
	// rate-limited, malformed), 0-1.
	InvalidShare float64
	// InvalidRate is invalid requests per second.
	InvalidRate float64
}

// PoWPolicy maps evidence of abuse to a proof-of-work difficulty, and lets
// the operator override it. The policy: with x = InvalidShare /
// cfg.InvalidShare while InvalidRate is at least cfg.InvalidRate (else 0),
// difficulty is 0 (off) while x < 1, and Base + 2*floor(log2 x) bits
// above, capped at Max: each doubling of the share quadruples the work of
// a joiner. It rises at once and falls only after Cooldown at the lower
// level. It is safe for concurrent use.
type PoWPolicy struct {
	cfg PoWConfig

	mu       sync.Mutex
	auto     uint8     // what the signals ask for
	lastHigh time.Time // when the signals last asked for auto or more
	override bool
	manual   uint8
	current  atomic.Uint32 // effective difficulty, read lock-free
}

// NewPoWPolicy returns a policy in automatic mode, off.
func NewPoWPolicy(cfg PoWConfig) *PoWPolicy {
	def := DefaultPoWConfig()
	if cfg.Base == 0 {
		cfg.Base = def.Base
	}
	if cfg.Max == 0 {
		cfg.Max = def.Max
	}
	cfg.Max = min(cfg.Max, MaxVisitorDifficulty)
	cfg.Base = min(cfg.Base, cfg.Max)
	if cfg.InvalidShare <= 0 {
		cfg.InvalidShare = def.InvalidShare
	}
	if cfg.InvalidRate <= 0 {
		cfg.InvalidRate = def.InvalidRate
	}
	if cfg.Cooldown <= 0 {
		cfg.Cooldown = def.Cooldown
	}
	return &PoWPolicy{cfg: cfg}
}

// target is the difficulty the signals ask for.
func (p *PoWPolicy) target(pr Pressure) uint8 {
	if !(pr.InvalidRate >= p.cfg.InvalidRate) { // NaN included
		return 0
	}
	x := pr.InvalidShare / p.cfg.InvalidShare
	if !(x >= 1) { // NaN included
		return 0
	}
	d := float64(p.cfg.Base) + 2*math.Floor(math.Log2(x))
	return uint8(min(d, float64(p.cfg.Max)))
}

// Update feeds the pressure measured at now and returns the difficulty to
// issue challenges at (0: no proof of work).
func (p *PoWPolicy) Update(pr Pressure, now time.Time) uint8 {
	p.mu.Lock()
	defer p.mu.Unlock()
	t := p.target(pr)
	switch {
	case t >= p.auto:
		p.auto = t
		p.lastHigh = now
	case now.Sub(p.lastHigh) >= p.cfg.Cooldown:
		p.auto = t
		p.lastHigh = now
	}
	p.publish()
	return uint8(p.current.Load())
}

func (p *PoWPolicy) publish() {
	if p.override {
		p.current.Store(uint32(p.manual))
	} else {
		p.current.Store(uint32(p.auto))
	}
}

// Arm is the operator's override: issue challenges at difficulty bits
// whatever the signals say (0 forces proof of work off), until Auto. The
// operator may go past MaxVisitorDifficulty (up to MaxDifficulty), for
// clients known to be fast; the signals never do.
func (p *PoWPolicy) Arm(difficulty uint8) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.override, p.manual = true, min(difficulty, MaxDifficulty)
	p.publish()
}

// Auto returns control to the signals.
func (p *PoWPolicy) Auto() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.override = false
	p.publish()
}

// Difficulty returns the difficulty in force: 0 means no proof of work.
func (p *PoWPolicy) Difficulty() uint8 { return uint8(p.current.Load()) }

// PoWState is a snapshot of a PoWPolicy for the ops view.
type PoWState struct {
	Difficulty uint8
	// Override is whether the operator set it (Arm) rather than the signals.
	Override bool
	// Auto is what the signals ask for.
	Auto uint8
}

// State returns a snapshot of the policy.
func (p *PoWPolicy) State() PoWState {
	p.mu.Lock()
	defer p.mu.Unlock()
	return PoWState{Difficulty: uint8(p.current.Load()), Override: p.override, Auto: p.auto}
}
