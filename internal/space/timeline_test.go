package space

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/amphi-audio/amphi"
)

// The reactions of a space reach the store when it goes off air, also
// through a crash and the resumed session after it, and the end waits for
// the last of them: whoever reads the timeline of an ended space reads it
// all.
func TestATimelineIsStoredThroughARestartAndByTheEnd(t *testing.T) {
	ctx := context.Background()
	n := newNode(t, 0, true)
	n.create(t, "a")
	n.start(t, "a")
	clap := slices.Index(ReactionKinds[:], "clap")
	n.dir.Get("a").Room().React(clap, 3, time.Now())
	n = n.crash(t, "a", 0)
	if err := n.life.Recover(ctx); err != nil {
		t.Fatal(err)
	}
	sp := n.dir.Get("a")
	if sp == nil || sp.Room() == nil {
		t.Fatal("the space did not resume")
	}
	sp.Room().React(clap, 4, time.Now())
	if _, err := n.life.End(ctx, "a", amphi.EndHost); err != nil {
		t.Fatal(err)
	}
	_, counts, err := n.db.Timeline(ctx, "a")
	if err != nil {
		t.Fatal(err)
	}
	total := 0
	for _, c := range counts {
		if c.Kind != "clap" {
			t.Errorf("a count of %q", c.Kind)
		}
		total += c.Count
	}
	if total != 7 {
		t.Errorf("%d claps stored (%v), want the 3 before the crash and the 4 after", total, counts)
	}
}
