package space

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/amphi-audio/amphi"
)

const (
	// StateMaxAge is how stale the polled state may be: one encoding a
	// second per space, whatever the number of pages polling.
	StateMaxAge = time.Second
	// statePoll is how often a page polls the state, in a small crowd;
	// pollCrowd is the crowd per node past which pages poll less often,
	// up to maxStatePoll (see pollAfter).
	statePoll    = 2 * time.Second
	pollCrowd    = 5000
	maxStatePoll = 15 * time.Second
	// speakingWindow is how recently a speaker must have been audible to
	// be shown speaking: long enough to bridge the gaps between words.
	speakingWindow = 500 * time.Millisecond
)

// stateView is the live state of a space, as pages show it.
type stateView struct {
	ID              string         `json:"id"`
	State           amphi.State    `json:"state"`
	Title           string         `json:"title"`
	Listeners       int            `json:"listeners"`
	Waiting         int            `json:"waiting"`
	Speakers        []SpeakerView  `json:"speakers"`
	Reactions       map[string]int `json:"reactions"`
	ReactionsWindow int            `json:"reactions_window_s"`
	Recording       bool           `json:"recording"`
	Requests        int            `json:"requests"`
	// PollAfterMs is when the page should poll again (pollAfter).
	PollAfterMs int64 `json:"poll_after_ms"`
}

// pollAfter is how long pages should wait before polling the state again
// when crowd people listen or wait here. Over real connections a poll costs
// an edge about what a second of a listener's audio does
// (docs/BENCHMARKS.md), so past pollCrowd the interval grows with the crowd,
// holding polls between one and two pollCrowd per statePoll, up to
// maxStatePoll. An ended space changes no more: its pages need not come
// back soon.
func pollAfter(state amphi.State, crowd int) time.Duration {
	if state == amphi.StateEnded {
		return maxStatePoll
	}
	return min(statePoll*time.Duration(max(1, crowd/pollCrowd)), maxStatePoll)
}

// SpeakerView is how a speaker appears in the state.
type SpeakerView struct {
	ID       string `json:"id"`
	Name     string `json:"name"`
	Host     bool   `json:"host"`
	Speaking bool   `json:"speaking"`
	Muted    bool   `json:"muted"`
}

// liveState builds the state of a space on air here.
func (sp *Space) liveState(now time.Time) *stateView {
	sess, rm := sp.session, sp.room
	info := sess.Space()
	v := &stateView{ID: info.ID, State: amphi.StateLive, Title: info.Title, ReactionsWindow: reactionWindow,
		Recording: sess.Recorder().Recording(), Speakers: []SpeakerView{}}
	st := sp.waiting.Stats(now)
	v.Listeners = st.Connected
	for _, n := range st.Waiting {
		v.Waiting += n
	}
	speaking := sess.Speaking(speakingWindow)
	rm.mu.Lock()
	defer rm.mu.Unlock()
	rm.sweepLocked(now)
	for _, info := range sess.Stage().Speakers() {
		who, ok := rm.names[info.ID]
		if !ok {
			who.name = "Speaker"
		}
		v.Speakers = append(v.Speakers, SpeakerView{ID: info.ID, Name: who.name, Host: who.host,
			Speaking: slices.Contains(speaking, info.ID), Muted: info.Muted})
	}
	v.Reactions = rm.reactionsLocked(now)
	v.Requests = len(rm.pendingLocked())
	v.PollAfterMs = pollAfter(v.State, v.Listeners+v.Waiting).Milliseconds()
	return v
}

// storedState builds the state of a space not on air here from what is
// known of it, with the herd in its waiting room if it is known here (sp
// may be nil).
func storedState(info *amphi.Space, sp *Space, now time.Time) *stateView {
	v := &stateView{ID: info.ID, State: info.State, Title: info.Title, Speakers: []SpeakerView{},
		Reactions: map[string]int{}, ReactionsWindow: reactionWindow}
	crowd := 0
	if sp != nil { // a scheduled space's herd waits here
		for _, n := range sp.waiting.Stats(now).Waiting {
			crowd += n
		}
	}
	v.PollAfterMs = pollAfter(v.State, crowd).Milliseconds()
	return v
}

// State is a space's encoded state and its ETag, shared by every poll
// until it is encoded anew: do not modify it.
type State struct {
	body []byte
	etag string
	at   time.Time
	// etagHeader is etag as a header value, shared by every answer: a
	// poll sets its headers without allocating them.
	etagHeader []string
}

// Body is the state as JSON.
func (st *State) Body() []byte { return st.body }

// ETag is the body's entity tag, quoted.
func (st *State) ETag() string { return st.etag }

// ETagHeader is ETag as a header value, shared: do not modify it.
func (st *State) ETagHeader() []string { return st.etagHeader }

func encodeState(v *stateView, now time.Time) (*State, error) {
	body, err := json.Marshal(v)
	if err != nil {
		return nil, err
	}
	return stateOf(body, now), nil
}

// stateOf is the encoded state body at now, with its ETag.
func stateOf(body []byte, now time.Time) *State {
	sum := sha256.Sum256(body)
	etag := `"` + hex.EncodeToString(sum[:8]) + `"`
	return &State{body: body, etag: etag, at: now, etagHeader: []string{etag}}
}

// stateCache keeps each space's encoded state, so a million pages polling
// cost one encoding a second per space. A poll only loads from it: no lock
// is shared by all the pages polling. It holds the spaces polled, known
// here or not (an ended one's pages still poll).
type stateCache struct {
	m sync.Map     // space id → *State
	n atomic.Int64 // entries, roughly: to bound the map
	// gen counts forgets: a state encoded while one happened may miss
	// the change that caused it, and is not kept (put).
	gen atomic.Uint64
}

// maxCachedStates bounds the cache against polls of many spaces; past it
// the cache starts over, which costs only re-encoding.
const maxCachedStates = 10000

func (c *stateCache) get(id string) *State {
	v, _ := c.m.Load(id)
	st, _ := v.(*State)
	return st
}

// generation returns what put is given for a state encoded from now on.
func (c *stateCache) generation() uint64 { return c.gen.Load() }

// put caches st, encoded from what was true at generation gen, unless a
// forget came since: then st may say what that forget made old news of
// (a request to speak made while the state was encoded).
func (c *stateCache) put(id string, st *State, gen uint64) {
	if _, loaded := c.m.Swap(id, st); !loaded && c.n.Add(1) > maxCachedStates {
		c.m.Clear()
		c.n.Store(0)
	}
	if c.gen.Load() != gen && c.m.CompareAndDelete(id, st) {
		c.n.Add(-1)
	}
}

func (c *stateCache) forget(id string) {
	c.gen.Add(1)
	if _, ok := c.m.LoadAndDelete(id); ok {
		c.n.Add(-1)
	}
}
