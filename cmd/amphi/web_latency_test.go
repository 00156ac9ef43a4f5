package main

import (
	"context"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"gopkg.in/hraban/opus.v2"

	"github.com/amphi-audio/amphi"
	"github.com/amphi-audio/amphi/internal/client"
	"github.com/amphi-audio/amphi/internal/tone"
)

// Frequencies of the latency test: the speaker hums lowHz, so a player is
// seen to play before anything is timed, then switches to highHz at a
// moment it notes; the page notes when highHz overtakes lowHz in its
// player's output.
const (
	lowHz  = 220.0
	highHz = 440.0
)

// switchSpeaker plays a sine at the frequency last set, in real time, and
// notes when the first frame of a new frequency left it.
type switchSpeaker struct {
	s *toneSpeaker

	mu       sync.Mutex
	freq     float64
	switched time.Time
}

func (sw *switchSpeaker) set(freq float64) {
	sw.mu.Lock()
	defer sw.mu.Unlock()
	sw.freq = freq
	sw.switched = time.Time{}
}

// onset is when the first frame at the frequency last set was sent; zero
// until then.
func (sw *switchSpeaker) onset() time.Time {
	sw.mu.Lock()
	defer sw.mu.Unlock()
	return sw.switched
}

func (sw *switchSpeaker) run(ctx context.Context) error {
	enc, err := opus.NewEncoder(amphi.SampleRate, 1, opus.AppAudio)
	if err != nil {
		return err
	}
	pcm := make([]int16, amphi.FrameSamples)
	buf := make([]byte, 1500)
	var phase, cur float64
	start := time.Now()
	for i := 0; ; i++ {
		if wait := time.Until(start.Add(time.Duration(i) * 20 * time.Millisecond)); wait > 0 {
			select {
			case <-ctx.Done():
				return nil
			case <-time.After(wait):
			}
		}
		sw.mu.Lock()
		freq := sw.freq
		sw.mu.Unlock()
		pcm, phase = tone.Sine(pcm, freq, toneLevel, amphi.SampleRate, phase)
		n, err := enc.Encode(pcm, buf)
		if err != nil {
			return err
		}
		if freq != cur {
			cur = freq
			sw.mu.Lock()
			if sw.freq == freq {
				sw.switched = time.Now()
			}
			sw.mu.Unlock()
		}
		if err := sw.s.sess.WriteOpus(buf[:n], 20*time.Millisecond); err != nil {
			return err
		}
	}
}

// onsetJS watches the AnalyserNode ANALYSER every ~10 ms with a 21 ms
// window: window.levels() reads the two tones' bins now, window.arm()
// starts looking for the moment the high tone overtakes the low one and
// notes it in window.onset, on this machine's wall clock in ms. Mid-switch
// the spectrum is smeared, so the watch goes on until the strongest bin is
// within a bin's width of the high tone (settled true) or SETTLE ms have
// passed (settled false).
const onsetJS = `(() => {
	const an = ANALYSER;
	an.fftSize = 1024;
	an.smoothingTimeConstant = 0;
	const sr = an.context.sampleRate;
	const bins = new Float32Array(an.frequencyBinCount);
	const lo = Math.round(LOW * an.fftSize / sr), hi = Math.round(HIGH * an.fftSize / sr);
	window.levels = () => {
		an.getFloatFrequencyData(bins);
		return {lo: Number.isFinite(bins[lo]) ? bins[lo] : -1000, hi: Number.isFinite(bins[hi]) ? bins[hi] : -1000};
	};
	window.onset = null;
	window.arm = () => {
		const timer = setInterval(() => {
			an.getFloatFrequencyData(bins);
			const at = performance.timeOrigin + performance.now();
			let peak = 1;
			for (let i = 1; i < bins.length; i++) if (bins[i] > bins[peak]) peak = i;
			const peakHz = peak * sr / an.fftSize;
			if (!window.onset) {
				if (!(bins[hi] > -50 && bins[hi] > bins[lo])) return;
				window.onset = {at, peakHz, hiDb: bins[hi], loDb: bins[lo]};
			}
			window.onset.lastPeakHz = peakHz;
			if (Math.abs(peakHz - HIGH) < sr / an.fftSize) window.onset.settled = true;
			else if (at - window.onset.at > SETTLE) window.onset.settled = false;
			if (window.onset.settled !== undefined) clearInterval(timer);
		}, 10);
		return true;
	};
	return true;
})()`

// onset is what the page noted when the high tone came.
type onset struct {
	At         float64 `json:"at"`     // ms since the Unix epoch
	PeakHz     float64 `json:"peakHz"` // the strongest frequency at the onset
	HiDB       float64 `json:"hiDb"`
	LoDB       float64 `json:"loDb"`
	LastPeakHz float64 `json:"lastPeakHz"`
	Settled    *bool   `json:"settled"` // nil while the page still watches
}

// settleWithin is how long after the onset the high tone has to become the
// strongest frequency the page hears: generous, since it plays on until
// then, and a busy machine may smear the switch over several polls.
const settleWithin = 10 * time.Second

// measureOnset installs onsetJS on analyser, waits until the low tone is
// heard, switches the speaker to the high tone and checks that the page
// then hears it. It returns the time from the high tone's first frame
// leaving the speaker to the page hearing it: a measurement, for the
// benchmark and the log, never asserted.
func measureOnset(tb testing.TB, ctx context.Context, sw *switchSpeaker, analyser string) time.Duration {
	tb.Helper()
	js := strings.NewReplacer("ANALYSER", analyser, "LOW", strconv.FormatFloat(lowHz, 'f', -1, 64),
		"HIGH", strconv.FormatFloat(highHz, 'f', -1, 64), "SETTLE", strconv.FormatInt(settleWithin.Milliseconds(), 10)).Replace(onsetJS)
	if _, err := chromedp.Run(ctx, chromedp.Evaluate[bool](js)); err != nil {
		tb.Fatalf("install the onset watch: %v", err)
	}
	if _, err := chromedp.Run(ctx, chromedp.Poll[bool](`window.levels().lo > -50`)); err != nil {
		lv, _ := chromedp.Run(context.WithoutCancel(ctx), chromedp.Evaluate[map[string]float64](`window.levels()`))
		tb.Fatalf("the player never played the %v Hz hum: levels %v: %v", lowHz, lv, err)
	}
	if _, err := chromedp.Run(ctx, chromedp.Evaluate[bool](`window.arm()`)); err != nil {
		tb.Fatal(err)
	}
	sw.set(highHz)
	defer sw.set(lowHz)
	o, err := chromedp.Run(ctx, chromedp.Poll[*onset](`window.onset && window.onset.settled !== undefined && window.onset`,
		chromedp.WithPollingInterval(50*time.Millisecond)))
	if err != nil {
		tb.Fatalf("the %v Hz tone was never heard: %v", highHz, err)
	}
	if !*o.Settled {
		tb.Errorf("within %v of the onset the strongest frequency never came near %v Hz (last %.0f Hz): %+v", settleWithin, highHz, o.LastPeakHz, *o)
	}
	from := sw.onset()
	if from.IsZero() {
		tb.Fatal("the speaker never sent the tone it was asked for")
	}
	lat := time.Duration((o.At - float64(from.UnixMicro())/1000) * float64(time.Millisecond))
	if lat <= 0 {
		tb.Fatalf("the page heard %v Hz %v before the speaker sent it: a stale tone from the backlog", highHz, -lat)
	}
	return lat
}

// toneSwitch is a live space whose speaker hums lowHz, and a headless
// Chromium to open its page in.
type toneSwitch struct {
	m     *Main
	sp    *client.Created
	sw    *switchSpeaker
	spoke time.Time
	bctx  context.Context
}

func startToneSwitch(tb testing.TB, ctx context.Context) *toneSwitch {
	tb.Helper()
	m, c, sp := webSpace(tb, ctx, "Latency check")
	ts := &toneSwitch{m: m, sp: sp, sw: &switchSpeaker{s: dialSpeaker(tb, ctx, c, sp.ID, sp.SpeakerToken), freq: lowHz}}
	ts.spoke = time.Now()
	tb.Cleanup(inBackground(tb, ctx, "speaker", ts.sw.run))
	ts.bctx = browserFor(tb, ctx)
	return ts
}

// elementAnalyserJS routes the page's <audio> element through an
// analyser, window.testAnalyser: the element plays only through WebAudio
// once routed into it, which is what the analyser needs anyway.
const elementAnalyserJS = `(() => {
	const ac = new AudioContext();
	const an = ac.createAnalyser();
	ac.createMediaElementSource(document.getElementById('live')).connect(an);
	an.connect(ac.destination);
	ac.resume();
	window.testAnalyser = an;
	return true;
})()`

// hearElement opens the space's page with its <audio> element
// (?player=audio) and returns its mouth-to-ear latency. Call it first: the element, seconds
// behind, would otherwise hear the others' tones in its backlog.
func (ts *toneSwitch) hearElement(tb testing.TB) time.Duration {
	tb.Helper()
	if err := chromedp.Do(ts.bctx,
		chromedp.Navigate(ts.m.URL()+"/s/"+ts.sp.ID+"?player=audio"),
		chromedp.WaitVisible(`#listen`),
	); err != nil {
		tb.Fatal(err)
	}
	if _, err := chromedp.Run(ts.bctx, chromedp.Evaluate[bool](elementAnalyserJS)); err != nil {
		tb.Fatal(err)
	}
	// Waiting is no assertion: the page asks for a 10 s burst, which the
	// element plays from its start, so its latency is the backlog on offer,
	// full once the space has been on air 10 s, as in any space a listener
	// joins after its first seconds.
	if wait := 10500*time.Millisecond - time.Since(ts.spoke); wait > 0 {
		time.Sleep(wait)
	}
	if err := chromedp.Do(ts.bctx, chromedp.Click(`#listen`)); err != nil {
		tb.Fatal(err)
	}
	lat := measureOnset(tb, ts.bctx, ts.sw, `window.testAnalyser`)
	st, _ := chromedp.Run(ts.bctx, chromedp.Evaluate[*mediaState](mediaStateJS))
	ahead, _ := chromedp.Run(ts.bctx, chromedp.Evaluate[float64](`(() => {
		const a = document.getElementById('live');
		return a.buffered.length ? a.buffered.end(a.buffered.length - 1) - a.currentTime : 0;
	})()`))
	tb.Logf("<audio> player: mouth-to-ear %v (element %+v, %.2f s buffered ahead; the page says %q)", lat.Round(time.Millisecond), st, ahead, behindText(ts.bctx))
	return lat
}

// hearLow opens the space's page with amphi's own player (?player=low, the
// default in Chromium) and returns its mouth-to-ear latency.
func (ts *toneSwitch) hearLow(tb testing.TB) time.Duration {
	tb.Helper()
	if err := chromedp.Do(ts.bctx,
		chromedp.Navigate(ts.m.URL()+"/s/"+ts.sp.ID+"?player=low"),
		chromedp.WaitVisible(`#listen`),
		chromedp.Click(`#listen`),
	); err != nil {
		tb.Fatal(err)
	}
	if _, err := chromedp.Run(ts.bctx, chromedp.Poll[bool](`!!(window.amphiPlayer && window.amphiPlayer.stats().frames > 0)`)); err != nil {
		status, _ := chromedp.Run(context.WithoutCancel(ts.bctx), chromedp.Text(`#status`))
		tb.Fatalf("the low-latency player did not start: page status %q: %v", status, err)
	}
	lat := measureOnset(tb, ts.bctx, ts.sw, `window.amphiPlayer.analyser`)
	stats, _ := chromedp.Run(ts.bctx, chromedp.Evaluate[map[string]any](`window.amphiPlayer.stats()`))
	tb.Logf("low-latency player: mouth-to-ear %v (player %v; the page says %q)", lat.Round(time.Millisecond), stats, behindText(ts.bctx))
	if _, err := chromedp.Run(ts.bctx, chromedp.Evaluate[bool](`window.amphiPlayer.stop(), true`)); err != nil {
		tb.Error(err)
	}
	return lat
}

// hearHLS opens the space's page with its LL-HLS player (?player=hls,
// hls.js in Chromium) and returns its mouth-to-ear latency. Call it after
// hearElement, whose tone is 10 s old by then, and before hearLow, whose
// tone of a second ago would still be in the playlist's backlog (it heard
// it 7 ms after the switch it was measuring, once).
func (ts *toneSwitch) hearHLS(tb testing.TB) time.Duration {
	tb.Helper()
	if err := chromedp.Do(ts.bctx,
		chromedp.Navigate(ts.m.URL()+"/s/"+ts.sp.ID+"?player=hls"),
		chromedp.WaitVisible(`#listen`),
	); err != nil {
		tb.Fatal(err)
	}
	if _, err := chromedp.Run(ts.bctx, chromedp.Evaluate[bool](elementAnalyserJS)); err != nil {
		tb.Fatal(err)
	}
	if err := chromedp.Do(ts.bctx, chromedp.Click(`#listen`)); err != nil {
		tb.Fatal(err)
	}
	lat := measureOnset(tb, ts.bctx, ts.sw, `window.testAnalyser`)
	ahead, _ := chromedp.Run(ts.bctx, chromedp.Evaluate[float64](`(() => {
		const a = document.getElementById('live');
		return a.buffered.length ? a.buffered.end(a.buffered.length - 1) - a.currentTime : 0;
	})()`))
	tb.Logf("LL-HLS player (hls.js): mouth-to-ear %v (%.2f s buffered ahead; the page says %q)", lat.Round(time.Millisecond), ahead, behindText(ts.bctx))
	if _, err := chromedp.Run(ts.bctx, chromedp.Evaluate[bool](`window.amphiHLS.destroy(), true`)); err != nil {
		tb.Error(err)
	}
	return lat
}

// behindText is what the page says of how far behind live it plays, for
// the log beside the latency measured.
func behindText(ctx context.Context) string {
	s, _ := chromedp.Run(ctx, chromedp.Text(`#behind`))
	return s
}

// TestWebLowLatencyPlayer: in headless Chromium, the page's WebCodecs
// player (?player=low, its default there), hls.js (?player=hls) and the
// <audio> element (?player=audio) each play the speaker, and each follows the speaker when the tone changes. How soon is
// measured by BenchmarkWebLowLatencyPlayer, and only logged here.
func TestWebLowLatencyPlayer(t *testing.T) {
	parallelBrowser(t)
	// Generous: the element plays ~10 s behind, and a busy machine slows
	// the browser down.
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	ts := startToneSwitch(t, ctx)
	t.Run("audio element", func(t *testing.T) { ts.hearElement(t) })
	t.Run("LL-HLS", func(t *testing.T) { ts.hearHLS(t) })
	t.Run("low", func(t *testing.T) { ts.hearLow(t) })
}

// BenchmarkWebLowLatencyPlayer measures mouth-to-ear latency in headless
// Chromium, from a speaker's frame leaving it to the page's player
// rendering it (the audio device's ~32 ms not included), for the three
// players, in a fresh space each time: the <audio> element, amphi's own
// player and LL-HLS through hls.js. Run it alone, once or a few times:
//
//	go test -run '^$' -bench WebLowLatencyPlayer -benchtime 1x -count 5 ./cmd/amphi/
func BenchmarkWebLowLatencyPlayer(b *testing.B) {
	var element, low, hls time.Duration
	n := 0
	for b.Loop() {
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
		ts := startToneSwitch(b, ctx)
		element += ts.hearElement(b)
		hls += ts.hearHLS(b)
		low += ts.hearLow(b)
		n++
		cancel()
	}
	b.ReportMetric(float64(element.Milliseconds())/float64(n), "element-ms")
	b.ReportMetric(float64(low.Milliseconds())/float64(n), "low-ms")
	b.ReportMetric(float64(hls.Milliseconds())/float64(n), "hls-ms")
}
