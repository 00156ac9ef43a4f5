// Package amphi holds the domain types every other package shares: spaces,
// roles, the error type whose codes map to HTTP statuses in one table, and
// the program's media format (media.go).
package amphi

import (
	"errors"
	"fmt"
	"time"
)

// Error codes that callers branch on. The api package maps each to one HTTP
// status; clients see Code and Message, never internal error text.
const (
	EInvalid       = "invalid"        // malformed input
	EUnauthorized  = "unauthorized"   // missing or wrong credentials
	EForbidden     = "forbidden"      // valid credentials, not allowed
	ENotFound      = "not_found"      // no such resource
	EConflict      = "conflict"       // wrong state for the request
	EFull          = "full"           // a capacity limit was reached
	ETooLarge      = "too_large"      // body over its cap
	EUnsupported   = "unsupported"    // wrong media type or codec
	EInternal      = "internal"       // our fault
	EUnavailable   = "unavailable"    // shutting down or overloaded
	EGone          = "gone"           // existed, no longer does
	ENotAcceptable = "not_acceptable" // no representation the client takes
	ERateLimited   = "rate_limited"   // too many requests from one source
)

// Error is an error a client may see: a code from the list above and a
// message written for people.
type Error struct {
	Code    string
	Message string
}

func (e *Error) Error() string { return fmt.Sprintf("amphi: %s: %s", e.Code, e.Message) }

// Errorf returns an *Error with the code and a formatted message.
func Errorf(code, format string, args ...any) *Error {
	return &Error{Code: code, Message: fmt.Sprintf(format, args...)}
}

// ErrorCode returns the code of the first *Error in err's chain, EInternal
// for any other non-nil error, and "" for nil.
func ErrorCode(err error) string {
	var e *Error
	switch {
	case err == nil:
		return ""
	case errors.As(err, &e):
		return e.Code
	default:
		return EInternal
	}
}

// ErrorMessage returns the message of the first *Error in err's chain, and a
// generic text for any other error so internals never leak to clients.
func ErrorMessage(err error) string {
	var e *Error
	switch {
	case err == nil:
		return ""
	case errors.As(err, &e):
		return e.Message
	default:
		return "internal error"
	}
}

// State is where a space is in its life.
type State string

// A space is scheduled until its host starts it, live while on air, and ended
// for good afterwards.
const (
	StateScheduled State = "scheduled"
	StateLive      State = "live"
	StateEnded     State = "ended"
)

// EndReason says why a space ended.
type EndReason string

// Why spaces end.
const (
	EndHost     EndReason = "host"     // its host ended it
	EndIdle     EndReason = "idle"     // nobody was on its stage for the server's idle time
	EndShutdown EndReason = "shutdown" // the server shut down while it was live
	EndCrash    EndReason = "crash"    // the server stopped without ending it; ended at restart
	EndFailed   EndReason = "failed"   // its audio could not be put on air
)

// JoinStatus is the status of an answer to POST /spaces/{id}/join: the
// server sends it, and the clients (client, load, the web page) follow it.
type JoinStatus string

// Join statuses.
const (
	JoinAdmitted  JoinStatus = "admitted"  // a ticket and the URL to listen with it
	JoinWaiting   JoinStatus = "waiting"   // a place in line: poll again with the listener id
	JoinChallenge JoinStatus = "challenge" // solve the proof of work and join again
)

// Role is what a token lets its bearer do in one space.
type Role string

// Roles, from most to least powerful.
const (
	RoleHost Role = "host"
	// RoleCohost speaks as a speaker does and clips as the host does; a
	// host mints co-host tokens for the people who run the space with
	// them. Ending the space, moderating and deleting stay the host's.
	RoleCohost  Role = "cohost"
	RoleSpeaker Role = "speaker"
)

// Space is one live audio room.
type Space struct {
	ID          string     `json:"id"`
	Title       string     `json:"title"`
	Description string     `json:"description"`
	State       State      `json:"state"`
	ScheduledAt *time.Time `json:"scheduled_at,omitempty"`
	CreatedAt   time.Time  `json:"created_at"`
	StartedAt   *time.Time `json:"started_at,omitempty"`
	EndedAt     *time.Time `json:"ended_at,omitempty"`
	// EndReason says why an ended space ended; "" for one ended before
	// reasons were recorded.
	EndReason EndReason `json:"end_reason,omitempty"`
	// Serial is the Ogg logical stream serial number of the space's program,
	// fixed at creation so every edge builds identical pages.
	Serial uint32 `json:"-"`
	// OwnerID is the account that created the space, "" if it was created
	// without one. It is not shown to clients.
	OwnerID string `json:"-"`
}

// Clip is a range of a space's recording cut into an Ogg Opus file of
// its own (package clip), with a title, to share.
type Clip struct {
	ID      string
	SpaceID string
	Title   string
	// From and To are the range in the recording.
	From, To time.Duration
	// Path is relative to the data directory.
	Path      string
	Bytes     int64
	CreatedAt time.Time
}

// Recording is the index entry of one space's program on disk.
type Recording struct {
	SpaceID string `json:"space_id"`
	// Path is relative to the data directory.
	Path string `json:"-"`
	// Duration is the audio the file holds, known once finalised.
	Duration  time.Duration `json:"duration_ns"`
	Bytes     int64         `json:"bytes"`
	Finalized bool          `json:"finalized"`
}
