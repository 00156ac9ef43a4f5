package gate

import (
	"errors"
	"sync/atomic"

	"github.com/amphi-audio/amphi"
)

// Reasons a request is refused. Each is counted in the Stats of the type that
// refused it, and Reason returns it from the error.
const (
	// ReasonMalformed: not a token or challenge at all (length, alphabet,
	// version, layout) or a nonce of the wrong shape. Refused before any
	// MAC is computed.
	ReasonMalformed = "malformed"
	// ReasonUnknownKey: signed with a key this node does not hold, such as
	// one rotated out. Refused before any MAC is computed.
	ReasonUnknownKey = "unknown_key"
	// ReasonBadSignature: the MAC does not match: forged or altered.
	ReasonBadSignature = "bad_signature"
	// ReasonWrongSpace: genuine, but issued for another space.
	ReasonWrongSpace = "wrong_space"
	// ReasonExpired: genuine, but past its expiry (a stale challenge too).
	ReasonExpired = "expired"
	// ReasonWrongAnswer: a proof-of-work nonce that does not reach the
	// challenge's difficulty.
	ReasonWrongAnswer = "wrong_answer"
	// ReasonReplayed: a challenge already redeemed once.
	ReasonReplayed = "replayed"
	// ReasonBusy: the replay cache is full of live entries, so a solution
	// cannot be remembered and is refused rather than let replays through.
	ReasonBusy = "busy"
	// ReasonSource and ReasonPrefix: a SourceLimiter's per-address or
	// per-prefix bucket is empty.
	ReasonSource = "source"
	ReasonPrefix = "prefix"
	// ReasonFull: a room's waiting room is at its cap.
	ReasonFull = "full"
	// ReasonOutdated: a correct proof of work for a challenge issued at a
	// lower difficulty than the one in force now.
	ReasonOutdated = "outdated"
)

// reason indexes the counters; the order matches reasonNames.
type reason uint8

const (
	rMalformed reason = iota
	rUnknownKey
	rBadSignature
	rWrongSpace
	rExpired
	rWrongAnswer
	rReplayed
	rBusy
	rOutdated
	numReasons
)

var reasonNames = [numReasons]string{
	ReasonMalformed, ReasonUnknownKey, ReasonBadSignature, ReasonWrongSpace,
	ReasonExpired, ReasonWrongAnswer, ReasonReplayed, ReasonBusy, ReasonOutdated,
}

// RefusalError is the error of a refused ticket or proof of work. It
// unwraps to an *amphi.Error whose code the api package maps to a status, so
// the client sees a clear message and the ops layer the exact reason.
// The values are preallocated: refusing allocates nothing.
type RefusalError struct {
	// Reason is one of the Reason constants.
	Reason string
	err    *amphi.Error
}

func (e *RefusalError) Error() string { return "gate: " + e.Reason + ": " + e.err.Message }

// Unwrap returns the *amphi.Error a client may see.
func (e *RefusalError) Unwrap() error { return e.err }

func newRefusal(r string, code, msg string) *RefusalError {
	return &RefusalError{Reason: r, err: amphi.Errorf(code, "%s", msg)}
}

// Preallocated refusals, one per reason and kind of credential.
var (
	ticketRefusals = [numReasons]*RefusalError{
		rMalformed:    newRefusal(ReasonMalformed, amphi.EUnauthorized, "malformed ticket"),
		rUnknownKey:   newRefusal(ReasonUnknownKey, amphi.EUnauthorized, "ticket signed with an unknown key: join again"),
		rBadSignature: newRefusal(ReasonBadSignature, amphi.EUnauthorized, "invalid ticket"),
		rWrongSpace:   newRefusal(ReasonWrongSpace, amphi.EForbidden, "ticket is for another space"),
		rExpired:      newRefusal(ReasonExpired, amphi.EUnauthorized, "ticket expired: join again"),
	}
	powRefusals = [numReasons]*RefusalError{
		rMalformed:    newRefusal(ReasonMalformed, amphi.EInvalid, "malformed proof-of-work challenge or nonce"),
		rUnknownKey:   newRefusal(ReasonUnknownKey, amphi.EForbidden, "challenge signed with an unknown key: ask for a new one"),
		rBadSignature: newRefusal(ReasonBadSignature, amphi.EForbidden, "invalid challenge"),
		rWrongSpace:   newRefusal(ReasonWrongSpace, amphi.EForbidden, "challenge is for another space"),
		rExpired:      newRefusal(ReasonExpired, amphi.EForbidden, "challenge expired: ask for a new one"),
		rWrongAnswer:  newRefusal(ReasonWrongAnswer, amphi.EForbidden, "wrong proof-of-work answer"),
		rReplayed:     newRefusal(ReasonReplayed, amphi.EForbidden, "challenge already used: ask for a new one"),
		rBusy:         newRefusal(ReasonBusy, amphi.EUnavailable, "too many proof-of-work solutions in flight: retry later"),
		rOutdated:     newRefusal(ReasonOutdated, amphi.EForbidden, "the difficulty rose since this challenge was issued: solve a new one"),
	}
)

// Reason returns the refusal reason of err (one of the Reason constants),
// or "" when err is nil or not a refusal.
func Reason(err error) string {
	var r *RefusalError
	if errors.As(err, &r) {
		return r.Reason
	}
	return ""
}

// counters counts refusals by reason without locks.
type counters [numReasons]atomic.Uint64

func (c *counters) snapshot() map[string]uint64 {
	m := make(map[string]uint64, numReasons)
	for i := range c {
		if n := c[i].Load(); n > 0 {
			m[reasonNames[i]] = n
		}
	}
	return m
}
