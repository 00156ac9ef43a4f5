package gate

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"math/bits"
	"strconv"
	"sync"
	"time"

	"github.com/amphi-audio/amphi"
)

// Challenge is a decoded proof-of-work challenge: find a nonce such that
// SHA-256(challenge string || nonce) starts with Difficulty zero bits.
// Challenges are stateless: the server signs them with its ticket key and
// keeps nothing until one is redeemed.
type Challenge struct {
	Seed       []byte
	Difficulty uint8
	Expires    time.Time
	Space      string
}

// MaxDifficulty is the highest difficulty the gate issues or Solve
// attempts: 2^32 hashes, minutes of a CPU core.
const MaxDifficulty = 32

// maxNonceLen bounds the nonce: Solve's decimal counter needs at most 20.
const maxNonceLen = 32

// IssueChallenge returns a signed challenge for space at difficulty bits,
// valid for the Signer's ChallengeTTL from now.
func (s *Signer) IssueChallenge(space string, difficulty uint8, now time.Time) (string, error) {
	if difficulty > MaxDifficulty {
		return "", amphi.Errorf(amphi.EInvalid, "difficulty %d over %d", difficulty, MaxDifficulty)
	}
	var seed [idLen]byte
	rand.Read(seed[:])
	return s.sign(kindChallenge, difficulty, now.Add(s.cfg.ChallengeTTL), seed, space)
}

// ParseChallenge decodes a challenge without checking its signature (a
// client cannot): for display and for Solve.
func ParseChallenge(challenge string) (Challenge, error) {
	var raw [maxRaw]byte
	if len(challenge) < minTokenLen || len(challenge) > MaxTokenLen {
		return Challenge{}, amphi.Errorf(amphi.EInvalid, "malformed challenge")
	}
	n, ok := decodeB64(raw[:], challenge)
	if !ok || n < minRaw || raw[offKind] != kindChallenge {
		return Challenge{}, amphi.Errorf(amphi.EInvalid, "malformed challenge")
	}
	sl := int(raw[offSpaceLen])
	if sl == 0 || offSpace+sl+macLen != n {
		return Challenge{}, amphi.Errorf(amphi.EInvalid, "malformed challenge")
	}
	return Challenge{
		Seed:       append([]byte(nil), raw[offID:offID+idLen]...),
		Difficulty: raw[offParam],
		Expires:    time.Unix(int64(binary.BigEndian.Uint32(raw[offExp:])), 0),
		Space:      string(raw[offSpace : offSpace+sl]),
	}, nil
}

// Solve finds a nonce for challenge. It is what amphi's Go clients (listen,
// load) run; the expected work is 2^Difficulty SHA-256 hashes of about 100
// bytes (see BenchmarkSolve16: ~10 ms at 16 bits on one core of this project's
// machines, x2 per extra bit: ~0.6 s at 22). It stops with ctx's error when ctx is done.
func Solve(ctx context.Context, challenge string) (string, error) {
	c, err := ParseChallenge(challenge)
	if err != nil {
		return "", fmt.Errorf("gate: solve: %w", err)
	}
	if c.Difficulty > MaxDifficulty {
		return "", fmt.Errorf("gate: solve: difficulty %d over %d", c.Difficulty, MaxDifficulty)
	}
	var buf [MaxTokenLen + maxNonceLen]byte
	n := copy(buf[:], challenge)
	for i := uint64(0); ; i++ {
		if i&(1<<12-1) == 0 {
			if err := ctx.Err(); err != nil {
				return "", fmt.Errorf("gate: solve: %w", err)
			}
		}
		b := strconv.AppendUint(buf[:n], i, 10)
		if leadingZeroBits(sha256.Sum256(b)) >= int(c.Difficulty) {
			return string(b[n:]), nil
		}
	}
}

func leadingZeroBits(sum [sha256.Size]byte) int {
	for i, b := range sum {
		if b != 0 {
			return i*8 + bits.LeadingZeros8(b)
		}
	}
	return sha256.Size * 8
}

// VerifySolution checks nonce against challenge for space at time now and
// redeems the challenge: each one opens the door once. A challenge issued
// below minDifficulty (the difficulty in force now: it rose since) is
// refused too, so a raised difficulty applies to open challenges. A refusal
// is a *RefusalError with RefusalPoWWrong, RefusalPoWStale,
// RefusalPoWOutdated, RefusalPoWReplayed or RefusalPoWBusy. One SHA-256
// and one HMAC at most; a solution is remembered only once it is correct,
// so the replay cache grows only by work the client paid for.
func (s *Signer) VerifySolution(challenge, nonce, space string, minDifficulty uint8, now time.Time) error {
	r, ok := s.verifySolution(challenge, nonce, space, minDifficulty, now)
	if !ok {
		return powRefusals[r]
	}
	s.powOK.Add(1)
	return nil
}

func (s *Signer) verifySolution(challenge, nonce, space string, minDifficulty uint8, now time.Time) (cause, bool) {
	if len(nonce) == 0 || len(nonce) > maxNonceLen {
		return rMalformed, false
	}
	for i := 0; i < len(nonce); i++ {
		if b64[nonce[i]] == 0xff {
			return rMalformed, false
		}
	}
	t, r, ok := s.open(challenge, kindChallenge, space)
	switch {
	case !ok:
		return r, false
	case !t.space:
		return rWrongSpace, false
	case now.Unix() >= t.expires:
		return rExpired, false
	case t.param > MaxDifficulty:
		return rMalformed, false
	case t.param < minDifficulty:
		return rOutdated, false
	}
	var buf [MaxTokenLen + maxNonceLen]byte
	n := copy(buf[:], challenge)
	n += copy(buf[n:], nonce)
	if leadingZeroBits(sha256.Sum256(buf[:n])) < int(t.param) {
		return rWrongAnswer, false
	}
	return s.replay.add(t.tag, t.expires, now.Unix())
}

// replayCache remembers redeemed challenges until they expire, in bounded
// memory. It is sharded by the challenge's MAC (uniform, and not chosen by
// the client) to keep lock contention low. Each shard evicts in insertion
// order, which is expiry order since every challenge lives ChallengeTTL.
type replayCache struct {
	shards [replayShards]replayShard
}

const replayShards = 16

type replayShard struct {
	mu   sync.Mutex
	cap  int
	seen map[[macLen]byte]struct{}
	fifo []replayEntry
	head int
}

type replayEntry struct {
	key     [macLen]byte
	expires int64
}

func (c *replayCache) init(entries int) {
	per := max(entries/replayShards, 1)
	for i := range c.shards {
		c.shards[i].cap = per
		c.shards[i].seen = make(map[[macLen]byte]struct{})
	}
}

func (c *replayCache) add(key [macLen]byte, expires, now int64) (cause, bool) {
	sh := &c.shards[key[0]%replayShards]
	sh.mu.Lock()
	defer sh.mu.Unlock()
	for sh.head < len(sh.fifo) && sh.fifo[sh.head].expires <= now {
		delete(sh.seen, sh.fifo[sh.head].key)
		sh.fifo[sh.head] = replayEntry{}
		sh.head++
	}
	if sh.head > len(sh.fifo)/2 {
		sh.fifo = append(sh.fifo[:0], sh.fifo[sh.head:]...)
		sh.head = 0
	}
	if _, dup := sh.seen[key]; dup {
		return rReplayed, false
	}
	if len(sh.seen) >= sh.cap {
		return rBusy, false
	}
	sh.seen[key] = struct{}{}
	sh.fifo = append(sh.fifo, replayEntry{key: key, expires: expires})
	return 0, true
}

func (c *replayCache) len() int {
	n := 0
	for i := range c.shards {
		c.shards[i].mu.Lock()
		n += len(c.shards[i].seen)
		c.shards[i].mu.Unlock()
	}
	return n
}

// SignerStats counts what a Signer accepted. Its refusals are counted once,
// by Refusal, by whoever asked (the api package).
type SignerStats struct {
	TicketsValid uint64
	// SolutionsValid counts redeemed proof-of-work solutions.
	SolutionsValid uint64
	// ReplayEntries is how many redeemed challenges are remembered now.
	ReplayEntries int
}

// Stats returns a snapshot of the Signer's counters.
func (s *Signer) Stats() SignerStats {
	return SignerStats{
		TicketsValid:   s.ticketsOK.Load(),
		SolutionsValid: s.powOK.Load(),
		ReplayEntries:  s.replay.len(),
	}
}
