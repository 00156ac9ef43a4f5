package main

import (
	"context"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

// behindJS reads the page's figure of how far behind live it plays, in
// seconds; -1 while it shows none.
const behindJS = `(b => b.offsetParent !== null && b.dataset.seconds ? Number(b.dataset.seconds) : -1)(document.getElementById('behind'))`

// TestWebPageSaysHowFarBehindLiveItPlays: the space's page in Chromium,
// with its default player (player.js), says how far behind live it plays,
// and that is under a few seconds, and stops when asked; with the <audio>
// element (?player=audio) it says how far behind too, and offers no
// rewind.
func TestWebPageSaysHowFarBehindLiveItPlays(t *testing.T) {
	parallelBrowser(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	m, c, sp := webSpace(t, ctx, "How far behind")
	speaker := dialSpeaker(t, ctx, c, sp.ID, sp.SpeakerToken)
	defer speaker.playUntilStopped(t, ctx, 440)()

	b := browserFor(t, ctx)
	if err := chromedp.Do(b,
		chromedp.Navigate(m.URL()+"/s/"+sp.ID),
		chromedp.WaitVisible(`#listen`),
		chromedp.Click(`#listen`),
	); err != nil {
		t.Fatalf("the page: %v (status %q)", err, pageStatus(b))
	}
	if _, err := chromedp.Run(b, chromedp.Poll[bool](`!!(window.amphiPlayer && window.amphiPlayer.stats().frames > 0) || null`)); err != nil {
		t.Fatalf("the default player did not play: %v (status %q)", err, pageStatus(b))
	}
	// The figure is shown once the player plays. A busy machine may start
	// it late, so the bound is waited for rather than read once.
	first, err := chromedp.Run(b, chromedp.Poll[float64](behindJS+` >= 0 && `+behindJS))
	if err != nil {
		t.Fatalf("the page shows no figure behind live: %v (status %q)", err, pageStatus(b))
	}
	secs, err := chromedp.Run(b, chromedp.Poll[float64](`(s => s >= 0 && s < 3 && s)(`+behindJS+`)`))
	if err != nil {
		text, _ := chromedp.Run(context.WithoutCancel(b), chromedp.Text(`#behind`))
		t.Fatalf("the default player never says it is under 3 s behind live (first %.2f s, now %q): %v", first, text, err)
	}
	text, err := chromedp.Run(b, chromedp.Text(`#behind`))
	if err != nil || !strings.HasSuffix(text, "behind live") {
		t.Errorf("the figure reads %q (%v), want \"… behind live\"", text, err)
	}
	stats, _ := chromedp.Run(b, chromedp.Evaluate[map[string]any](`window.amphiPlayer.stats()`))
	t.Logf("player.js: %q (%.2f s; first shown %.2f s), stats %v", text, secs, first, stats)
	if hidden, err := chromedp.Run(b, chromedp.Evaluate[bool](`document.getElementById('jump-live').hidden`)); err != nil || !hidden {
		t.Errorf("Jump to live is shown at %.2f s behind live (%v)", secs, err)
	}
	// Stop stops it, and Listen is offered again.
	if err := chromedp.Do(b, chromedp.Click(`#stop`), chromedp.WaitVisible(`#listen`)); err != nil {
		t.Fatalf("Stop: %v (status %q)", err, pageStatus(b))
	}
	if stopped, err := chromedp.Run(b, chromedp.Evaluate[bool](`!window.amphiPlayer`)); err != nil || !stopped {
		t.Errorf("after Stop, player.js still plays (%v)", err)
	}

	if err := chromedp.Do(b,
		chromedp.Navigate(m.URL()+"/s/"+sp.ID+"?player=audio"),
		chromedp.WaitVisible(`#listen`),
		chromedp.Click(`#listen`),
	); err != nil {
		t.Fatalf("the page with ?player=audio: %v", err)
	}
	secs, err = chromedp.Run(b, chromedp.Poll[float64](behindJS+` >= 0 && `+behindJS))
	if err != nil {
		t.Fatalf("the <audio> element's page shows no figure behind live: %v (status %q)", err, pageStatus(b))
	}
	if visible, err := chromedp.Run(b, chromedp.Evaluate[bool](`document.getElementById('dvr').offsetParent !== null`)); err != nil || visible {
		t.Errorf("the <audio> element's page offers to rewind, which it cannot (%v)", err)
	}
	t.Logf("<audio>: %.2f s behind live", secs)
}

// toneWatchJS watches the page's player (window.amphiPlayer, replaced on a
// restart) every 50 ms and notes in window.heard each change of the tone
// it plays, A_HZ or B_HZ above -50 dB, with the player's from; and in
// window.fastest the highest rate a rewound player played at.
const toneWatchJS = `(() => {
	const a = A_HZ, b = B_HZ;
	window.heard = [];
	window.fastest = 1;
	let last = '';
	setInterval(() => {
		const p = window.amphiPlayer;
		if (!p) return;
		const an = p.analyser;
		if (an.fftSize !== 8192) { an.fftSize = 8192; an.smoothingTimeConstant = 0; }
		const bins = new Float32Array(an.frequencyBinCount);
		an.getFloatFrequencyData(bins);
		let peak = 1;
		for (let i = 1; i < bins.length; i++) if (bins[i] > bins[peak]) peak = i;
		const hz = peak * an.context.sampleRate / an.fftSize, w = 2 * an.context.sampleRate / an.fftSize;
		const tone = bins[peak] < -50 ? 0 : Math.abs(hz - a) <= w ? a : Math.abs(hz - b) <= w ? b : 0;
		const key = p.from + ':' + tone;
		if (tone && key !== last) window.heard.push({from: p.from, hz: tone, at: Date.now()});
		if (tone) last = key;
		if (p.from) window.fastest = Math.max(window.fastest, p.stats().rate);
	}, 50);
	return true;
})()`

// heardTone is one entry of window.heard.
type heardTone struct {
	From string  `json:"from"`
	Hz   float64 `json:"hz"`
}

// TestWebFromTheStartHearsTheFirstToneThenCatchesUp: a live space whose
// speaker played 440 Hz, then 880 Hz, which is live when the listener
// comes. The page (player.js) plays 880 Hz; "From the start" plays 440 Hz
// first, then 880 Hz, faster than live and saying it catches up, with a
// figure behind live that shrinks; "Jump to live" is offered meanwhile and
// goes back to the live edge.
func TestWebFromTheStartHearsTheFirstToneThenCatchesUp(t *testing.T) {
	parallelBrowser(t)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	const first, then = 440.0, 880.0
	m, c, sp := webSpace(t, ctx, "From the start")
	s := dialSpeaker(t, ctx, c, sp.ID, sp.SpeakerToken)
	if err := s.play(ctx, first, 200*time.Millisecond, 4200*time.Millisecond, 4200*time.Millisecond); err != nil {
		t.Fatal(err)
	}
	defer s.playUntilStopped(t, ctx, then)()

	b := browserFor(t, ctx)
	long := chromedp.WithPollingTimeout(time.Minute) // a busy machine, and the context bounds it anyway
	watch := strings.NewReplacer("A_HZ", strconv.FormatFloat(first, 'f', -1, 64), "B_HZ", strconv.FormatFloat(then, 'f', -1, 64)).Replace(toneWatchJS)
	if err := chromedp.Do(b,
		chromedp.Navigate(m.URL()+"/s/"+sp.ID),
		chromedp.WaitVisible(`#listen`),
	); err != nil {
		t.Fatal(err)
	}
	if _, err := chromedp.Run(b, chromedp.Evaluate[bool](watch)); err != nil {
		t.Fatal(err)
	}
	if err := chromedp.Do(b, chromedp.Click(`#listen`)); err != nil {
		t.Fatal(err)
	}
	heard := func(what, js string) []heardTone {
		t.Helper()
		h, err := chromedp.Run(b, chromedp.Poll[[]heardTone](`(h => (`+js+`) ? h : null)(window.heard)`, long))
		if err != nil {
			got, _ := chromedp.Run(context.WithoutCancel(b), chromedp.Evaluate[[]heardTone](`window.heard`))
			t.Fatalf("%s: heard %+v: %v (status %q)", what, got, err, pageStatus(b))
		}
		return h
	}
	heard("the live page plays 880 Hz", `h.some(x => !x.from && x.hz === 880)`)

	if err := chromedp.Do(b, chromedp.WaitVisible(`#from-start`), chromedp.Click(`#from-start`)); err != nil {
		t.Fatal(err)
	}
	h := heard("from the start, a tone", `h.some(x => x.from === 'start')`)
	var rewound []heardTone
	for _, x := range h {
		if x.From == "start" {
			rewound = append(rewound, x)
		}
	}
	if rewound[0].Hz != first {
		t.Fatalf("from the start the page heard %v Hz first, want %v Hz: %+v", rewound[0].Hz, first, h)
	}
	heard("from the start, the second tone after the first", `(i => i >= 0 && h.slice(i).some(x => x.from === 'start' && x.hz === 880))(h.findIndex(x => x.from === 'start' && x.hz === 440))`)

	// Catching up: faster than live, said on the page, and the figure
	// behind live shrinks. Waited for, never timed.
	start, err := chromedp.Run(b, chromedp.Poll[float64](`(s => s > 2 && s)(`+behindJS+`)`))
	if err != nil {
		t.Fatalf("from the start, the page never shows more than 2 s behind live: %v (status %q)", err, pageStatus(b))
	}
	if _, err := chromedp.Run(b, chromedp.Poll[bool](`window.fastest > 1 && document.getElementById('behind').textContent.includes('catching up') || null`)); err != nil {
		text, _ := chromedp.Run(context.WithoutCancel(b), chromedp.Text(`#behind`))
		t.Fatalf("the rewound player does not catch up: %q: %v", text, err)
	}
	if _, err := chromedp.Run(b, chromedp.Poll[bool](`(s => s >= 0 && s < `+strconv.FormatFloat(start-1, 'f', 2, 64)+` || null)(`+behindJS+`)`, long)); err != nil {
		text, _ := chromedp.Run(context.WithoutCancel(b), chromedp.Text(`#behind`))
		t.Fatalf("the figure behind live does not shrink from %.2f s: now %q: %v", start, text, err)
	}
	stats, _ := chromedp.Run(b, chromedp.Evaluate[map[string]any](`window.amphiPlayer.stats()`))
	t.Logf("from the start: %.2f s behind live at first; player %v", start, stats)

	// Jump to live is offered while behind, and plays at the live edge.
	if err := chromedp.Do(b, chromedp.WaitVisible(`#jump-live`), chromedp.Click(`#jump-live`)); err != nil {
		t.Fatalf("Jump to live: %v", err)
	}
	if _, err := chromedp.Run(b, chromedp.Poll[bool](`!!(window.amphiPlayer && window.amphiPlayer.from === '' && window.amphiPlayer.stats().frames > 0) || null`)); err != nil {
		t.Fatalf("Jump to live did not restart at the live edge: %v (status %q)", err, pageStatus(b))
	}
	if _, err := chromedp.Run(b, chromedp.Poll[bool](`(s => s >= 0 && s < 3 || null)(`+behindJS+`)`)); err != nil {
		text, _ := chromedp.Run(context.WithoutCancel(b), chromedp.Text(`#behind`))
		t.Fatalf("after Jump to live the page is not within 3 s of live: %q: %v", text, err)
	}
}

// TestWebRewoundPlayerDecodesNoFurtherThanItBuffers: player.js rewound to
// the start of a space on air for ~15 s, with 2 s to buffer, gets the past
// as fast as it reads it, yet never holds more than about 2 s decoded
// ahead: it waits (reading no further) and plays on, catching up.
func TestWebRewoundPlayerDecodesNoFurtherThanItBuffers(t *testing.T) {
	parallelBrowser(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	m, c, sp := webSpace(t, ctx, "Buffered")
	speaker := dialSpeaker(t, ctx, c, sp.ID, sp.SpeakerToken)
	spoke := time.Now()
	defer speaker.playUntilStopped(t, ctx, 440)()

	b := browserFor(t, ctx)
	// Any page of amphi's origin may fetch its stream.
	if err := chromedp.Do(b, chromedp.Navigate(m.URL()+"/s/"+sp.ID), chromedp.WaitVisible(`#listen`)); err != nil {
		t.Fatal(err)
	}
	// Waiting is no assertion: it makes a past much longer than the buffer.
	if wait := 15*time.Second - time.Since(spoke); wait > 0 {
		time.Sleep(wait)
	}
	adm, err := c.Join(ctx, sp.ID, nil)
	if err != nil {
		t.Fatal(err)
	}
	const buffer = 2.0
	start := `(async () => {
		const m = await import('/static/player.js');
		window.p = await m.playLowLatency(` + strconv.Quote(adm.ListenURL) + `, {from: 'start', buffer: ` + strconv.FormatFloat(buffer, 'f', -1, 64) + `});
		window.most = 0;
		setInterval(() => { window.most = Math.max(window.most, window.p.stats().ahead); }, 20);
		return true;
	})()`
	if _, err := chromedp.Run(b, chromedp.Evaluate[bool](start, chromedp.EvalAwaitPromise)); err != nil {
		t.Fatalf("start player.js from the start: %v", err)
	}
	// It waits at its buffer, then plays on past it.
	if _, err := chromedp.Run(b, chromedp.Poll[bool](`window.p.stats().waits > 0 || null`)); err != nil {
		st, _ := chromedp.Run(context.WithoutCancel(b), chromedp.Evaluate[map[string]any](`window.p.stats()`))
		t.Fatalf("the rewound player never waited: %v: %v", st, err)
	}
	played, err := chromedp.Run(b, chromedp.Evaluate[float64](`window.p.stats().frames`))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := chromedp.Run(b, chromedp.Poll[bool](`window.p.stats().frames > `+strconv.FormatFloat(played+200, 'f', 0, 64)+` || null`)); err != nil {
		t.Fatalf("the rewound player did not play on after waiting: %v", err)
	}
	st, err := chromedp.Run(b, chromedp.Evaluate[map[string]any](`window.p.stats()`))
	if err != nil {
		t.Fatal(err)
	}
	most, err := chromedp.Run(b, chromedp.Evaluate[float64](`window.most`))
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("at most %.2f s decoded ahead; player %v", most, st)
	// One packet and the stretcher's window past the buffer, and slack for
	// decodes in flight.
	if most > buffer+1 {
		t.Errorf("the rewound player held %.2f s decoded ahead, want at most about %.0f s", most, buffer)
	}
	if _, err := chromedp.Run(b, chromedp.Evaluate[bool](`window.p.stop(), true`)); err != nil {
		t.Error(err)
	}
}
