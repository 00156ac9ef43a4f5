package main

import (
	"context"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/amphi-audio/amphi/internal/client"
)

// TestWebReplaySeeksAndPlaysAtTwiceTheSpeed: an ended space's replay page,
// in Chromium, shows the recording's length, seeks where the seek bar is
// put, and plays at 2x when asked: the position moves about two seconds
// a second.
func TestWebReplaySeeksAndPlaysAtTwiceTheSpeed(t *testing.T) {
	parallelBrowser(t)
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	m := MustRunMain(t, t.TempDir())
	defer m.Close()
	c := client.New(m.URL())
	sp, err := c.Create(ctx, "Replayed", nil)
	if err != nil {
		t.Fatal(err)
	}
	s := dialSpeaker(t, ctx, c, sp.ID, sp.SpeakerToken)
	if err := s.play(ctx, 440, 0, 8*time.Second, 8*time.Second); err != nil {
		t.Fatal(err)
	}
	if _, err := c.End(ctx, sp.ID, sp.HostToken); err != nil {
		t.Fatal(err)
	}

	b := browserFor(t, ctx)
	if err := chromedp.Do(b, chromedp.Navigate(m.URL()+"/s/"+sp.ID+"/replay"), chromedp.WaitVisible(`#player`)); err != nil {
		t.Fatalf("the replay page: %v (status %q)", err, pageStatus(b))
	}
	d, err := chromedp.Run(b, chromedp.Evaluate[float64](`document.getElementById('audio').duration`))
	if err != nil || d < 7 || d > 10 {
		t.Fatalf("the replay lasts %v s (%v), want about 8", d, err)
	}
	// The seek bar to 3 s, then 2x and play.
	at, err := chromedp.Run(b, chromedp.Evaluate[float64](`(async () => {
		const a = document.getElementById('audio'), seek = document.getElementById('seek');
		seek.value = '3';
		seek.dispatchEvent(new Event('input'));
		if (a.seeking) await new Promise((r) => a.addEventListener('seeked', r, {once: true}));
		return a.currentTime;
	})()`, chromedp.EvalAwaitPromise))
	if err != nil || at < 2.9 || at > 3.1 {
		t.Errorf("after seeking to 3 s the replay is at %v s (%v)", at, err)
	}
	if err := chromedp.Do(b, chromedp.Click(`[data-rate="2"]`), chromedp.Click(`#play`)); err != nil {
		t.Fatal(err)
	}
	// How fast the position moves, once playing, over a second of the
	// page's own clock.
	rate, err := chromedp.Run(b, chromedp.Evaluate[float64](`(async () => {
		const a = document.getElementById('audio');
		while (a.paused || a.readyState < 3) await new Promise((r) => setTimeout(r, 50));
		const t0 = a.currentTime, w0 = performance.now();
		await new Promise((r) => setTimeout(r, 1000));
		return (a.currentTime - t0) / ((performance.now() - w0) / 1000);
	})()`, chromedp.EvalAwaitPromise))
	if err != nil || rate < 1.6 || rate > 2.4 {
		t.Errorf("the replay moved %v s a second at 2x (%v), want about 2", rate, err)
	}
	pressed, _ := chromedp.Run(b, chromedp.Evaluate[string](`document.querySelector('[data-rate="2"]').getAttribute('aria-pressed')`))
	if pressed != "true" {
		t.Errorf("the 2x button is not shown pressed: %q", pressed)
	}
}
