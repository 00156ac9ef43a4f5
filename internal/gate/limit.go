package gate

import (
	"crypto/rand"
	"encoding/binary"
	"math"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Bucket is a token bucket: it holds up to burst tokens, refills at rate
// tokens per second, and each allowed event takes one. It starts full. Like
// tailscale's tstime/rate it takes the time as an argument, so tests drive
// it by hand; a clock going backwards refills nothing. It is a value with no
// lock: its owner serializes access.
type Bucket struct {
	rate   float64 // tokens per second
	burst  float64
	tokens float64
	last   int64 // Unix nanoseconds of the last refill
	inited bool
}

// NewBucket returns a full bucket. A rate of +Inf allows everything; a zero
// rate never refills, so only burst events are ever allowed.
func NewBucket(rate float64, burst int) Bucket {
	return Bucket{rate: rate, burst: float64(burst), tokens: float64(burst)}
}

func (b *Bucket) refill(now time.Time) {
	t := now.UnixNano()
	if !b.inited {
		b.inited, b.last = true, t
		return
	}
	if t <= b.last {
		return
	}
	b.tokens = min(b.burst, b.tokens+float64(t-b.last)/1e9*b.rate)
	b.last = t
}

// Allow reports whether an event may happen at now, and takes a token if so.
func (b *Bucket) Allow(now time.Time) bool {
	if math.IsInf(b.rate, 1) {
		return true
	}
	b.refill(now)
	if b.tokens < 1 {
		return false
	}
	b.tokens--
	return true
}

// Tokens returns how many tokens the bucket holds at now.
func (b *Bucket) Tokens(now time.Time) float64 {
	if math.IsInf(b.rate, 1) {
		return math.Inf(1)
	}
	b.refill(now)
	return b.tokens
}

// Rate returns the refill rate in tokens per second.
func (b *Bucket) Rate() float64 { return b.rate }

// LimiterConfig sets a SourceLimiter's limits. A rate limits a source to
// that many requests per second on average, its burst to that many at once.
type LimiterConfig struct {
	// SourceRate limits each client address. Zero means no per-address limit.
	SourceRate float64
	// SourceBurst: zero means max(1, SourceRate).
	SourceBurst int
	// PrefixRate limits each /24 (IPv4) or /56 (IPv6): many addresses of
	// one network, the shape of a botnet in one provider or of an
	// attacker rotating IPv6 addresses. Zero means no per-prefix limit.
	PrefixRate float64
	// PrefixBurst: zero means max(1, PrefixRate).
	PrefixBurst int
	// SourceQueueRate and PrefixQueueRate open a second lane past each
	// rate: a request over SourceRate (PrefixRate) but within this rate is
	// answered Queue, not refused, so the caller sends it to the back of
	// the waiting room. A crowd behind one carrier NAT is demand, not
	// abuse: it waits its turn instead of being refused. Zero means no
	// queue lane: past the rate, requests are refused.
	SourceQueueRate, PrefixQueueRate float64
	// SourceQueueBurst and PrefixQueueBurst: zero means max(1, the rate).
	SourceQueueBurst, PrefixQueueBurst int
	// Entries caps how many addresses, and separately how many prefixes,
	// are remembered (about 100 bytes each). The least recently seen is
	// forgotten first, so an attacker rotating addresses cannot grow the
	// limiter; a forgotten source starts again with a full bucket. Zero
	// means 1<<16.
	Entries int
}

// DefaultJoinLimiterConfig returns the limits for POST /join: a person
// joins a few times at most. A /24 may be a campus or a mobile carrier's
// NAT pool with hundreds of people arriving together at a scheduled start
// (DESIGN.md): past 20/s (burst 100) they queue, up to 50/s more (burst
// 500, so 250 people of one /24 arriving within half a second all get a
// place in line); only past that is a prefix refused. One address is
// sometimes a NAT too: past 1/s (burst 5) it queues up to 5/s (burst 20).
func DefaultJoinLimiterConfig() LimiterConfig {
	return LimiterConfig{
		SourceRate: 1, SourceBurst: 5, SourceQueueRate: 5, SourceQueueBurst: 20,
		PrefixRate: 20, PrefixBurst: 100, PrefixQueueRate: 50, PrefixQueueBurst: 500,
		Entries: 1 << 16,
	}
}

// DefaultListenLimiterConfig returns the limits for listen requests, which
// reconnects and players' probe requests make more frequent than joins.
func DefaultListenLimiterConfig() LimiterConfig {
	return LimiterConfig{SourceRate: 5, SourceBurst: 20, PrefixRate: 100, PrefixBurst: 500, Entries: 1 << 16}
}

// SourceLimiter rate-limits requests by client address and by its prefix,
// each with its own bucket, in bounded memory. It is safe for concurrent
// use; the tables are sharded to keep lock contention low.
type SourceLimiter struct {
	sources  *lruTable[netip.Addr]
	prefixes *lruTable[netip.Prefix]

	allowed atomic.Uint64
	queued  atomic.Uint64
}

// Decision is a SourceLimiter's answer to one request.
type Decision uint8

const (
	// LimitAllow: within the source's and its prefix's rates.
	LimitAllow Decision = iota
	// LimitQueue: over a rate but within its queue lane: serve the
	// request behind everyone already waiting.
	LimitQueue
	// LimitRefuse: over a rate and its queue lane.
	LimitRefuse
)

// NewSourceLimiter returns a limiter with cfg's limits.
func NewSourceLimiter(cfg LimiterConfig) *SourceLimiter {
	if cfg.Entries <= 0 {
		cfg.Entries = 1 << 16
	}
	l := &SourceLimiter{}
	if cfg.SourceRate > 0 {
		l.sources = newLRUTable[netip.Addr](
			lane{cfg.SourceRate, burstOr(cfg.SourceBurst, cfg.SourceRate)},
			lane{cfg.SourceQueueRate, burstOr(cfg.SourceQueueBurst, cfg.SourceQueueRate)}, cfg.Entries)
	}
	if cfg.PrefixRate > 0 {
		l.prefixes = newLRUTable[netip.Prefix](
			lane{cfg.PrefixRate, burstOr(cfg.PrefixBurst, cfg.PrefixRate)},
			lane{cfg.PrefixQueueRate, burstOr(cfg.PrefixQueueBurst, cfg.PrefixQueueRate)}, cfg.Entries)
	}
	return l
}

// lane is one token bucket's rate and burst; a zero rate means no lane.
type lane struct {
	rate  float64
	burst int
}

func burstOr(burst int, rate float64) int {
	if burst > 0 {
		return burst
	}
	return max(1, int(rate))
}

// Allow reports whether a request from addr may go on at now. When it may
// not, reason says which limit refused it: RefusalRateSource or
// RefusalRatePrefix.
// A request that Check would queue is allowed. An invalid addr is limited
// as one shared source. It does not allocate for a source it already knows.
func (l *SourceLimiter) Allow(addr netip.Addr, now time.Time) (ok bool, reason Refusal) {
	d, reason := l.Check(addr, now)
	return d != LimitRefuse, reason
}

// Check is Allow with the queue lanes: it answers LimitQueue for a request
// over a rate but within that rate's queue lane, and names the limit that
// queued or refused it (RefusalRateSource or RefusalRatePrefix). Its
// refusals are counted by the caller, by that reason.
func (l *SourceLimiter) Check(addr netip.Addr, now time.Time) (d Decision, reason Refusal) {
	addr = addr.Unmap().WithZone("")
	if l.sources != nil {
		if d = l.sources.allow(addr, hashAddr(addr, 128), now); d == LimitRefuse {
			return d, RefusalRateSource
		} else if d == LimitQueue {
			reason = RefusalRateSource
		}
	}
	if l.prefixes != nil {
		p := Prefix(addr)
		switch l.prefixes.allow(p, hashAddr(p.Addr(), p.Bits()), now) {
		case LimitRefuse:
			return LimitRefuse, RefusalRatePrefix
		case LimitQueue:
			d, reason = LimitQueue, RefusalRatePrefix
		}
	}
	if d == LimitQueue {
		l.queued.Add(1)
		return d, reason
	}
	l.allowed.Add(1)
	return LimitAllow, 0
}

// LimiterStats counts what a SourceLimiter allowed and queued. Its
// refusals are counted once, by Refusal, by the caller.
type LimiterStats struct {
	Allowed uint64
	// Queued counts requests sent to the waiting room by a queue lane.
	Queued uint64
	// Sources and Prefixes are the entries remembered now; Evicted counts
	// entries forgotten to make room (a high rate means address rotation).
	Sources, Prefixes int
	Evicted           uint64
}

// Stats returns a snapshot of the limiter's counters.
func (l *SourceLimiter) Stats() LimiterStats {
	s := LimiterStats{
		Allowed: l.allowed.Load(),
		Queued:  l.queued.Load(),
	}
	if l.sources != nil {
		s.Sources, s.Evicted = l.sources.stats()
	}
	if l.prefixes != nil {
		n, e := l.prefixes.stats()
		s.Prefixes, s.Evicted = n, s.Evicted+e
	}
	return s
}

// Prefix returns the network addr is limited with: its /24 for IPv4 (an
// IPv4-mapped IPv6 address counts as IPv4), its /56 for IPv6, the smallest
// allocation a provider commonly gives one customer. An invalid addr gives
// the zero Prefix.
func Prefix(addr netip.Addr) netip.Prefix {
	addr = addr.Unmap().WithZone("")
	bits := 56
	if addr.Is4() {
		bits = 24
	}
	p, err := addr.Prefix(bits)
	if err != nil {
		return netip.Prefix{}
	}
	return p
}

// hashSeed keys the shard choice so that an attacker cannot aim a set of
// addresses at one shard to evict its entries faster.
var hashSeed = func() uint64 {
	var b [8]byte
	rand.Read(b[:])
	return binary.LittleEndian.Uint64(b[:])
}()

func hashAddr(a netip.Addr, bits int) uint64 {
	b := a.As16()
	h := hashSeed ^ uint64(bits)
	for _, v := range [2]uint64{binary.LittleEndian.Uint64(b[:8]), binary.LittleEndian.Uint64(b[8:])} {
		h ^= v
		h *= 0x9e3779b97f4a7c15
		h ^= h >> 32
	}
	return h
}

// lruTable maps keys to buckets in fixed memory: a sharded LRU whose
// entries live in one slice per shard and link by index.
type lruTable[K comparable] struct {
	shards      [lruShards]lruShard[K]
	main, queue lane
}

const lruShards = 16

type lruShard[K comparable] struct {
	mu      sync.Mutex
	cap     int
	idx     map[K]int32
	ents    []lruEntry[K]
	head    int32 // most recently used, -1 when empty
	tail    int32 // least recently used
	evicted uint64
}

type lruEntry[K comparable] struct {
	key        K
	b, q       Bucket // the main lane and the queue lane
	prev, next int32
}

func newLRUTable[K comparable](main, queue lane, entries int) *lruTable[K] {
	t := &lruTable[K]{main: main, queue: queue}
	per := max(entries/lruShards, 1)
	for i := range t.shards {
		t.shards[i] = lruShard[K]{cap: per, idx: make(map[K]int32, per), head: -1, tail: -1}
	}
	return t
}

func (t *lruTable[K]) entry(key K) lruEntry[K] {
	return lruEntry[K]{key: key, b: NewBucket(t.main.rate, t.main.burst), q: NewBucket(t.queue.rate, t.queue.burst)}
}

func (t *lruTable[K]) allow(key K, hash uint64, now time.Time) Decision {
	sh := &t.shards[hash%lruShards]
	sh.mu.Lock()
	defer sh.mu.Unlock()
	i, ok := sh.idx[key]
	switch {
	case ok:
		sh.unlink(i)
	case len(sh.ents) < sh.cap:
		i = int32(len(sh.ents))
		sh.ents = append(sh.ents, t.entry(key))
		sh.idx[key] = i
	default:
		i = sh.tail
		sh.unlink(i)
		delete(sh.idx, sh.ents[i].key)
		sh.evicted++
		sh.ents[i] = t.entry(key)
		sh.idx[key] = i
	}
	sh.pushFront(i)
	e := &sh.ents[i]
	switch {
	case e.b.Allow(now):
		return LimitAllow
	case t.queue.rate > 0 && e.q.Allow(now):
		return LimitQueue
	}
	return LimitRefuse
}

func (sh *lruShard[K]) unlink(i int32) {
	e := &sh.ents[i]
	if e.prev >= 0 {
		sh.ents[e.prev].next = e.next
	} else {
		sh.head = e.next
	}
	if e.next >= 0 {
		sh.ents[e.next].prev = e.prev
	} else {
		sh.tail = e.prev
	}
	e.prev, e.next = -1, -1
}

func (sh *lruShard[K]) pushFront(i int32) {
	e := &sh.ents[i]
	e.prev, e.next = -1, sh.head
	if sh.head >= 0 {
		sh.ents[sh.head].prev = i
	}
	sh.head = i
	if sh.tail < 0 {
		sh.tail = i
	}
}

func (t *lruTable[K]) stats() (n int, evicted uint64) {
	for i := range t.shards {
		sh := &t.shards[i]
		sh.mu.Lock()
		n += len(sh.idx)
		evicted += sh.evicted
		sh.mu.Unlock()
	}
	return n, evicted
}

// ClientAddr returns the address of the client behind a request: the peer
// (remoteAddr, "host:port" as net/http gives it, or a bare address), unless
// the peer is in trusted, in which case X-Forwarded-For (xff, several
// headers joined with ",") is read from the right and the first address
// not in trusted is the client. Anything left of it was written by the
// client and is ignored. An unparsable hop ends the walk at the last
// trusted hop seen. With no trusted prefixes (the default) xff is ignored.
// It returns the zero Addr only when remoteAddr itself is unparsable.
func ClientAddr(remoteAddr, xff string, trusted []netip.Prefix) netip.Addr {
	peer, err := netip.ParseAddrPort(remoteAddr)
	var addr netip.Addr
	if err == nil {
		addr = peer.Addr()
	} else if addr, err = netip.ParseAddr(remoteAddr); err != nil {
		return netip.Addr{}
	}
	addr = addr.Unmap()
	for isTrusted(addr, trusted) && xff != "" {
		hop := xff
		if i := strings.LastIndexByte(xff, ','); i >= 0 {
			hop, xff = xff[i+1:], xff[:i]
		} else {
			xff = ""
		}
		next, ok := parseHop(strings.TrimSpace(hop))
		if !ok {
			break
		}
		addr = next.Unmap()
	}
	return addr
}

func isTrusted(a netip.Addr, trusted []netip.Prefix) bool {
	for _, p := range trusted {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// parseHop parses one X-Forwarded-For entry: an address, or an address
// and port as some proxies write it.
func parseHop(s string) (netip.Addr, bool) {
	if a, err := netip.ParseAddr(s); err == nil {
		return a, true
	}
	if ap, err := netip.ParseAddrPort(s); err == nil {
		return ap.Addr(), true
	}
	return netip.Addr{}, false
}
