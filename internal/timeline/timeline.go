// Package timeline keeps who spoke when in a space and when its audience
// reacted, in the time of the space's recording, for the replay page:
// Spans merges the speakers the mixer hears in each 20 ms frame into
// spans, Reactions counts reactions in buckets of a few seconds, and Build
// makes the view the replay page draws from what the store kept of both.
// The live session and the room feed it while the space is on air; the
// space's lifecycle writes it to the store every few seconds and at the
// end. It holds no lock of its own: its callers already hold one.
package timeline

import (
	"cmp"
	"maps"
	"slices"
	"time"

	"github.com/amphi-audio/amphi"
)

const (
	// MergeGap is the longest silence inside one span: the pauses
	// between words and sentences do not split someone's talk.
	MergeGap = time.Second
	// Bucket is the width of a reaction bucket: pages send their taps
	// every 2 s, so a burst lands in one or two buckets, and 5 s still
	// points at a moment worth seeking to.
	Bucket = 5 * time.Second
	// Peaks is how many of the busiest buckets the view marks.
	Peaks = 3
	// maxPending bounds what a store that keeps failing leaves waiting
	// in memory (Restore): past it the oldest flush is given up.
	maxPending = 4096
)

// Spans merges who was audible, frame by frame, into spans. Its zero
// value is ready to use. It is not safe for concurrent use: the live
// session updates it under the lock it already takes for each frame
// someone speaks in.
type Spans struct {
	open   map[string]amphi.SpeakerSpan // by speaker id
	closed []amphi.SpeakerSpan
}

// Heard notes that the speaker was audible in the frame starting at at.
// It allocates only when a span opens; a frame of a span going on costs a
// map lookup and store.
func (s *Spans) Heard(id string, at time.Duration) {
	end := at + amphi.FrameDuration
	sp, ok := s.open[id]
	switch {
	case ok && at-sp.To < MergeGap:
		sp.To = max(sp.To, end)
	default:
		if ok {
			s.closed = append(s.closed, sp)
		}
		if s.open == nil {
			s.open = make(map[string]amphi.SpeakerSpan)
		}
		sp = amphi.SpeakerSpan{Speaker: id, From: at, To: end}
	}
	s.open[id] = sp
}

// Flush appends to dst the spans closed since the last flush, which it
// forgets, and those still open, which it keeps: an open span is stored
// again each time as it grows (under its speaker and start), so a crash
// loses only what came after the last flush. A span not heard for
// MergeGap before now, or more, is closed.
func (s *Spans) Flush(dst []amphi.SpeakerSpan, now time.Duration) []amphi.SpeakerSpan {
	dst = append(dst, s.closed...)
	s.closed = s.closed[:0]
	for id, sp := range s.open {
		dst = append(dst, sp)
		if now-sp.To >= MergeGap {
			delete(s.open, id)
		}
	}
	return dst
}

// Restore takes back spans a flush returned that could not be stored, so
// the next flush stores them again. Storing a span twice is harmless.
func (s *Spans) Restore(spans []amphi.SpeakerSpan) {
	s.closed = append(s.closed, spans...)
	if n := len(s.closed); n > maxPending {
		s.closed = slices.Delete(s.closed, 0, n-maxPending)
	}
}

type reactionKey struct {
	at   time.Duration // the bucket's start
	kind string
}

// Reactions counts reactions per bucket and kind, from one flush to the
// next. Its zero value is ready to use. It is not safe for concurrent use:
// the room counts under its own lock.
type Reactions struct {
	n map[reactionKey]int
}

// Add counts n reactions of the kind at at.
func (r *Reactions) Add(kind string, n int, at time.Duration) {
	if r.n == nil {
		r.n = make(map[reactionKey]int)
	}
	r.n[reactionKey{at.Truncate(Bucket), kind}] += n
}

// Flush appends to dst the counts added since the last flush, and
// forgets them: the store adds them to what it has.
func (r *Reactions) Flush(dst []amphi.ReactionCount) []amphi.ReactionCount {
	for k, n := range r.n {
		dst = append(dst, amphi.ReactionCount{At: k.at, Kind: k.kind, Count: n})
	}
	clear(r.n)
	return dst
}

// Restore adds back counts a flush returned that could not be stored.
func (r *Reactions) Restore(counts []amphi.ReactionCount) {
	if len(r.n) > maxPending {
		return
	}
	for _, c := range counts {
		r.Add(c.Kind, c.Count, c.At)
	}
}

// Merge returns the spans sorted by speaker and start, with those of one
// speaker that overlap or lie less than MergeGap apart made one: what was
// stored in pieces (the flushes of one span, a span cut by a restart) is
// shown whole. The first non-empty name of a speaker's spans names all
// of them. spans is reordered.
func Merge(spans []amphi.SpeakerSpan) []amphi.SpeakerSpan {
	slices.SortFunc(spans, func(a, b amphi.SpeakerSpan) int {
		return cmp.Or(cmp.Compare(a.Speaker, b.Speaker), cmp.Compare(a.From, b.From))
	})
	var out []amphi.SpeakerSpan
	for _, sp := range spans {
		if n := len(out); n > 0 && out[n-1].Speaker == sp.Speaker && sp.From-out[n-1].To < MergeGap {
			last := &out[n-1]
			last.To = max(last.To, sp.To)
			if last.Name == "" {
				last.Name = sp.Name
			}
			continue
		}
		out = append(out, sp)
	}
	return out
}

// View is a space's timeline as GET /spaces/{id}/timeline answers it, in
// seconds of the recording.
type View struct {
	Duration float64 `json:"duration_s"`
	// Bucket is the width of a reaction bucket.
	Bucket   float64   `json:"bucket_s"`
	Speakers []Speaker `json:"speakers"`
	// Reactions has a moment per bucket with reactions, in time order.
	Reactions []Moment `json:"reactions"`
	// Peaks are the busiest of them, in time order.
	Peaks []Moment `json:"peaks"`
}

// Speaker is one speaker's spans, each [from, to] in seconds.
type Speaker struct {
	ID    string       `json:"id"`
	Name  string       `json:"name"`
	Spans [][2]float64 `json:"spans"`
}

// Moment is the reactions of one bucket, starting at At seconds.
type Moment struct {
	At    float64        `json:"at_s"`
	Count int            `json:"count"`
	Kinds map[string]int `json:"kinds"`
}

// seconds is d in seconds, to the millisecond: what a seek needs.
func seconds(d time.Duration) float64 { return float64(d.Milliseconds()) / 1000 }

// Build makes the view of a recording lasting d from the spans and counts
// stored of it: each speaker's spans merged (Merge) and cut to d (a span
// is noted up to a chunk ahead of what the file holds), speakers in the
// order they first spoke, and the Peaks busiest buckets, no two side by
// side (a burst across a bucket's edge is one peak). d of zero cuts
// nothing.
func Build(d time.Duration, spans []amphi.SpeakerSpan, counts []amphi.ReactionCount) *View {
	v := &View{Duration: seconds(d), Bucket: seconds(Bucket), Speakers: []Speaker{}, Reactions: []Moment{}, Peaks: []Moment{}}
	first := map[string]time.Duration{}
	byID := map[string]int{}
	for _, sp := range Merge(spans) {
		if d > 0 {
			if sp.From >= d {
				continue
			}
			sp.To = min(sp.To, d)
		}
		i, ok := byID[sp.Speaker]
		if !ok {
			i = len(v.Speakers)
			byID[sp.Speaker] = i
			first[sp.Speaker] = sp.From
			name := sp.Name
			if name == "" {
				name = "Speaker"
			}
			v.Speakers = append(v.Speakers, Speaker{ID: sp.Speaker, Name: name})
		}
		v.Speakers[i].Spans = append(v.Speakers[i].Spans, [2]float64{seconds(sp.From), seconds(sp.To)})
	}
	slices.SortStableFunc(v.Speakers, func(a, b Speaker) int { return cmp.Compare(first[a.ID], first[b.ID]) })

	buckets := map[time.Duration]*Moment{}
	for _, c := range counts {
		if c.Count <= 0 {
			continue
		}
		m := buckets[c.At]
		if m == nil {
			m = &Moment{At: seconds(c.At), Kinds: map[string]int{}}
			buckets[c.At] = m
		}
		m.Count += c.Count
		m.Kinds[c.Kind] += c.Count
	}
	for _, at := range slices.Sorted(maps.Keys(buckets)) {
		v.Reactions = append(v.Reactions, *buckets[at])
	}
	busiest := slices.Clone(v.Reactions)
	slices.SortStableFunc(busiest, func(a, b Moment) int { return cmp.Compare(b.Count, a.Count) })
	for _, m := range busiest {
		if len(v.Peaks) == Peaks {
			break
		}
		if !slices.ContainsFunc(v.Peaks, func(p Moment) bool { return max(p.At-m.At, m.At-p.At) <= seconds(Bucket) }) {
			v.Peaks = append(v.Peaks, m)
		}
	}
	slices.SortFunc(v.Peaks, func(a, b Moment) int { return cmp.Compare(a.At, b.At) })
	return v
}
