package space

import (
	"crypto/rand"
	"crypto/subtle"
	"encoding/hex"
	"slices"
	"sync"
	"time"

	"github.com/amphi-audio/amphi"
	"github.com/amphi-audio/amphi/internal/store"
	"github.com/amphi-audio/amphi/internal/timeline"
)

// What a space's room holds beyond the audio: who is on stage under what
// name, requests to speak, reactions and the event streams of the few on
// stage. It is all in memory on the node where the space is on air: a
// restart ends the space anyway.

// ReactionKinds are the reactions listeners may send.
var ReactionKinds = [...]string{"clap", "heart", "laugh", "fire", "wave"}

const (
	// reactionWindow is how many seconds of reactions the state shows.
	reactionWindow = 10
	// MaxPendingRequests caps the requests to speak waiting for the host:
	// more than a host can read, few enough to cost nothing.
	MaxPendingRequests = 100
	// RequestIdle drops a pending request its requester stopped polling
	// (the page was closed), so the host does not approve someone gone.
	RequestIdle = 30 * time.Second
	// answeredKeep is how long an answered request stays for its
	// requester to read the answer.
	answeredKeep = 10 * time.Minute
	// How many event streams one space may have (the stage is 13 people;
	// a few consoles besides) and how many one token or account may hold
	// (a console and a stage page), so one cannot take them all.
	maxEventStreams  = 32
	maxCallerStreams = 2
)

// Request statuses.
const (
	RequestPending  = "pending"
	RequestApproved = "approved"
	RequestDeclined = "declined"
)

// SpeakRequest is a listener's request to speak, as the host and its
// requester read it.
type SpeakRequest struct {
	ID        string    `json:"id"`
	Name      string    `json:"name"`
	Status    string    `json:"status"`
	CreatedAt time.Time `json:"created_at"`

	secret []byte    // SHA-256 of the requester's secret
	token  string    // the speaker token, once approved: for the requester only
	seen   time.Time // the requester's last poll
}

// Token is the speaker token of an approved request: for its requester
// only.
func (q *SpeakRequest) Token() string { return q.token }

// onStage is how a speaker appears to listeners.
type onStage struct {
	name string
	host bool
}

type reactionBucket struct {
	sec int64
	n   [len(ReactionKinds)]int
}

// Room is a live space's room on this node. It is safe for concurrent use.
type Room struct {
	mu        sync.Mutex
	requests  map[string]*SpeakRequest
	reqChange uint64 // bumped when the pending requests change
	names     map[string]onStage
	reactions [reactionWindow]reactionBucket
	streams   int
	// cuts holds a channel per open event stream, by the speaker id of
	// its caller, closed to cut the stream when the host takes the
	// caller's token back; revoked remembers those speaker ids, so a
	// stream authorized just before the revocation cannot open after it.
	cuts    map[string][]chan struct{}
	revoked map[string]bool
	ended   chan struct{}   // closed when the space goes off air here
	why     amphi.EndReason // set before ended is closed
	// recorded is how far the recording goes: a reaction's place on the
	// replay's timeline. counts holds the reactions per bucket of that
	// time not yet stored (Lifecycle.keepTimeline).
	recorded func() time.Duration
	counts   timeline.Reactions
}

// newRoom returns the room of a space whose recording has lasted recorded()
// so far.
func newRoom(recorded func() time.Duration) *Room {
	return &Room{requests: map[string]*SpeakRequest{}, names: map[string]onStage{}, ended: make(chan struct{}),
		cuts: map[string][]chan struct{}{}, revoked: map[string]bool{}, recorded: recorded}
}

// close ends the room for why: its event streams say so and stop.
func (rm *Room) close(why amphi.EndReason) {
	rm.why = why
	close(rm.ended)
}

// Ended is closed when the space goes off air here.
func (rm *Room) Ended() <-chan struct{} { return rm.ended }

// EndReason is why the space went off air, once Ended is closed.
func (rm *Room) EndReason() amphi.EndReason { return rm.why }

// OpenStream counts an event stream of the caller with the speaker id
// within the caller's and the space's caps. It returns the channel that
// cuts the stream and the function that uncounts it.
func (rm *Room) OpenStream(who string) (cut <-chan struct{}, done func(), err error) {
	rm.mu.Lock()
	defer rm.mu.Unlock()
	switch {
	case rm.revoked[who]:
		return nil, nil, amphi.Errorf(amphi.EUnauthorized, "the host removed you from the stage: this link no longer works")
	case len(rm.cuts[who]) >= maxCallerStreams:
		return nil, nil, amphi.Errorf(amphi.ERateLimited, "this link already has %d event streams open, the most it may: close one (another tab?) and retry", maxCallerStreams)
	case rm.streams >= maxEventStreams:
		return nil, nil, amphi.Errorf(amphi.EFull, "this space already has %d event streams", maxEventStreams)
	}
	rm.streams++
	c := make(chan struct{})
	rm.cuts[who] = append(rm.cuts[who], c)
	return c, func() {
		rm.mu.Lock()
		defer rm.mu.Unlock()
		rm.streams--
		if left := slices.DeleteFunc(rm.cuts[who], func(x chan struct{}) bool { return x == c }); len(left) > 0 {
			rm.cuts[who] = left
		} else {
			delete(rm.cuts, who)
		}
	}, nil
}

// Revoke cuts the event streams of the speaker whose token the host took
// back, and refuses it new ones.
func (rm *Room) Revoke(who string) {
	rm.mu.Lock()
	defer rm.mu.Unlock()
	rm.revoked[who] = true
	for _, c := range rm.cuts[who] {
		close(c)
	}
	delete(rm.cuts, who)
}

// SetName is how the speaker with the id appears on stage.
func (rm *Room) SetName(speaker, name string, host bool) {
	rm.mu.Lock()
	defer rm.mu.Unlock()
	rm.names[speaker] = onStage{name: name, host: host}
}

// Name returns how the speaker with the id appears on stage: "" if it
// never joined.
func (rm *Room) Name(speaker string) (name string, host bool) {
	rm.mu.Lock()
	defer rm.mu.Unlock()
	who := rm.names[speaker]
	return who.name, who.host
}

// sweepLocked drops requests whose requesters are gone or answered long ago.
func (rm *Room) sweepLocked(now time.Time) {
	for id, q := range rm.requests {
		idle := now.Sub(q.seen)
		if (q.Status == RequestPending && idle > RequestIdle) || idle > answeredKeep {
			delete(rm.requests, id)
			if q.Status == RequestPending {
				rm.reqChange++
			}
		}
	}
}

// pendingLocked lists copies of the pending requests, oldest first; never
// nil, so it encodes as [].
func (rm *Room) pendingLocked() []SpeakRequest {
	out := []SpeakRequest{}
	for _, q := range rm.requests {
		if q.Status == RequestPending {
			out = append(out, *q)
		}
	}
	slices.SortFunc(out, func(a, b SpeakRequest) int { return a.CreatedAt.Compare(b.CreatedAt) })
	return out
}

// Pending lists the pending requests to speak at now, oldest first.
func (rm *Room) Pending(now time.Time) []SpeakRequest {
	rm.mu.Lock()
	defer rm.mu.Unlock()
	rm.sweepLocked(now)
	return rm.pendingLocked()
}

// PendingSince lists the pending requests if they changed since the
// version seen, and the version they are at: the host's event stream
// sends them only then.
func (rm *Room) PendingSince(seen uint64) (pending []SpeakRequest, version uint64, changed bool) {
	rm.mu.Lock()
	defer rm.mu.Unlock()
	if rm.reqChange == seen {
		return nil, seen, false
	}
	return rm.pendingLocked(), rm.reqChange, true
}

// Ask adds a request to speak under the name at now and returns a copy of
// it and the secret its requester reads and withdraws it with. Past
// MaxPendingRequests it is amphi.EFull.
func (rm *Room) Ask(name string, now time.Time) (SpeakRequest, string, error) {
	secret, hash, err := store.NewToken()
	if err != nil {
		return SpeakRequest{}, "", err
	}
	var idb [8]byte
	rand.Read(idb[:])
	q := &SpeakRequest{ID: hex.EncodeToString(idb[:]), Name: name, Status: RequestPending, CreatedAt: now.UTC(), secret: hash, seen: now}
	rm.mu.Lock()
	defer rm.mu.Unlock()
	rm.sweepLocked(now)
	if len(rm.pendingLocked()) >= MaxPendingRequests {
		return SpeakRequest{}, "", amphi.Errorf(amphi.EFull, "%d requests to speak are already waiting for the host: try again later", MaxPendingRequests)
	}
	rm.requests[q.ID] = q
	rm.reqChange++
	return *q, secret, nil
}

// ownLocked finds the request the secret opens and marks its requester
// present at now.
func (rm *Room) ownLocked(id, secret string, now time.Time) (*SpeakRequest, error) {
	rm.sweepLocked(now)
	q := rm.requests[id]
	switch {
	case q == nil:
		return nil, amphi.Errorf(amphi.ENotFound, "no such request to speak: it was withdrawn, or dropped after %s without polling", RequestIdle)
	case subtle.ConstantTimeCompare(store.HashToken(secret), q.secret) != 1:
		return nil, amphi.Errorf(amphi.EUnauthorized, "wrong secret for this request")
	}
	q.seen = now
	return q, nil
}

// Own returns a copy of the request the secret opens, as its requester
// polls it at now.
func (rm *Room) Own(id, secret string, now time.Time) (SpeakRequest, error) {
	rm.mu.Lock()
	defer rm.mu.Unlock()
	q, err := rm.ownLocked(id, secret, now)
	if err != nil {
		return SpeakRequest{}, err
	}
	return *q, nil
}

// Withdraw drops the request the secret opens.
func (rm *Room) Withdraw(id, secret string, now time.Time) error {
	rm.mu.Lock()
	defer rm.mu.Unlock()
	q, err := rm.ownLocked(id, secret, now)
	if err != nil {
		return err
	}
	delete(rm.requests, q.ID)
	if q.Status == RequestPending {
		rm.reqChange++
	}
	return nil
}

// Answerable returns the name of a pending request the host may answer.
func (rm *Room) Answerable(id string) (string, error) {
	rm.mu.Lock()
	defer rm.mu.Unlock()
	q := rm.requests[id]
	switch {
	case q == nil:
		return "", amphi.Errorf(amphi.ENotFound, "no such request to speak: it was withdrawn, or its listener left")
	case q.Status != RequestPending:
		return "", amphi.Errorf(amphi.EConflict, "this request was already %s", q.Status)
	}
	return q.Name, nil
}

// Answer approves (with the speaker token minted for it) or declines a
// request Answerable found, and returns a copy of it. Of two racing
// answers the first stands.
func (rm *Room) Answer(id, status, token string) (SpeakRequest, error) {
	rm.mu.Lock()
	defer rm.mu.Unlock()
	q := rm.requests[id]
	if q == nil {
		return SpeakRequest{}, amphi.Errorf(amphi.ENotFound, "no such request to speak: it was withdrawn, or its listener left")
	}
	if q.Status == RequestPending {
		q.Status, q.token = status, token
		rm.reqChange++
	}
	return *q, nil
}

// React adds count reactions of the kind (an index in ReactionKinds) at
// now. On the replay's timeline they count where the recording is when
// they arrive: listeners hear the program a little late (seconds with the
// default player), which the timeline's 5 s buckets mostly absorb.
func (rm *Room) React(kind, count int, now time.Time) {
	sec := now.Unix()
	at := rm.recorded()
	rm.mu.Lock()
	defer rm.mu.Unlock()
	b := &rm.reactions[sec%reactionWindow]
	if b.sec != sec {
		*b = reactionBucket{sec: sec}
	}
	b.n[kind] += count
	rm.counts.Add(ReactionKinds[kind], count, at)
}

// flushCounts appends to dst the reactions counted since the last flush
// (timeline.Reactions.Flush).
func (rm *Room) flushCounts(dst []amphi.ReactionCount) []amphi.ReactionCount {
	rm.mu.Lock()
	defer rm.mu.Unlock()
	return rm.counts.Flush(dst)
}

// restoreCounts takes back counts a flush returned that were not stored.
func (rm *Room) restoreCounts(counts []amphi.ReactionCount) {
	rm.mu.Lock()
	defer rm.mu.Unlock()
	rm.counts.Restore(counts)
}

func (rm *Room) reactionsLocked(now time.Time) map[string]int {
	out := map[string]int{}
	sec := now.Unix()
	for _, b := range rm.reactions {
		if sec-b.sec >= reactionWindow {
			continue
		}
		for k, n := range b.n {
			if n > 0 {
				out[ReactionKinds[k]] += n
			}
		}
	}
	return out
}
