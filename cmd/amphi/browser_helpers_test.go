package main

import (
	"context"
	"fmt"
	"html"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"

	"github.com/chromedp/chromedp"
)

// browserSlots bounds the browser tests running at once. Chromium is the
// heaviest thing the tests run; with two at most, a busy 2-core machine
// still plays their audio in time.
var browserSlots = make(chan struct{}, 2)

// parallelBrowser marks a browser test parallel and waits for one of the
// browser slots, held until the test ends. Call it first, before the
// test's timeouts start.
func parallelBrowser(t *testing.T) {
	t.Parallel()
	browserSlots <- struct{}{}
	t.Cleanup(func() { <-browserSlots })
}

// chromiumPath returns Debian's Chromium, or skips the test where it is not
// installed. On CI (CI set) a missing browser fails the test instead, so the
// newcomer's path cannot go untested there without anyone noticing.
func chromiumPath(t testing.TB) string {
	t.Helper()
	for _, p := range []string{"/usr/bin/chromium", "chromium"} {
		if path, err := exec.LookPath(p); err == nil {
			return path
		}
	}
	if os.Getenv("CI") != "" {
		t.Fatal("chromium is not installed, and CI is set: install it (the README's test command does)")
	}
	t.Skip("chromium is not installed: the README's test command installs it")
	return ""
}

// startBrowser starts a headless Chromium, with extra flags if given, and
// returns a context for its first tab. Cleanup closes the browser and checks
// none of its processes is left. The browser lives until then: bound its
// actions with a context derived from the one returned.
func startBrowser(t testing.TB, extra ...chromedp.ExecAllocatorOption) context.Context {
	t.Helper()
	dir := t.TempDir()
	opts := append([]chromedp.ExecAllocatorOption{
		chromedp.ExecPath(chromiumPath(t)),
		chromedp.UserDataDir(dir),
		chromedp.Flag("headless", true),
		chromedp.NoSandbox,
		chromedp.Flag("disable-gpu", true),
		chromedp.Flag("disable-quic", true),
		chromedp.NoFirstRun,
		chromedp.NoDefaultBrowserCheck,
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("disable-extensions", true),
		chromedp.Flag("disable-dev-shm-usage", true),
		// A media element waits for a user gesture otherwise, and a test has
		// none to give.
		chromedp.Flag("autoplay-policy", "no-user-gesture-required"),
	}, extra...)
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	bctx, cancelBrowser := chromedp.NewContext(actx)
	// The first Run starts the browser, under bctx and not a shorter one:
	// the browser lives as long as the context of that call.
	if err := chromedp.Do(bctx); err != nil {
		cancelBrowser()
		cancelAlloc()
		t.Fatalf("start chromium: %v", err)
	}
	t.Cleanup(func() {
		if err := chromedp.Cancel(bctx); err != nil {
			t.Logf("close chromium: %v", err)
		}
		cancelBrowser()
		cancelAlloc() // waits for the process to exit
		if pids := processesUsing(dir); len(pids) > 0 {
			t.Errorf("chromium processes %v are still running after the browser closed", pids)
		}
	})
	return bctx
}

// processesUsing lists the processes started with dir as their Chromium user
// data directory: every Chromium child process carries the flag.
func processesUsing(dir string) []int {
	want := "--user-data-dir=" + dir
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return nil
	}
	var pids []int
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		cmdline, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
		if err != nil {
			continue
		}
		for _, arg := range strings.Split(string(cmdline), "\x00") {
			if arg == want {
				pids = append(pids, pid)
				break
			}
		}
	}
	return pids
}

// servePage serves a page holding an autoplaying audio element for src, from
// another origin than amphi's, as a site embedding a space would. The element
// asks for CORS so the page may read its samples through WebAudio; amphi's
// live stream allows any origin. The page keeps a log of the element's events
// in window.mediaEvents, to tell what happened when playback did not start.
func servePage(t *testing.T, src string) string {
	t.Helper()
	page := `<!doctype html><meta charset="utf-8"><title>amphi listener</title>
<audio autoplay crossorigin="anonymous" src="` + html.EscapeString(src) + `"></audio>
<script>
window.mediaEvents = [];
const a = document.querySelector('audio');
for (const e of ['loadstart', 'loadedmetadata', 'loadeddata', 'canplay', 'canplaythrough',
	'play', 'playing', 'pause', 'waiting', 'stalled', 'suspend', 'error', 'emptied', 'ended'])
	a.addEventListener(e, () => window.mediaEvents.push(
		Math.round(performance.now()) + 'ms ' + e + ' currentTime=' + a.currentTime + ' readyState=' + a.readyState));
</script>`
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		w.Write([]byte(page))
	}))
	t.Cleanup(srv.Close)
	return srv.URL
}

// mediaState is what the page reports of its audio element.
type mediaState struct {
	CurrentTime  float64 `json:"currentTime"`
	ReadyState   int     `json:"readyState"`
	NetworkState int     `json:"networkState"`
	Paused       bool    `json:"paused"`
	Error        string  `json:"error"` // empty when the element has no MediaError
}

const mediaStateJS = `(() => {
	const a = document.querySelector('audio, video');
	if (!a) return null;
	return {
		currentTime: a.currentTime,
		readyState: a.readyState,
		networkState: a.networkState,
		paused: a.paused,
		error: a.error ? 'code ' + a.error.code + ': ' + a.error.message : '',
	};
})()`

// spectrum is what the page measures of its audio element's output.
type spectrum struct {
	State      string  `json:"state"` // the AudioContext's
	SampleRate int     `json:"sampleRate"`
	FFTSize    int     `json:"fftSize"`
	PeakHz     float64 `json:"peakHz"`
	PeakDB     float64 `json:"peakDb"`
	MedianDB   float64 `json:"medianDb"`
}

// spectrumJS routes the page's first audio element through an
// AnalyserNode, lets a second of audio through and returns the strongest
// frequency. An element once routed into WebAudio plays only through it, so
// this runs last. Silence reads as -1000 dB.
var spectrumJS = toneJS("audio, video", 0)

// toneJS is spectrumJS for the element the CSS selector finds; with hz
// set, it listens for up to ten seconds, a second at a time, and returns
// the first second whose peak is within two bins of hz above -60 dB (or
// the last one): the audio may start with a silence (a recording before
// its first speaker, a busy machine's late start).
func toneJS(selector string, hz float64) string {
	return strings.NewReplacer("SELECTOR", selector, "WANT_HZ", strconv.FormatFloat(hz, 'f', -1, 64)).Replace(spectrumTemplateJS)
}

const spectrumTemplateJS = `(async () => {
	const a = document.querySelector('SELECTOR');
	const want = WANT_HZ;
	const ac = new AudioContext();
	const an = ac.createAnalyser();
	an.fftSize = 8192;
	an.smoothingTimeConstant = 0;
	ac.createMediaElementSource(a).connect(an);
	an.connect(ac.destination);
	await ac.resume();
	const bin = ac.sampleRate / an.fftSize;
	const bins = new Float32Array(an.frequencyBinCount);
	let peak = 1; // past DC
	for (let second = 0; second < (want ? 10 : 1); second++) {
		await new Promise(r => setTimeout(r, 1000));
		an.getFloatFrequencyData(bins);
		peak = 1;
		for (let i = 1; i < bins.length; i++) if (bins[i] > bins[peak]) peak = i;
		if (want && Math.abs(peak * bin - want) <= 2 * bin && bins[peak] > -60) break;
	}
	const sorted = Array.from(bins).filter(Number.isFinite).sort((x, y) => x - y);
	return {
		state: ac.state,
		sampleRate: ac.sampleRate,
		fftSize: an.fftSize,
		peakHz: peak * bin,
		peakDb: Number.isFinite(bins[peak]) ? bins[peak] : -1000,
		medianDb: sorted.length ? sorted[sorted.length >> 1] : -1000,
	};
})()`
