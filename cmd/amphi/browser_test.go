package main

import (
	"context"
	"math"
	"os"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/amphi-audio/amphi/internal/client"
)

// TestBrowserPlaysLiveURL walks the newcomer's path: a space's live_url, put
// in an audio element by any web page, plays in a real browser with no amphi
// code in it. A WHIP speaker plays a tone throughout; the browser must play
// on without a media error, and the page must hear the tone.
func TestBrowserPlaysLiveURL(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	var m *Main
	if b := os.Getenv("EXPLORE_BITRATE"); b != "" {
		n, _ := strconv.Atoi(b)
		m = exploreMain(t, n)
	} else {
		m = MustRunMain(t, t.TempDir())
	}
	// A cleanup, not a defer: the browser's, registered later, runs first,
	// so no stream is open when the server closes.
	t.Cleanup(func() { m.Close() })
	c := client.New(m.URL())
	sp, err := c.Create(ctx, "Browser", nil)
	if err != nil {
		t.Fatal(err)
	}

	// The speaker starts first: the live stream serves audio once the
	// program runs. It plays until the test ends.
	speaker := dialSpeaker(t, ctx, c, sp.ID, sp.SpeakerToken)
	speakCtx, stopSpeaking := context.WithCancel(ctx)
	var wg sync.WaitGroup
	defer wg.Wait()
	defer stopSpeaking()
	wg.Go(func() {
		if err := speaker.play(speakCtx, 440, 0, time.Hour, 60*time.Second); err != nil && speakCtx.Err() == nil {
			t.Errorf("speaker: %v", err)
		}
	})

	src := sp.LiveURL
	if b := os.Getenv("EXPLORE_BURST"); b != "" {
		src += "?burst=" + b
		lead, _ := time.ParseDuration(b)
		time.Sleep(lead)
	}
	page := servePage(t, src)
	if os.Getenv("EXPLORE_DIRECT") != "" {
		page = src
	}
	// The browser outlives ctx, to close cleanly at the end; its actions
	// share the test's deadline.
	deadline, _ := ctx.Deadline()
	bctx, cancelActions := context.WithDeadline(startBrowser(t), deadline)
	defer cancelActions()
	opened := time.Now()
	if os.Getenv("EXPLORE") != "" {
		dump := exploreListen(t, bctx, &opened)
		defer dump()
		opened = time.Now()
	}
	if err := chromedp.Do(bctx, chromedp.Navigate(page)); err != nil {
		t.Fatalf("open %s: %v", page, err)
	}

	// Chromium buffers several seconds before it starts (DESIGN.md), so
	// give it time; what must hold is that playback starts and goes on.
	var (
		st        *mediaState
		firstPlay time.Duration
	)
	for tick := time.NewTicker(250 * time.Millisecond); ; {
		st, err = chromedp.Run(bctx, chromedp.Evaluate[*mediaState](mediaStateJS))
		if err != nil {
			t.Fatalf("read the audio element: %v", err)
		}
		if st == nil {
			t.Fatal("the page has no audio element")
		}
		if st.Error != "" {
			t.Fatalf("the audio element failed: %s (state %+v)", st.Error, *st)
		}
		if firstPlay == 0 && st.CurrentTime > 0 {
			firstPlay = time.Since(opened)
		}
		if os.Getenv("EXPLORE") != "" {
			t.Logf("%v %+v", time.Since(opened).Round(time.Millisecond), *st)
		}
		if st.CurrentTime > 1 && !st.Paused || time.Since(opened) > 45*time.Second {
			break
		}
		select {
		case <-ctx.Done():
			t.Fatalf("playback did not progress past 1 s: last state %+v", *st)
		case <-tick.C:
		}
	}
	if os.Getenv("EXPLORE") != "" {
		ev, _ := chromedp.Run(bctx, chromedp.Evaluate[[]any](`window.events`))
		for _, e := range ev {
			t.Logf("event %v", e)
		}
	}
	t.Logf("first currentTime > 0 after %v from opening the page; now %+v", firstPlay.Round(time.Millisecond), *st)
	if st.Paused {
		t.Errorf("the audio element is paused while its stream goes on: %+v", *st)
	}

	// What the page hears: the element's output through WebAudio. The
	// element asked for CORS, so its samples are readable, not silence.
	spec, err := chromedp.Run(bctx, chromedp.Evaluate[spectrum](spectrumJS, chromedp.EvalAwaitPromise))
	if err != nil {
		t.Fatalf("analyse the page's audio: %v", err)
	}
	t.Logf("page audio: %+v", spec)
	if spec.State != "running" {
		t.Fatalf("the page's AudioContext is %q, not running", spec.State)
	}
	binHz := float64(spec.SampleRate) / float64(spec.FFTSize)
	if math.Abs(spec.PeakHz-440) > 2*binHz || spec.PeakDB-spec.MedianDB < 30 {
		t.Errorf("the page hears a peak at %.1f Hz, %.1f dB over the median: want 440 Hz standing out by 30 dB or more", spec.PeakHz, spec.PeakDB-spec.MedianDB)
	}
	if st, err := chromedp.Run(bctx, chromedp.Evaluate[*mediaState](mediaStateJS)); err != nil || st.Error != "" {
		t.Errorf("the audio element after analysis: %+v %v", st, err)
	}
}

// spectrum is what the page measures of its audio element's output.
type spectrum struct {
	State      string  `json:"state"` // the AudioContext's
	SampleRate int     `json:"sampleRate"`
	FFTSize    int     `json:"fftSize"`
	PeakHz     float64 `json:"peakHz"`
	PeakDB     float64 `json:"peakDb"`
	MedianDB   float64 `json:"medianDb"`
}

// spectrumJS routes the audio element through an AnalyserNode, lets a second
// of audio through and returns the strongest frequency. An element once
// routed into WebAudio stays there, so this runs last.
const spectrumJS = `(async () => {
	const a = document.querySelector('audio, video');
	const ac = new AudioContext();
	const an = ac.createAnalyser();
	an.fftSize = 8192;
	an.smoothingTimeConstant = 0;
	ac.createMediaElementSource(a).connect(an);
	an.connect(ac.destination);
	await ac.resume();
	await new Promise(r => setTimeout(r, 1000));
	const bins = new Float32Array(an.frequencyBinCount);
	an.getFloatFrequencyData(bins);
	let peak = 1; // skip DC
	for (let i = 1; i < bins.length; i++) if (bins[i] > bins[peak]) peak = i;
	const sorted = Array.from(bins).filter(Number.isFinite).sort((x, y) => x - y);
	return {
		state: ac.state,
		sampleRate: ac.sampleRate,
		fftSize: an.fftSize,
		peakHz: peak * ac.sampleRate / an.fftSize,
		peakDb: Number.isFinite(bins[peak]) ? bins[peak] : -1000,
		medianDb: sorted.length ? sorted[sorted.length >> 1] : -1000,
	};
})()`
