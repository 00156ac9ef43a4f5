package space

import (
	"context"
	"time"

	"github.com/amphi-audio/amphi"
)

const (
	// timelineEvery is how often a space on air stores its timeline: one
	// small write transaction per space every few seconds, whatever the
	// number of speakers or reactions, and a crash loses at most this
	// much of it (the recording loses about a second).
	timelineEvery = 5 * time.Second
	// timelineWrite bounds one flush's write: a store that slow is
	// failing, and the next flush tries again.
	timelineWrite = 5 * time.Second
)

// keepTimeline stores the space's timeline (who spoke when, reactions)
// every timelineEvery while it is on air, and once more when its session
// stops, then closes sp.saved.
func (l *Lifecycle) keepTimeline(sp *Space) {
	defer close(sp.saved)
	tick := time.NewTicker(timelineEvery)
	defer tick.Stop()
	var (
		spans  []amphi.SpeakerSpan
		counts []amphi.ReactionCount
	)
	for {
		select {
		case <-sp.session.Done():
			l.saveTimeline(sp, spans[:0], counts[:0])
			return
		case <-tick.C:
			spans, counts = l.saveTimeline(sp, spans[:0], counts[:0])
		}
	}
}

// saveTimeline stores what the space's session and room noted since the
// last save, with the names the room knows, using the slices given; what
// could not be stored goes back to be stored next time. It returns the
// slices, for the next save to reuse.
func (l *Lifecycle) saveTimeline(sp *Space, spans []amphi.SpeakerSpan, counts []amphi.ReactionCount) ([]amphi.SpeakerSpan, []amphi.ReactionCount) {
	spans = sp.session.Spans(spans)
	counts = sp.room.flushCounts(counts)
	if len(spans) == 0 && len(counts) == 0 {
		return spans, counts
	}
	for i := range spans {
		// The room has the name the speaker joined the stage under; a
		// name is lost with the room in a crash, and a span stored again
		// without one keeps the one it had.
		spans[i].Name, _ = sp.room.Name(spans[i].Speaker)
	}
	ctx, cancel := context.WithTimeout(context.Background(), timelineWrite)
	defer cancel()
	if err := l.db.PutTimeline(ctx, sp.id, spans, counts); err != nil {
		l.cfg.Logger.Error("space: store the timeline", "space", sp.id, "err", err)
		sp.session.RestoreSpans(spans)
		sp.room.restoreCounts(counts)
	}
	return spans, counts
}
