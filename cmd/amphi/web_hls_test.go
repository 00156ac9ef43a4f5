package main

import (
	"context"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

// TestWebListenerHearsTheToneThroughHLSJS: the space's page with
// ?player=hls in Chromium, which plays no HLS natively, joins, loads the
// vendored hls.js and plays the space's LL-HLS playlist in its audio
// element; the speaker's 440 Hz is what WebAudio hears there.
func TestWebListenerHearsTheToneThroughHLSJS(t *testing.T) {
	parallelBrowser(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	m, c, sp := webSpace(t, ctx, "Over HLS")
	speaker := dialSpeaker(t, ctx, c, sp.ID, sp.SpeakerToken)
	defer speaker.playUntilStopped(t, ctx, 440)()

	b := browserFor(t, ctx)
	if err := chromedp.Do(b,
		chromedp.Navigate(m.URL()+"/s/"+sp.ID+"?player=hls"),
		chromedp.WaitVisible(`#listen`),
		chromedp.Click(`#listen`),
	); err != nil {
		t.Fatalf("the page: %v (status %q)", err, pageStatus(b))
	}
	if _, err := chromedp.Run(b, chromedp.Poll[bool](`!!window.amphiHLS || null`)); err != nil {
		t.Fatalf("hls.js did not start: %v (status %q)", err, pageStatus(b))
	}
	if _, err := chromedp.Run(b, chromedp.Poll[bool](`(a => a.currentTime > 0.5 || null)(document.getElementById('live'))`)); err != nil {
		t.Fatalf("the audio element did not play the playlist: %v (status %q)", err, pageStatus(b))
	}
	assertTonePlays(t, b, "the page's HLS player", toneJS("#live", 440), 440)
}
