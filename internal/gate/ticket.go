package gate

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/binary"
	"fmt"
	"hash"
	"math"
	"sync"
	"sync/atomic"
	"time"

	"github.com/amphi-audio/amphi"
)

// Tier is a listener's priority in the waiting room. The policy: a higher
// tier is always served before a lower one, and within a tier in arrival
// order (FIFO). Tiers only change the order of the queue: nobody inside is
// ever evicted to admit a higher tier, and a higher tier never skips the
// capacity caps or the join rate. The api package chooses the tier when it
// issues a ticket: anonymous by default, signed-in with a valid account
// token, invited with an invitation to the space, staff for the host's crew.
type Tier uint8

// Tiers from lowest to highest priority.
const (
	TierAnonymous Tier = iota
	TierSignedIn
	TierInvited
	TierStaff
	numTiers
)

func (t Tier) String() string {
	switch t {
	case TierAnonymous:
		return "anonymous"
	case TierSignedIn:
		return "signed_in"
	case TierInvited:
		return "invited"
	case TierStaff:
		return "staff"
	}
	return fmt.Sprintf("tier(%d)", uint8(t))
}

// Ticket is what a listener shows on every listen request: whose place
// (the place id of a random listener id), where (one space), how long, and
// with which priority.
type Ticket struct {
	// Space is the space the ticket opens, at most MaxSpaceLen bytes.
	Space string
	// Place names the listener's place in its Room: PlaceID of the
	// listener id, ListenerIDLen base64url characters. The listener id
	// itself never appears in a ticket: it is the waiter's secret.
	Place string
	Tier  Tier
	// Expires is kept to the second (rounded down).
	Expires time.Time
	// Issuer is the SignerConfig.Issuer of the node that issued it; Issue
	// ignores this field.
	Issuer uint16
}

// Token layout, before base64url (no padding):
//
//	0      kind: kindTicket or kindChallenge (also the format version)
//	1      key id: the first byte of SHA-256(key), to pick the key to check
//	2      tier (ticket) or difficulty in bits (challenge)
//	3..6   expiry, Unix seconds, big-endian uint32 (good until 2106)
//	7..8   issuer (ticket: SignerConfig.Issuer) or zero (challenge)
//	9..23  place id (ticket) or random seed (challenge), 15 bytes
//	24     n = length of the space id, 1..MaxSpaceLen
//	25..   the space id, n bytes
//	then   MAC: HMAC-SHA256 over everything before it, truncated to 16 bytes
//
// The 15-byte id starts at byte 9, a multiple of 3, so its base64url text is
// the substring tok[12:32] of the token: Verify returns it without
// allocating. Putting the whole space id in the token (rather than only in
// the MAC) lets a refusal tell a forged ticket from a genuine one for
// another space, which matters when telling an attack from a bug.
const (
	kindTicket    = 0x01
	kindChallenge = 0x02

	offKind, offKey, offParam, offExp, offReserved, offID, offSpaceLen, offSpace = 0, 1, 2, 3, 7, 9, 24, 25
	idLen                                                                        = 15
	macLen                                                                       = 16

	// MaxSpaceLen is the longest space id a ticket or challenge can carry.
	MaxSpaceLen = 48
	// ListenerIDLen is the length of a listener id in characters.
	ListenerIDLen = 20

	minRaw = offSpace + 1 + macLen
	maxRaw = offSpace + MaxSpaceLen + macLen
	// MaxTokenLen is the longest ticket or challenge string (119 characters).
	MaxTokenLen = (maxRaw*8 + 5) / 6
	minTokenLen = (minRaw*8 + 5) / 6
	idTextStart = offID / 3 * 4
)

// SignerConfig configures a Signer beyond its keys.
type SignerConfig struct {
	// ChallengeTTL is how long a proof-of-work challenge may be solved and
	// redeemed. Zero means 2 minutes.
	ChallengeTTL time.Duration
	// ReplayEntries caps the replay cache: how many redeemed challenges
	// (each until its expiry) are remembered. At the cap, new solutions
	// are refused with RefusalPoWBusy rather than forgotten. About 64 bytes
	// each. Zero means 1<<18 (about 16 MiB at most).
	ReplayEntries int
	// Issuer names the node that signs, in each ticket it issues (two
	// bytes of a hash of its name, say): the nodes of a fleet share the
	// key, and a node tells its own tickets, whose places it keeps, from
	// those another node admitted. Zero is a valid name.
	Issuer uint16
}

// Issuer returns the name this signer puts in the tickets it issues.
func (s *Signer) Issuer() uint16 { return s.cfg.Issuer }

// DefaultSignerConfig returns the defaults described on SignerConfig.
func DefaultSignerConfig() SignerConfig {
	return SignerConfig{ChallengeTTL: 2 * time.Minute, ReplayEntries: 1 << 18}
}

// MinKeyLen is the shortest key NewSigner accepts.
const MinKeyLen = 32

// Signer issues and verifies tickets and proof-of-work challenges with
// HMAC-SHA256. Every node that serves a space must hold the same key. It is
// safe for concurrent use.
type Signer struct {
	cfg    SignerConfig
	keys   atomic.Pointer[keySet]
	replay replayCache

	ticketsOK atomic.Uint64
	powOK     atomic.Uint64
}

// keySet is immutable: Rotate swaps in a new one.
type keySet struct {
	keys []*macKey // current first
}

type macKey struct {
	id   byte
	pool sync.Pool // of *macState
}

// macState is a keyed HMAC with its scratch space. hmac's Reset restores
// the precomputed pads, so a MAC costs two SHA-256 blocks and no allocation.
type macState struct {
	h   hash.Hash
	buf [maxRaw]byte
	sum [sha256.Size]byte
}

func newMACKey(key []byte) *macKey {
	sum := sha256.Sum256(key)
	k := &macKey{id: sum[0]}
	key = append([]byte(nil), key...)
	k.pool.New = func() any { return &macState{h: hmac.New(sha256.New, key)} }
	return k
}

// mac writes the MAC of msg to dst[:macLen]. msg does not escape.
func (k *macKey) mac(dst, msg []byte) {
	st := k.pool.Get().(*macState)
	n := copy(st.buf[:], msg)
	st.h.Reset()
	st.h.Write(st.buf[:n])
	st.h.Sum(st.sum[:0])
	copy(dst, st.sum[:macLen])
	k.pool.Put(st)
}

// check reports whether tag is msg's MAC, in constant time.
func (k *macKey) check(msg, tag []byte) bool {
	st := k.pool.Get().(*macState)
	n := copy(st.buf[:], msg)
	st.h.Reset()
	st.h.Write(st.buf[:n])
	st.h.Sum(st.sum[:0])
	ok := subtle.ConstantTimeCompare(st.sum[:macLen], tag) == 1
	k.pool.Put(st)
	return ok
}

// NewKey returns a fresh random key of MinKeyLen bytes, for a single node
// or a development setup; a cluster shares one configured key.
func NewKey() []byte {
	k := make([]byte, MinKeyLen)
	rand.Read(k)
	return k
}

// NewListenerID returns a random listener id: 120 bits as ListenerIDLen
// base64url characters.
func NewListenerID() string {
	var b [idLen]byte
	rand.Read(b[:])
	return base64.RawURLEncoding.EncodeToString(b[:])
}

// NewSigner returns a Signer with the defaults of DefaultSignerConfig that
// signs with key and also accepts what previous keys signed (key rotation:
// keep the old key in previous until its tickets have expired).
func NewSigner(key []byte, previous ...[]byte) (*Signer, error) {
	return NewSignerConfig(DefaultSignerConfig(), key, previous...)
}

// NewSignerConfig is NewSigner with a configuration.
func NewSignerConfig(cfg SignerConfig, key []byte, previous ...[]byte) (*Signer, error) {
	def := DefaultSignerConfig()
	if cfg.ChallengeTTL <= 0 {
		cfg.ChallengeTTL = def.ChallengeTTL
	}
	if cfg.ReplayEntries <= 0 {
		cfg.ReplayEntries = def.ReplayEntries
	}
	s := &Signer{cfg: cfg}
	s.replay.init(cfg.ReplayEntries)
	if err := s.setKeys(key, previous...); err != nil {
		return nil, err
	}
	return s, nil
}

// Rotate makes key the signing key and keeps the current one as the only
// previous key, so tickets issued before the rotation stay valid. Rotate
// again (or restart without it) once they have expired to retire it.
func (s *Signer) Rotate(key []byte) error {
	cur := s.keys.Load().keys[0]
	ks, err := buildKeySet(key)
	if err != nil {
		return err
	}
	ks.keys = append(ks.keys, cur)
	s.keys.Store(ks)
	return nil
}

func (s *Signer) setKeys(key []byte, previous ...[]byte) error {
	ks, err := buildKeySet(key, previous...)
	if err != nil {
		return err
	}
	s.keys.Store(ks)
	return nil
}

func buildKeySet(key []byte, previous ...[]byte) (*keySet, error) {
	ks := &keySet{}
	for i, k := range append([][]byte{key}, previous...) {
		if len(k) < MinKeyLen {
			return nil, fmt.Errorf("gate: signer key %d: %d bytes, want at least %d", i, len(k), MinKeyLen)
		}
		ks.keys = append(ks.keys, newMACKey(k))
	}
	return ks, nil
}

// Issue returns t as a signed ticket: a URL-safe string of at most
// MaxTokenLen characters (76 for a 16-character space id). It fails only on
// a ticket it cannot represent: a listener id not from NewListenerID, an
// empty or too long space, an unknown tier, an expiry outside 1970-2106.
func (s *Signer) Issue(t Ticket) (string, error) {
	if t.Tier >= numTiers {
		return "", amphi.Errorf(amphi.EInvalid, "unknown tier %d", t.Tier)
	}
	var id [idLen]byte
	if len(t.Place) != ListenerIDLen {
		return "", amphi.Errorf(amphi.EInvalid, "place id must be %d base64url characters", ListenerIDLen)
	}
	if n, ok := decodeB64(id[:], t.Place); !ok || n != idLen {
		return "", amphi.Errorf(amphi.EInvalid, "place id must be %d base64url characters", ListenerIDLen)
	}
	return s.sign(kindTicket, byte(t.Tier), t.Expires, id, t.Space)
}

func (s *Signer) sign(kind, param byte, expires time.Time, id [idLen]byte, space string) (string, error) {
	if len(space) == 0 || len(space) > MaxSpaceLen {
		return "", amphi.Errorf(amphi.EInvalid, "space id must be 1 to %d bytes", MaxSpaceLen)
	}
	exp := expires.Unix()
	if exp <= 0 || exp > math.MaxUint32 {
		return "", amphi.Errorf(amphi.EInvalid, "expiry %v out of range", expires)
	}
	k := s.keys.Load().keys[0]
	var raw [maxRaw]byte
	raw[offKind] = kind
	raw[offKey] = k.id
	raw[offParam] = param
	binary.BigEndian.PutUint32(raw[offExp:], uint32(exp))
	if kind == kindTicket {
		binary.BigEndian.PutUint16(raw[offReserved:], s.cfg.Issuer)
	}
	copy(raw[offID:], id[:])
	raw[offSpaceLen] = byte(len(space))
	n := offSpace + copy(raw[offSpace:], space)
	k.mac(raw[n:], raw[:n])
	return base64.RawURLEncoding.EncodeToString(raw[:n+macLen]), nil
}

// token is a decoded ticket or challenge whose MAC has been checked.
type token struct {
	param   byte
	expires int64 // Unix seconds
	space   bool  // whether the space matched
	issuer  uint16
	tag     [macLen]byte
}

// open decodes tok, checks its layout, key and MAC, and compares its space
// with space. The order is the cost order: anything malformed is refused
// before a MAC is computed, and expiry and space are judged only on a
// genuine token so that their counts are evidence, not noise.
func (s *Signer) open(tok string, kind byte, space string) (token, cause, bool) {
	if len(tok) < minTokenLen || len(tok) > MaxTokenLen {
		return token{}, rMalformed, false
	}
	var raw [maxRaw]byte
	n, ok := decodeB64(raw[:], tok)
	issuer := binary.BigEndian.Uint16(raw[offReserved:])
	if !ok || n < minRaw || raw[offKind] != kind || (kind != kindTicket && issuer != 0) {
		return token{}, rMalformed, false
	}
	sl := int(raw[offSpaceLen])
	if sl == 0 || offSpace+sl+macLen != n {
		return token{}, rMalformed, false
	}
	body, tag := raw[:offSpace+sl], raw[offSpace+sl:n]
	keys := s.keys.Load().keys
	found, good := false, false
	for _, k := range keys {
		if k.id != raw[offKey] {
			continue
		}
		found = true
		if k.check(body, tag) {
			good = true
			break
		}
	}
	if !found {
		return token{}, rUnknownKey, false
	}
	if !good {
		return token{}, rBadSignature, false
	}
	t := token{
		param:   raw[offParam],
		expires: int64(binary.BigEndian.Uint32(raw[offExp:])),
		space:   string(raw[offSpace:offSpace+sl]) == space,
		issuer:  issuer,
	}
	copy(t.tag[:], tag)
	return t, 0, true
}

// Verify checks a ticket for space at time now and returns it. A refusal
// is a *RefusalError whose Reason is RefusalTicketMalformed,
// RefusalTicketBadSignature, RefusalTicketWrongSpace or
// RefusalTicketExpired.
// It does no I/O and allocates nothing, accepted or refused; garbage is
// refused before any MAC is computed. The returned Place is a substring
// of tok.
func (s *Signer) Verify(tok, space string, now time.Time) (Ticket, error) {
	t, r, ok := s.open(tok, kindTicket, space)
	switch {
	case !ok:
	case !t.space:
		r = rWrongSpace
	case now.Unix() >= t.expires:
		r = rExpired
	case Tier(t.param) >= numTiers:
		// Signed by us, so only a newer version of amphi could have
		// issued it: refuse rather than guess its priority.
		r = rMalformed
	default:
		s.ticketsOK.Add(1)
		return Ticket{
			Space:   space,
			Place:   tok[idTextStart : idTextStart+ListenerIDLen],
			Tier:    Tier(t.param),
			Expires: time.Unix(t.expires, 0),
			Issuer:  t.issuer,
		}, nil
	}
	return Ticket{}, ticketRefusals[r]
}

// decodeB64 decodes unpadded, canonical base64url from s into dst and
// returns the number of bytes written. Unlike encoding/base64 it takes a
// string without converting it, so nothing escapes or allocates.
func decodeB64(dst []byte, s string) (int, bool) {
	if len(s)%4 == 1 {
		return 0, false
	}
	n := 0
	i := 0
	for ; i+4 <= len(s); i += 4 {
		a, b, c, d := b64[s[i]], b64[s[i+1]], b64[s[i+2]], b64[s[i+3]]
		if (a|b|c|d)&0xc0 != 0 {
			return 0, false
		}
		if n+3 > len(dst) {
			return 0, false
		}
		v := uint32(a)<<18 | uint32(b)<<12 | uint32(c)<<6 | uint32(d)
		dst[n], dst[n+1], dst[n+2] = byte(v>>16), byte(v>>8), byte(v)
		n += 3
	}
	switch len(s) - i {
	case 2:
		a, b := b64[s[i]], b64[s[i+1]]
		if (a|b)&0xc0 != 0 || b&0x0f != 0 || n+1 > len(dst) {
			return 0, false
		}
		dst[n] = a<<2 | b>>4
		n++
	case 3:
		a, b, c := b64[s[i]], b64[s[i+1]], b64[s[i+2]]
		if (a|b|c)&0xc0 != 0 || c&0x03 != 0 || n+2 > len(dst) {
			return 0, false
		}
		dst[n], dst[n+1] = a<<2|b>>4, b<<4|c>>2
		n += 2
	}
	return n, true
}

// b64 maps a base64url character to its value, and anything else to 0xff.
var b64 = func() (t [256]byte) {
	for i := range t {
		t[i] = 0xff
	}
	const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
	for i := 0; i < len(alphabet); i++ {
		t[alphabet[i]] = byte(i)
	}
	return t
}()
