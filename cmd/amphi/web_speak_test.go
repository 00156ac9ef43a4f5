package main

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/amphi-audio/amphi"
	"github.com/amphi-audio/amphi/internal/client"
	"github.com/amphi-audio/amphi/internal/tone"
	"github.com/amphi-audio/amphi/internal/wav"
)

// startMicBrowser is startBrowser with a fake microphone that plays wavPath
// in a loop and is granted without a prompt, and with loopback ICE
// candidates allowed: without that flag Chromium offers none on 127.0.0.1
// and the WHIP connection cannot form. Its actions are bounded by ctx.
func startMicBrowser(t *testing.T, ctx context.Context, wavPath string) context.Context {
	t.Helper()
	browser := startBrowser(t,
		chromedp.Flag("use-fake-ui-for-media-stream", true),
		chromedp.Flag("use-fake-device-for-media-stream", true),
		chromedp.Flag("use-file-for-fake-audio-capture", wavPath),
		chromedp.Flag("allow-loopback-in-peer-connection", true),
	)
	deadline, _ := ctx.Deadline()
	bctx, cancel := context.WithDeadline(browser, deadline)
	t.Cleanup(cancel)
	return bctx
}

// toneWAV writes d of a mono 48 kHz 16-bit sine at freq, the format
// Chromium's fake microphone reads, and returns its path.
func toneWAV(t *testing.T, freq float64, d time.Duration) string {
	t.Helper()
	pcm := make([]int16, int(d*amphi.SampleRate/time.Second))
	pcm, _ = tone.Sine(pcm, freq, toneLevel, amphi.SampleRate, 0)
	path := filepath.Join(t.TempDir(), "mic.wav")
	b := wav.Append(nil, &wav.Audio{SampleRate: amphi.SampleRate, Channels: 1, Samples: pcm})
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// pageStatus reads the page's status line, for failure messages.
func pageStatus(ctx context.Context) string {
	s, err := chromedp.Run(context.WithoutCancel(ctx), chromedp.Text(`#status`))
	if err != nil {
		return "(unreadable: " + err.Error() + ")"
	}
	return s
}

// TestWebSpeakerIsHeardFromItsPage walks a speaker's path through the web
// app: the speaker page, opened with a speaker token in its fragment, puts
// Chromium's microphone (a 660 Hz tone) on the stage over WHIP; a listener
// on the live stream must hear that tone, and then the page must hear a Go WHIP
// speaker's 440 Hz on one of its slots. Leave must end the page's WHIP
// session. The
// page is photographed at desktop and phone width.
func TestWebSpeakerIsHeardFromItsPage(t *testing.T) {
	parallelBrowser(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	m, c, sp := webSpace(t, ctx, "Open mic")

	dir := artifactsDir(t)
	bctx := startMicBrowser(t, ctx, toneWAV(t, 660, 10*time.Second))
	if err := chromedp.Do(bctx,
		chromedp.Navigate(m.URL()+"/s/"+sp.ID+"/speak?raw=1#token="+sp.SpeakerToken),
		chromedp.WaitVisible(`#join`),
	); err != nil {
		t.Fatalf("speaker page: %v (status %q)", err, pageStatus(bctx))
	}
	if _, err := chromedp.Run(bctx, chromedp.Poll[bool](
		`document.getElementById('title').textContent === 'Speak in Open mic' || null`)); err != nil {
		t.Fatalf("speaker page title: %v (status %q)", err, pageStatus(bctx))
	}
	shoot(t, bctx, dir, "speak")

	if err := chromedp.Do(bctx, chromedp.Click(`#join`)); err != nil {
		t.Fatal(err)
	}
	if _, err := chromedp.Run(bctx, chromedp.Poll[bool](
		`document.getElementById('status').textContent.startsWith('On the stage.') || null`)); err != nil {
		t.Fatalf("the page did not get on the stage: status %q: %v", pageStatus(bctx), err)
	}
	shoot(t, bctx, dir, "speaking")

	// A listener hears the program for 4 s: the browser's 660 Hz must be in
	// it, alone on the stage so far.
	var pkts [][]byte
	lctx, stopListening := context.WithTimeout(ctx, 4*time.Second)
	defer stopListening()
	if _, err := c.Listen(lctx, sp.ID, client.ListenOptions{
		OnPacket: func(p []byte, _ int64) { pkts = append(pkts, append([]byte(nil), p...)) },
	}); err != nil {
		t.Fatalf("listen: %v", err)
	}
	pcm := decode(t, pkts)
	blocks, with660 := 0, 0
	for i := 0; i+4800 <= len(pcm); i += 4800 {
		blocks++
		if tone.Present(pcm[i:i+4800], amphi.SampleRate, 660, 440) {
			with660++
		}
	}
	t.Logf("listener: %d packets, 660 Hz in %d of %d 100 ms blocks", len(pkts), with660, blocks)
	if with660 < 5 {
		t.Errorf("the browser's 660 Hz reached the listener in only %d of %d 100 ms blocks, want 5 or more", with660, blocks)
	}

	// A Go speaker plays 440 Hz, which the page must hear on a slot.
	speaker := dialSpeaker(t, ctx, c, sp.ID, freshSpeaker(t, c, sp))
	defer speaker.playUntilStopped(t, ctx, 440)()

	heard, err := chromedp.Run(bctx, chromedp.Poll[string](
		`(t => t !== '0' ? t : null)(document.getElementById('heard').textContent)`))
	if err != nil || heard != "1" {
		t.Errorf("the page hears %q other speakers (%v), want 1", heard, err)
	}

	// What the page plays back: the loudest slot's strongest frequency.
	sp2, err := chromedp.Run(bctx, chromedp.Evaluate[*spectrum](slotSpectrumJS, chromedp.EvalAwaitPromise))
	if err != nil {
		t.Fatalf("measure the slots: %v", err)
	}
	t.Logf("the page's loudest slot peaks at %.1f Hz, %.1f dB", sp2.PeakHz, sp2.PeakDB)
	binHz := float64(sp2.SampleRate) / float64(sp2.FFTSize)
	if sp2.PeakDB < -60 || sp2.PeakHz < 440-2*binHz || sp2.PeakHz > 440+2*binHz {
		t.Errorf("the page's loudest slot peaks at %.1f Hz, %.1f dB: want the Go speaker's 440 Hz, above -60 dB", sp2.PeakHz, sp2.PeakDB)
	}

	if got, err := c.Get(ctx, sp.ID); err != nil {
		t.Fatal(err)
	} else if got.Speakers == nil || *got.Speakers != 2 {
		t.Fatalf("before Leave the stage counts %v speakers, want 2", got.Speakers)
	}
	if err := chromedp.Do(bctx, chromedp.Click(`#leave`)); err != nil {
		t.Fatal(err)
	}
	if _, err := chromedp.Run(bctx, chromedp.Poll[bool](
		`document.getElementById('status').textContent === 'You left the stage.' || null`)); err != nil {
		t.Fatalf("leave: status %q: %v", pageStatus(bctx), err)
	}
	// Leave deleted the WHIP session: the Go speaker is alone on the stage.
	left := time.Now()
	for tick := time.NewTicker(100 * time.Millisecond); ; <-tick.C {
		got, err := c.Get(ctx, sp.ID)
		if err != nil {
			t.Fatalf("after leaving: %v", err)
		}
		if got.Speakers != nil && *got.Speakers == 1 {
			tick.Stop()
			break
		}
	}
	t.Logf("the stage counted one speaker %v after Leave", time.Since(left).Round(time.Millisecond))
}

// slotSpectrumJS measures, through an AnalyserNode each, what every slot's
// <audio> element of the speaker page receives, for a second, and returns
// the loudest slot's strongest frequency. Silence reads as -1000 dB.
const slotSpectrumJS = `(async () => {
	const ac = new AudioContext();
	await ac.resume();
	const ans = [];
	for (const a of document.querySelectorAll('#players audio')) {
		const an = ac.createAnalyser();
		an.fftSize = 8192;
		an.smoothingTimeConstant = 0;
		ac.createMediaStreamSource(a.srcObject).connect(an);
		ans.push(an);
	}
	await new Promise(r => setTimeout(r, 1000));
	let best = {state: ac.state, sampleRate: ac.sampleRate, fftSize: 8192, peakHz: 0, peakDb: -1000, medianDb: -1000};
	for (const an of ans) {
		const bins = new Float32Array(an.frequencyBinCount);
		an.getFloatFrequencyData(bins);
		let peak = 1; // past DC
		for (let i = 1; i < bins.length; i++) if (bins[i] > bins[peak]) peak = i;
		if (Number.isFinite(bins[peak]) && bins[peak] > best.peakDb) {
			best.peakHz = peak * ac.sampleRate / an.fftSize;
			best.peakDb = bins[peak];
		}
	}
	return best;
})()`
