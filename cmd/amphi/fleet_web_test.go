package main

import (
	"context"
	"strconv"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

// TestTheWebPlayerResumesOnAnotherEdgeWithoutAHole: the page's own player
// (?player=low), at the port two edges share, plays on when the edge
// serving it dies: it asks the port again from the chunk after the last it
// played, and the kernel gives the connection to the other edge.
func TestTheWebPlayerResumesOnAnotherEdgeWithoutAHole(t *testing.T) {
	parallelBrowser(t)
	ctx, _, edges, shared, sp := spaceOnFleet(t, 2, 2*time.Minute)
	b := browserFor(t, ctx)
	if err := chromedp.Do(b,
		chromedp.Navigate(shared+"/s/"+sp.ID+"?player=low"),
		chromedp.WaitVisible(`#listen`),
		chromedp.Click(`#listen`),
	); err != nil {
		t.Fatal(err)
	}
	if _, err := chromedp.Run(b, chromedp.Poll[bool](`!!(window.amphiPlayer && window.amphiPlayer.stats().frames > 0)`)); err != nil {
		status, _ := chromedp.Run(context.WithoutCancel(b), chromedp.Text(`#status`))
		t.Fatalf("the player did not start (page status %q): %v", status, err)
	}
	serving, _ := servingEdge(t, edges)
	serving.Close()
	type stats struct {
		Frames  int `json:"frames"`
		Resumes int `json:"resumes"`
		Holes   int `json:"holes"`
	}
	before, err := chromedp.Run(b, chromedp.Evaluate[stats](`window.amphiPlayer.stats()`))
	if err != nil {
		t.Fatal(err)
	}
	// Two seconds of audio decoded after the resume.
	if _, err := chromedp.Run(b, chromedp.Poll[bool](`(() => { const s = window.amphiPlayer.stats();
		return s.resumes >= 1 && s.frames > `+strconv.Itoa(before.Frames+100)+` || null; })()`)); err != nil {
		after, _ := chromedp.Run(context.WithoutCancel(b), chromedp.Evaluate[stats](`window.amphiPlayer.stats()`))
		t.Fatalf("the player did not resume: %+v then %+v: %v", before, after, err)
	}
	after, err := chromedp.Run(b, chromedp.Evaluate[stats](`window.amphiPlayer.stats()`))
	if err != nil {
		t.Fatal(err)
	}
	if after.Holes != 0 {
		t.Errorf("the player heard %d holes across the resume, want none: %+v", after.Holes, after)
	}
}
