package gate

import (
	"errors"

	"github.com/amphi-audio/amphi"
)

// Refusal is why a request for a place, a ticket's stream or a connection
// was refused: what the api package counts, amphi_refusals_total{reason}
// exports (String is the label) and /ops judges. The zero value is no
// refusal.
type Refusal uint8

// Refusals. The gate returns the ticket, proof-of-work and rate ones; the
// api package and the server's listeners name the rest when they refuse.
const (
	_ Refusal = iota
	// RefusalTicketMalformed: not a ticket at all, or none.
	RefusalTicketMalformed
	// RefusalTicketBadSignature: forged or altered, or signed with a key
	// this node does not hold (such as one rotated out).
	RefusalTicketBadSignature
	// RefusalTicketExpired: genuine, but past its expiry.
	RefusalTicketExpired
	// RefusalTicketWrongSpace: genuine, but issued for another space.
	RefusalTicketWrongSpace
	// RefusalTicketLapsed: a genuine ticket whose place is gone (its
	// holder never connected, or left long ago): join again.
	RefusalTicketLapsed
	// RefusalPoWWrong: a nonce that does not reach the challenge's
	// difficulty, or a challenge that is malformed, forged, signed with an
	// unknown key or for another space.
	RefusalPoWWrong
	// RefusalPoWStale: a challenge past its expiry.
	RefusalPoWStale
	// RefusalPoWReplayed: a challenge already redeemed once.
	RefusalPoWReplayed
	// RefusalPoWOutdated: a correct answer to a challenge issued before
	// the difficulty rose: a new challenge is sent.
	RefusalPoWOutdated
	// RefusalPoWBusy: the replay cache is full of live entries, so a
	// solution cannot be remembered and is refused rather than let
	// replays through.
	RefusalPoWBusy
	// RefusalRateSource and RefusalRatePrefix: a SourceLimiter's
	// per-address or per-prefix bucket is empty (and its queue lane full).
	RefusalRateSource
	RefusalRatePrefix
	// RefusalPollEarly: someone in line polled far more often than told
	// (Early).
	RefusalPollEarly
	// RefusalRoomFull: a plain player found the space full; it cannot wait.
	RefusalRoomFull
	// RefusalWaitingFull: the waiting room itself is full (Full).
	RefusalWaitingFull
	// RefusalBadRequest: a join whose body does not parse, or a listen
	// request without the parameters it needs.
	RefusalBadRequest
	// RefusalNotFound: a join or listen request for a space that does
	// not exist.
	RefusalNotFound
	// RefusalConnsNodeCap and RefusalConnsSourceCap: a connection closed
	// at accept, past the node's cap or its source address's.
	RefusalConnsNodeCap
	RefusalConnsSourceCap
	// RefusalIncomplete: a connection that sent part of a request and
	// was closed before completing one, by the header timeout: a
	// slowloris. A connection that sends nothing (a browser's
	// preconnect) is not counted.
	RefusalIncomplete
	numRefusals
)

// refusalKind is what a refusal is evidence of.
type refusalKind uint8

const (
	// otherRefusal happens to legitimate clients now and then: a lapsed
	// place, a raised difficulty, a connection cap.
	otherRefusal refusalKind = iota
	// invalidRefusal is what a legitimate client does not produce at
	// scale: its share and rate arm proof of work (PoWPolicy) and make /ops
	// say under_attack.
	invalidRefusal
	// capacityRefusal is legitimate demand beyond capacity: overload, not
	// attack.
	capacityRefusal
)

// refusals is the one table of refusals: each one's name (its label in
// amphi_refusals_total{reason} and on /ops) and what it is evidence of.
var refusals = [numRefusals]struct {
	name string
	kind refusalKind
}{
	RefusalTicketMalformed:    {"ticket_malformed", invalidRefusal},
	RefusalTicketBadSignature: {"ticket_bad_signature", invalidRefusal},
	RefusalTicketExpired:      {"ticket_expired", invalidRefusal},
	RefusalTicketWrongSpace:   {"ticket_wrong_space", invalidRefusal},
	RefusalTicketLapsed:       {"ticket_lapsed", otherRefusal},
	RefusalPoWWrong:           {"pow_wrong", invalidRefusal},
	RefusalPoWStale:           {"pow_stale", invalidRefusal},
	RefusalPoWReplayed:        {"pow_replayed", invalidRefusal},
	RefusalPoWOutdated:        {"pow_outdated", otherRefusal},
	RefusalPoWBusy:            {"pow_busy", invalidRefusal},
	RefusalRateSource:         {"rate_source", invalidRefusal},
	RefusalRatePrefix:         {"rate_prefix", invalidRefusal},
	RefusalPollEarly:          {"poll_early", invalidRefusal},
	RefusalRoomFull:           {"room_full", capacityRefusal},
	RefusalWaitingFull:        {"waiting_full", capacityRefusal},
	RefusalBadRequest:         {"bad_request", invalidRefusal},
	RefusalNotFound:           {"not_found", invalidRefusal},
	RefusalConnsNodeCap:       {"conns_node_cap", otherRefusal},
	RefusalConnsSourceCap:     {"conns_source_cap", otherRefusal},
	RefusalIncomplete:         {"incomplete_request", invalidRefusal},
}

// String returns the refusal's name in metrics and /ops, "" for the zero
// value.
func (r Refusal) String() string {
	if r >= numRefusals {
		return ""
	}
	return refusals[r].name
}

// Invalid reports whether r is evidence of abuse: what a legitimate client
// does not produce at scale.
func (r Refusal) Invalid() bool { return r < numRefusals && refusals[r].kind == invalidRefusal }

// Capacity reports whether r is legitimate demand beyond capacity.
func (r Refusal) Capacity() bool { return r < numRefusals && refusals[r].kind == capacityRefusal }

// Refusals returns every Refusal, in order.
func Refusals() []Refusal {
	rs := make([]Refusal, 0, numRefusals-1)
	for r := Refusal(1); r < numRefusals; r++ {
		rs = append(rs, r)
	}
	return rs
}

// RefusalNames returns the names of the refusals keep accepts, such as
// Refusal.Invalid: the lists the ops monitor is configured with.
func RefusalNames(keep func(Refusal) bool) []string {
	var names []string
	for _, r := range Refusals() {
		if keep(r) {
			names = append(names, r.String())
		}
	}
	return names
}

// cause is why the gate refused a credential, finer than its Refusal: it
// picks the message a client sees.
type cause uint8

const (
	// rMalformed: not a token or challenge at all (length, alphabet,
	// version, layout) or a nonce of the wrong shape. Refused before any
	// MAC is computed.
	rMalformed cause = iota
	// rUnknownKey: signed with a key this node does not hold. Refused
	// before any MAC is computed.
	rUnknownKey
	rBadSignature
	rWrongSpace
	rExpired
	rWrongAnswer
	rReplayed
	rBusy
	rOutdated
	numCauses
)

// RefusalError is the error of a refused ticket or proof of work. It
// unwraps to an *amphi.Error whose code the api package maps to a status, so
// the client sees a clear message and the ops layer the exact reason.
// The values are preallocated: refusing allocates nothing.
type RefusalError struct {
	// Reason is what the refusal is counted as; the message says more.
	Reason Refusal
	err    *amphi.Error
}

func (e *RefusalError) Error() string { return "gate: " + e.Reason.String() + ": " + e.err.Message }

// Unwrap returns the *amphi.Error a client may see.
func (e *RefusalError) Unwrap() error { return e.err }

func newRefusal(r Refusal, code, msg string) *RefusalError {
	return &RefusalError{Reason: r, err: amphi.Errorf(code, "%s", msg)}
}

// Preallocated refusals, one per cause and kind of credential.
var (
	ticketRefusals = [numCauses]*RefusalError{
		rMalformed:    newRefusal(RefusalTicketMalformed, amphi.EUnauthorized, "malformed ticket"),
		rUnknownKey:   newRefusal(RefusalTicketBadSignature, amphi.EUnauthorized, "ticket signed with an unknown key: join again"),
		rBadSignature: newRefusal(RefusalTicketBadSignature, amphi.EUnauthorized, "invalid ticket"),
		rWrongSpace:   newRefusal(RefusalTicketWrongSpace, amphi.EForbidden, "ticket is for another space"),
		rExpired:      newRefusal(RefusalTicketExpired, amphi.EUnauthorized, "ticket expired: join again"),
	}
	powRefusals = [numCauses]*RefusalError{
		rMalformed:    newRefusal(RefusalPoWWrong, amphi.EInvalid, "malformed proof-of-work challenge or nonce"),
		rUnknownKey:   newRefusal(RefusalPoWWrong, amphi.EForbidden, "challenge signed with an unknown key: ask for a new one"),
		rBadSignature: newRefusal(RefusalPoWWrong, amphi.EForbidden, "invalid challenge"),
		rWrongSpace:   newRefusal(RefusalPoWWrong, amphi.EForbidden, "challenge is for another space"),
		rExpired:      newRefusal(RefusalPoWStale, amphi.EForbidden, "challenge expired: ask for a new one"),
		rWrongAnswer:  newRefusal(RefusalPoWWrong, amphi.EForbidden, "wrong proof-of-work answer"),
		rReplayed:     newRefusal(RefusalPoWReplayed, amphi.EForbidden, "challenge already used: ask for a new one"),
		rBusy:         newRefusal(RefusalPoWBusy, amphi.EUnavailable, "too many proof-of-work solutions in flight: retry later"),
		rOutdated:     newRefusal(RefusalPoWOutdated, amphi.EForbidden, "the difficulty rose since this challenge was issued: solve a new one"),
	}
)

// Reason returns the refusal of err, or 0 when err is nil or not a
// *RefusalError.
func Reason(err error) Refusal {
	var r *RefusalError
	if errors.As(err, &r) {
		return r.Reason
	}
	return 0
}
