package main

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/amphi-audio/amphi/internal/client"
)

// artifactsDir is where the web tests leave their screenshots: $AMPHI_ARTIFACTS
// when set (CI keeps it), a temporary directory otherwise.
func artifactsDir(t *testing.T) string {
	t.Helper()
	if d := os.Getenv("AMPHI_ARTIFACTS"); d != "" {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
		return d
	}
	return t.TempDir()
}

// viewport is a screen a page must work on.
type viewport struct {
	name          string
	width, height int64
	mobile        bool
}

var viewports = []viewport{
	{"desktop", 1280, 800, false},
	{"phone", 375, 812, true},
}

// shoot renders the current page at each viewport, saves a screenshot of
// it named for page and viewport, and fails the test if the page scrolls
// sideways at that width or a control has no name a screen reader can say.
// It leaves the desktop viewport set.
func shoot(t *testing.T, ctx context.Context, dir, page string) {
	t.Helper()
	if bad, err := chromedp.Run(ctx, chromedp.Evaluate[[]string](a11yJS)); err != nil {
		t.Fatalf("%s page: accessibility check: %v", page, err)
	} else if len(bad) > 0 {
		t.Errorf("%s page: %s", page, strings.Join(bad, "; "))
	}
	for _, vp := range append(viewports[1:], viewports[0]) {
		var opts []chromedp.EmulateViewportOption
		if vp.mobile {
			opts = append(opts, chromedp.EmulateMobile)
		}
		if err := chromedp.Do(ctx, chromedp.EmulateViewport(vp.width, vp.height, opts...)); err != nil {
			t.Fatalf("viewport %s: %v", vp.name, err)
		}
		// Layout settles before the measure and the picture.
		if err := chromedp.Do(ctx, chromedp.Sleep(200*time.Millisecond)); err != nil {
			t.Fatal(err)
		}
		overflow, err := chromedp.Run(ctx, chromedp.Evaluate[int](
			`document.documentElement.scrollWidth - document.documentElement.clientWidth`))
		if err != nil {
			t.Fatal(err)
		}
		if overflow > 0 {
			t.Errorf("%s page at %s width (%d px) scrolls sideways by %d px", page, vp.name, vp.width, overflow)
		}
		png, err := chromedp.Run(ctx, chromedp.CaptureScreenshot())
		if err != nil {
			t.Fatalf("screenshot %s %s: %v", page, vp.name, err)
		}
		path := filepath.Join(dir, "web-"+page+"-"+vp.name+".png")
		if err := os.WriteFile(path, png, 0o644); err != nil {
			t.Fatal(err)
		}
		t.Logf("screenshot: %s", path)
	}
}

// a11yJS lists what a screen reader could not name on the page (visible
// form fields without a label, buttons and links without text or
// aria-label, images without alt, a page without a language) and text
// whose contrast with its background is below WCAG 2's AA level.
const a11yJS = `(() => {
	const bad = [];
	const shown = el => el.getClientRects().length > 0;
	const id = el => el.tagName.toLowerCase() + (el.id ? '#' + el.id : '');
	for (const el of document.querySelectorAll('input:not([type=hidden]), select, textarea')) {
		if (shown(el) && !(el.labels && el.labels.length) && !el.getAttribute('aria-label') && !el.getAttribute('aria-labelledby')) bad.push('unlabelled ' + id(el));
	}
	for (const el of document.querySelectorAll('button, a[href]')) {
		if (shown(el) && !(el.getAttribute('aria-label') || el.textContent || el.title || '').trim()) bad.push('nameless ' + id(el));
	}
	for (const el of document.querySelectorAll('img:not([alt])')) bad.push('no alt on ' + id(el));
	if (!document.documentElement.lang) bad.push('no lang on html');
	// WCAG 2 contrast of text on its background: 4.5:1, or 3:1 for large
	// text (24 px, or 18.66 px bold). Disabled controls are exempt.
	const rgb = c => (c.match(/[\d.]+/g) || []).map(Number);
	const lum = ([r, g, b]) => [r, g, b].map(v => { v /= 255; return v <= 0.03928 ? v / 12.92 : ((v + 0.055) / 1.055) ** 2.4; })
		.reduce((a, v, i) => a + v * [0.2126, 0.7152, 0.0722][i], 0);
	const background = el => {
		for (let e = el; e; e = e.parentElement) {
			const c = rgb(getComputedStyle(e).backgroundColor);
			if (c.length === 3 || c[3] === 1) return c.slice(0, 3);
			if (c[3] > 0) return null; // translucent: not judged
		}
		return [255, 255, 255];
	};
	for (const el of document.querySelectorAll('body *')) {
		if (!shown(el) || el.closest('[disabled], [aria-disabled="true"], audio, option')) continue;
		if (![...el.childNodes].some(n => n.nodeType === 3 && n.textContent.trim())) continue;
		const st = getComputedStyle(el);
		if (st.visibility === 'hidden' || Number(st.opacity) === 0) continue;
		const bg = background(el);
		const fg = rgb(st.color);
		if (!bg || (fg.length === 4 && fg[3] < 1)) continue;
		const [hi, lo] = [lum(fg.slice(0, 3)), lum(bg)].sort((x, y) => y - x);
		const ratio = (hi + 0.05) / (lo + 0.05);
		const size = parseFloat(st.fontSize), bold = Number(st.fontWeight) >= 700;
		const need = size >= 24 || (bold && size >= 18.66) ? 3 : 4.5;
		if (ratio < need) bad.push('contrast ' + ratio.toFixed(2) + ':1 < ' + need + ' on ' + id(el) + ' "' + el.textContent.trim().slice(0, 30) + '"');
	}
	return bad;
})()`

// notificationStubJS stands in for the browser's notifications, granted,
// recording each one's title and body in window.notes.
const notificationStubJS = `(() => {
	window.notes = [];
	window.Notification = class {
		static permission = 'granted';
		static requestPermission() { return Promise.resolve('granted'); }
		constructor(title, opts) { window.notes.push(title + ' ' + ((opts && opts.body) || '')); }
		close() {}
		addEventListener() {}
	};
	return true;
})()`

// pressWithKeyboard tabs through the page from its top until the element
// with the id has the focus, then presses Enter on it: what someone who
// cannot use a mouse does. It fails if 30 tabs do not reach it.
func pressWithKeyboard(t *testing.T, ctx context.Context, id string) {
	t.Helper()
	if _, err := chromedp.Run(ctx, chromedp.Evaluate[bool](`document.activeElement && document.activeElement.blur(); window.scrollTo(0, 0); true`)); err != nil {
		t.Fatal(err)
	}
	for range 30 {
		if err := chromedp.Do(ctx, chromedp.KeyEvent("\t")); err != nil {
			t.Fatal(err)
		}
		focused, err := chromedp.Run(ctx, chromedp.Evaluate[string](`document.activeElement ? document.activeElement.id : ''`))
		if err != nil {
			t.Fatal(err)
		}
		if focused == id {
			if err := chromedp.Do(ctx, chromedp.KeyEvent("\r")); err != nil {
				t.Fatal(err)
			}
			return
		}
	}
	t.Fatalf("30 tabs did not reach #%s", id)
}

// inBackground runs f on its own goroutine until the returned function is
// called, which stops it and waits for it; an error f returns before then
// fails the test.
func inBackground(t testing.TB, ctx context.Context, what string, f func(context.Context) error) (stop func()) {
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := f(ctx); err != nil && ctx.Err() == nil {
			t.Errorf("%s: %v", what, err)
		}
	}()
	return func() { cancel(); <-done }
}

// webSpace starts a server and creates a live space on it, for a browser
// test: the server closes after the browser.
func webSpace(t testing.TB, ctx context.Context, title string) (*Main, *client.Client, *client.Created) {
	t.Helper()
	m := MustRunMain(t, t.TempDir())
	t.Cleanup(func() { m.Close() }) // after the browser's cleanup
	c := client.New(m.URL())
	sp, err := c.Create(ctx, title, nil)
	if err != nil {
		t.Fatal(err)
	}
	return m, c, sp
}

// browserFor starts Chromium with its actions bounded by ctx's deadline.
func browserFor(t testing.TB, ctx context.Context) context.Context {
	t.Helper()
	browser := startBrowser(t)
	deadline, _ := ctx.Deadline()
	bctx, cancel := context.WithDeadline(browser, deadline)
	t.Cleanup(cancel)
	return bctx
}

// srcLogJS records every src the page gives its live audio element, so a
// test sees the ticketed URL even if the element drops it afterwards.
const srcLogJS = `(() => {
	window.srcs = [];
	const a = document.getElementById('live');
	new MutationObserver(() => { if (a.getAttribute('src')) window.srcs.push(a.getAttribute('src')); })
		.observe(a, {attributes: true, attributeFilter: ['src']});
	return true;
})()`

// TestWebListenerHearsALiveSpaceFromItsPage walks a listener's path through
// the web app: the home page lists a live and a scheduled space; the
// scheduled space's page links its calendar file and, armed and reminded,
// shows a notification and joins by itself once the host starts it, and
// offers the recording once it ends; the live space's page with its
// <audio> element (?player=audio) joins when Listen is reached and pressed
// from the keyboard alone, and the element plays the program; without
// ?player the page plays with amphi's own player (player.js), says how far
// behind live it is and offers to start from the start. Every page is
// photographed at desktop and phone width and must not scroll sideways.
func TestWebListenerHearsALiveSpaceFromItsPage(t *testing.T) {
	parallelBrowser(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	m, c, sp := webSpace(t, ctx, "Morning show")
	at := time.Now().Add(26 * time.Hour).Truncate(time.Minute)
	later, err := c.Create(ctx, "Tomorrow's panel", &at)
	if err != nil {
		t.Fatal(err)
	}

	// The speaker goes first: the page asks for a 10 s burst, and the more
	// of it exists when the page joins, the sooner Chromium's ~96 KB fill.
	speaker := dialSpeaker(t, ctx, c, sp.ID, sp.SpeakerToken)
	spoke := time.Now()
	defer speaker.playUntilStopped(t, ctx, 440)()

	dir := artifactsDir(t)
	bctx := browserFor(t, ctx)
	if err := chromedp.Do(bctx,
		chromedp.Navigate(m.URL()+"/"),
		chromedp.WaitVisible(`#live-list a[href="/s/`+sp.ID+`"]`),
		chromedp.WaitVisible(`#upcoming-list a[href="/s/`+later.ID+`"]`),
	); err != nil {
		t.Fatalf("home page lists the spaces: %v", err)
	}
	shoot(t, bctx, dir, "home")

	// The <audio> element (?player=audio) shows the ticketed URL it plays.
	if err := chromedp.Do(bctx,
		chromedp.Navigate(m.URL()+"/s/"+later.ID+"?player=audio"),
		chromedp.WaitVisible(`#arm`),
	); err != nil {
		t.Fatalf("scheduled space page: %v", err)
	}
	countdown, err := chromedp.Run(bctx, chromedp.Text(`#countdown`))
	if err != nil || !strings.Contains(countdown, "h") {
		t.Errorf("countdown to a start 26 h away reads %q (%v)", countdown, err)
	}
	shoot(t, bctx, dir, "scheduled")

	// The calendar link is the space's .ics.
	if href, err := chromedp.Run(bctx, chromedp.Evaluate[string](`document.getElementById('calendar').getAttribute('href')`)); err != nil || href != "/spaces/"+later.ID+"/calendar.ics" {
		t.Errorf("calendar link %q (%v)", href, err)
	}
	// Armed and reminded, the scheduled page notifies and joins by itself
	// once the host starts it. Headless Chromium has no notification
	// service: a stand-in records what the page shows.
	if _, err := chromedp.Run(bctx, chromedp.Evaluate[bool](srcLogJS)); err != nil {
		t.Fatal(err)
	}
	if _, err := chromedp.Run(bctx, chromedp.Evaluate[bool](notificationStubJS)); err != nil {
		t.Fatal(err)
	}
	if err := chromedp.Do(bctx, chromedp.Click(`#remind`), chromedp.Click(`#arm`)); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Start(ctx, later.ID, later.HostToken); err != nil {
		t.Fatal(err)
	}
	if srcs, err := chromedp.Run(bctx, chromedp.Poll[[]string](`window.srcs.length ? window.srcs : null`)); err != nil || !strings.Contains(srcs[0], "ticket=") {
		t.Fatalf("the armed page did not join once the space started: %q, %v", srcs, err)
	}
	if notes, err := chromedp.Run(bctx, chromedp.Poll[[]string](`window.notes.length ? window.notes : null`)); err != nil || !strings.Contains(notes[0], "Tomorrow's panel") {
		t.Errorf("the reminded page showed notifications %q (%v), want one naming the space", notes, err)
	}
	// Ended, its page offers the recording.
	if _, err := c.End(ctx, later.ID, later.HostToken); err != nil {
		t.Fatal(err)
	}
	if err := chromedp.Do(bctx,
		chromedp.Navigate(m.URL()+"/s/"+later.ID),
		chromedp.WaitVisible(`#replay`),
	); err != nil {
		t.Fatalf("ended space page: %v", err)
	}
	if src, err := chromedp.Run(bctx, chromedp.Evaluate[string](`document.getElementById('replay').getAttribute('src')`)); err != nil || src != "/spaces/"+later.ID+"/recording.opus" {
		t.Errorf("the replay plays %q (%v), want the recording", src, err)
	}
	shoot(t, bctx, dir, "ended")

	if err := chromedp.Do(bctx,
		chromedp.Navigate(m.URL()+"/s/"+sp.ID+"?player=audio"),
		chromedp.WaitVisible(`#listen`),
	); err != nil {
		t.Fatalf("live space page: %v", err)
	}
	title, err := chromedp.Run(bctx, chromedp.Text(`#title`))
	if err != nil || title != "Morning show" {
		t.Errorf("space page title %q (%v), want %q", title, err, "Morning show")
	}
	shoot(t, bctx, dir, "space")
	if _, err := chromedp.Run(bctx, chromedp.Evaluate[bool](srcLogJS)); err != nil {
		t.Fatal(err)
	}

	// Waiting here is no assertion: it lets the program build up the
	// backlog the page's burst asks for.
	if wait := 8*time.Second - time.Since(spoke); wait > 0 {
		time.Sleep(wait)
	}
	clicked := time.Now()
	pressWithKeyboard(t, bctx, "listen")
	const haveCurrentData = 2
	startPos := -1.0
	var st *mediaState
	for tick := time.NewTicker(250 * time.Millisecond); ; {
		st, err = chromedp.Run(bctx, chromedp.Evaluate[*mediaState](mediaStateJS))
		if err != nil {
			status, _ := chromedp.Run(context.WithoutCancel(bctx), chromedp.Text(`#status`))
			t.Fatalf("audio did not play: last state %+v, page status %q: %v", st, status, err)
		}
		if st.Error != "" {
			t.Fatalf("the audio element failed: %+v", *st)
		}
		if startPos < 0 && st.ReadyState >= haveCurrentData {
			startPos = st.CurrentTime
		}
		if startPos >= 0 && st.CurrentTime-startPos > 2 {
			tick.Stop()
			break
		}
		<-tick.C
	}
	t.Logf("from pressing Listen, playing after %v: %+v", time.Since(clicked).Round(time.Millisecond), *st)
	srcs, err := chromedp.Run(bctx, chromedp.Evaluate[[]string](`window.srcs`))
	if err != nil || len(srcs) != 1 || !strings.Contains(srcs[0], "ticket=") || !strings.Contains(srcs[0], "burst=10s") {
		t.Errorf("the page played %q (%v): want one ticketed URL with burst=10s", srcs, err)
	}
	status, err := chromedp.Run(bctx, chromedp.Text(`#status`))
	if err != nil || status != "Playing live." {
		t.Errorf("page status %q (%v), want %q", status, err, "Playing live.")
	}
	shoot(t, bctx, dir, "playing")

	// Without ?player, Chromium (WebCodecs decodes Opus there) plays with
	// amphi's own player, not the element, and offers to rewind.
	if err := chromedp.Do(bctx,
		chromedp.Navigate(m.URL()+"/s/"+sp.ID),
		chromedp.WaitVisible(`#listen`),
		chromedp.Click(`#listen`),
	); err != nil {
		t.Fatalf("live space page, default player: %v", err)
	}
	if _, err := chromedp.Run(bctx, chromedp.Poll[bool](`!!(window.amphiPlayer && window.amphiPlayer.stats().frames > 0) || null`)); err != nil {
		t.Fatalf("the default player is not player.js: %v (status %q)", err, pageStatus(bctx))
	}
	if src, err := chromedp.Run(bctx, chromedp.Evaluate[string](`document.getElementById('live').getAttribute('src') || ''`)); err != nil || src != "" {
		t.Errorf("the page's <audio> element plays %q (%v), want nothing beside player.js", src, err)
	}
	if _, err := chromedp.Run(bctx, chromedp.Poll[bool](`(b => b.offsetParent !== null && !!b.dataset.seconds || null)(document.getElementById('behind'))`)); err != nil {
		t.Errorf("the default player shows no figure behind live: %v", err)
	}
	if visible, err := chromedp.Run(bctx, chromedp.Evaluate[bool](`document.getElementById('from-start').offsetParent !== null`)); err != nil || !visible {
		t.Errorf("the default player offers no From the start (%v)", err)
	}
	shoot(t, bctx, dir, "playing-low")
}

// TestWebListenerSolvesProofOfWorkInItsPage arms proof of work: the page
// must solve the challenge in its worker, with the worker's own SHA-256,
// and be admitted.
func TestWebListenerSolvesProofOfWorkInItsPage(t *testing.T) {
	parallelBrowser(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	m := MustRunMainWith(t, t.TempDir(), func(m *Main) { m.Config.API.Gate.PoWDifficulty = 10 })
	t.Cleanup(func() { m.Close() })
	sp := createSpace(t, ctx, m.URL())

	bctx := browserFor(t, ctx)
	if err := chromedp.Do(bctx,
		chromedp.Navigate(m.URL()+"/s/"+sp.ID+"?player=audio"), // its src shows the ticket
		chromedp.WaitVisible(`#listen`),
	); err != nil {
		t.Fatal(err)
	}
	if _, err := chromedp.Run(bctx, chromedp.Evaluate[bool](srcLogJS)); err != nil {
		t.Fatal(err)
	}
	if err := chromedp.Do(bctx, chromedp.Click(`#listen`)); err != nil {
		t.Fatal(err)
	}
	srcs, err := chromedp.Run(bctx, chromedp.Poll[[]string](`window.srcs.length ? window.srcs : null`))
	if err != nil {
		status, _ := chromedp.Run(context.WithoutCancel(bctx), chromedp.Text(`#status`))
		t.Fatalf("the page was not admitted: status %q: %v", status, err)
	}
	if !strings.Contains(srcs[0], "ticket=") {
		t.Errorf("the page plays %q: want a ticketed URL", srcs[0])
	}

}

// TestAccessibilityCheckFindsProblems proves a11yJS, which every screenshot
// runs, finds what it claims to: a page with one of each problem yields
// each, and the same page fixed yields none.
func TestAccessibilityCheckFindsProblems(t *testing.T) {
	parallelBrowser(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	const bad = `<!doctype html><meta charset="utf-8"><title>bad</title>
<input id="nolabel"><button id="empty"></button><p id="faint" style="color:#aaa">faint text</p>
<p style="color:#777;font-size:24px">large grey text is fine</p>`
	const good = `<!doctype html><html lang="en"><meta charset="utf-8"><title>good</title>
<label for="named">Name</label><input id="named"><button>Send</button><p style="color:#595959">dark enough</p></html>`
	pages := map[string]string{"/bad": bad, "/good": good}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		io.WriteString(w, pages[r.URL.Path])
	}))
	defer srv.Close()
	bctx := browserFor(t, ctx)
	for path, want := range map[string][]string{
		"/bad":  {"unlabelled input#nolabel", "nameless button#empty", "no lang on html", "contrast 2.32:1 < 4.5 on p#faint"},
		"/good": nil,
	} {
		if err := chromedp.Do(bctx, chromedp.Navigate(srv.URL+path)); err != nil {
			t.Fatal(err)
		}
		got, err := chromedp.Run(bctx, chromedp.Evaluate[[]string](a11yJS))
		if err != nil {
			t.Fatal(err)
		}
		if len(got) != len(want) {
			t.Errorf("%s: found %q, want %d problems %q", path, got, len(want), want)
			continue
		}
		for i := range want {
			if !strings.HasPrefix(got[i], want[i]) {
				t.Errorf("%s: problem %d is %q, want %q…", path, i, got[i], want[i])
			}
		}
	}
}
