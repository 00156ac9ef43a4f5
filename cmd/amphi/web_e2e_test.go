package main

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/amphi-audio/amphi"
	"github.com/amphi-audio/amphi/internal/ogg"
	"github.com/amphi-audio/amphi/internal/tone"
)

// Tones of the end-to-end test: what each browser's fake microphone plays.
const (
	hostHz     = 440.0
	listenerHz = 1000.0
)

// TestWebEndToEnd is the whole product in two real browsers: a host signs
// in, creates a space and goes live speaking from the console (its fake
// microphone plays 440 Hz); a second browser listens from the space's page
// and must decode 440 Hz from its audio element, sees the host speaking on
// stage and reacts; it asks to speak under a name, the host approves in the
// console, and the new speaker's 1 000 Hz must be heard in the host's
// browser; the host turns recording off and on and removes the speaker,
// whose page shows each; the host ends the space and the listener's page
// replays the recording, in which both voices are found. Every page is photographed at
// desktop and phone width.
func TestWebEndToEnd(t *testing.T) {
	parallelBrowser(t)
	ctx, cancel := context.WithTimeout(context.Background(), 150*time.Second)
	defer cancel()
	m, _ := startWithAdmin(t, nil)
	base := m.URL()
	admin := signIn(t, base, "admin@example.org", adminPassword)
	inviteHost(t, base, admin, "ada@example.org")
	dir := artifactsDir(t)

	hostB := startMicBrowser(t, ctx, toneWAV(t, hostHz, 20*time.Second))
	listenerB := startMicBrowser(t, ctx, toneWAV(t, listenerHz, 20*time.Second))
	run := func(b context.Context, what string, actions ...chromedp.Action[chromedp.Void]) {
		t.Helper()
		if err := chromedp.Do(b, actions...); err != nil {
			t.Fatalf("%s: %v (page status %q)", what, err, pageStatus(b))
		}
	}
	poll := func(b context.Context, what, js string) {
		t.Helper()
		if _, err := chromedp.Run(b, chromedp.Poll[bool](js+` || null`)); err != nil {
			t.Fatalf("%s: %v (page status %q)", what, err, pageStatus(b))
		}
	}

	// An invite link opens the setup page; this one stays unused.
	resp, body := call(t, "POST", base+"/auth/invites", map[string]string{"role": "host"}, admin.headers(true))
	if resp.StatusCode != http.StatusCreated {
		t.Fatalf("invite: %d %v", resp.StatusCode, body)
	}
	run(hostB, "setup page", chromedp.Navigate(base+body["url"].(string)), chromedp.WaitVisible(`#email`))
	shoot(t, hostB, dir, "e2e-setup")

	// The host signs in and creates a live space.
	run(hostB, "sign in",
		chromedp.Navigate(base+"/signin"),
		chromedp.WaitVisible(`#email`),
		chromedp.SendKeys(`#email`, "ada@example.org"),
		chromedp.SendKeys(`#password`, hostPassword),
	)
	shoot(t, hostB, dir, "e2e-signin")
	run(hostB, "sign in", chromedp.Click(`#submit`), chromedp.WaitVisible(`#host-panel`))
	run(hostB, "create a space",
		chromedp.SendKeys(`#title`, "Launch day"),
		chromedp.SendKeys(`#description`, "We ship, then take questions."),
	)
	shoot(t, hostB, dir, "e2e-host")
	run(hostB, "create a space", chromedp.Click(`#create`), chromedp.WaitVisible(`#yours a`))
	href, err := chromedp.Run(hostB, chromedp.Evaluate[string](`document.querySelector('#yours a').getAttribute('href')`))
	if err != nil || !strings.HasSuffix(href, "/host") {
		t.Fatalf("console link %q (%v)", href, err)
	}
	id := strings.Split(href, "/")[2]

	// It goes on stage from the console, raw: a tone through echo
	// cancellation comes out mangled.
	run(hostB, "console", chromedp.Navigate(base+href+"?raw=1"), chromedp.WaitVisible(`#host-speak`))
	run(hostB, "speak from the console", chromedp.Click(`#host-speak`))
	poll(hostB, "the host on stage", `document.getElementById('host-stage').dataset.stage === 'connected'`)

	// The listener opens the space's page and listens.
	// It listens with the <audio> element (?player=audio), whose output the
	// test taps (toneJS).
	run(listenerB, "space page", chromedp.Navigate(base+"/s/"+id+"?player=audio"), chromedp.WaitVisible(`#listen`))
	if d, err := chromedp.Run(listenerB, chromedp.Text(`#description`)); err != nil || d != "We ship, then take questions." {
		t.Errorf("description %q (%v)", d, err)
	}
	// The host is on stage under their account's name, speaking.
	poll(listenerB, "the host speaking on stage", `(li => li && li.textContent.includes('ada'))(document.querySelector('#stage li.speaker[data-speaking="true"][data-host="true"]'))`)
	run(listenerB, "listen", chromedp.Click(`#listen`))
	poll(listenerB, "playing", `document.getElementById('live').currentTime > 1`)
	poll(listenerB, "listener count", `/^1\D/.test(document.getElementById('listeners').textContent)`)
	run(listenerB, "react", chromedp.Click(`#react-clap`))
	poll(hostB, "the clap reaches the console", `!!document.querySelector('#reactions li[data-kind="clap"]')`)
	poll(hostB, "the console counts the listener", `/1/.test(document.getElementById('listeners').textContent)`)
	shoot(t, listenerB, dir, "e2e-space")

	// What the listener's audio element plays is the host's tone.
	assertTonePlays(t, listenerB, "the listener's page", toneJS("#live", hostHz), hostHz)

	// The listener asks to speak; the host approves.
	run(listenerB, "request to speak",
		chromedp.SendKeys(`#request-name`, "Grace"),
		chromedp.Click(`#request-submit`),
	)
	poll(listenerB, "request pending", `document.getElementById('request-status').textContent.startsWith('Waiting for the host')`)
	shoot(t, listenerB, dir, "e2e-request")
	run(hostB, "the request reaches the console", chromedp.WaitVisible(`button[data-approve]`))
	shoot(t, hostB, dir, "e2e-console")
	run(hostB, "approve", chromedp.Click(`button[data-approve]`))

	// Approved, the page goes to the speaker page with a token; the test
	// reopens it raw, as the host's.
	var hash string
	for deadline := time.Now().Add(15 * time.Second); ; time.Sleep(200 * time.Millisecond) {
		// Evaluating across the navigation fails now and then: ask again.
		loc, err := chromedp.Run(listenerB, chromedp.Evaluate[[]string](`[location.pathname, location.hash]`))
		if err == nil && strings.HasSuffix(loc[0], "/speak") && strings.Contains(loc[1], "token=") {
			hash = loc[1]
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the approved listener's page did not go to the speaker page: %q, %v (page status %q)", loc, err, pageStatus(listenerB))
		}
	}
	run(listenerB, "speaker page", chromedp.Navigate(base+"/s/"+id+"/speak?raw=1"+hash), chromedp.WaitVisible(`#join`))
	if name, err := chromedp.Run(listenerB, chromedp.Text(`#speaker-name-text`)); err != nil || name != "Grace" {
		t.Errorf("speaker name %q (%v)", name, err)
	}
	run(listenerB, "join the stage", chromedp.Click(`#join`))
	poll(listenerB, "on stage", `document.getElementById('status').textContent.startsWith('On the stage.')`)
	poll(hostB, "Grace on the console's stage", `[...document.querySelectorAll('#stage li')].some(li => li.textContent.includes('Grace'))`)
	shoot(t, listenerB, dir, "e2e-speak")

	// The host hears the new speaker.
	poll(hostB, "the host hears a speaker", `document.querySelectorAll('#host-players audio').length > 0`)
	assertTonePlays(t, hostB, "the host's browser", hostSlotsSpectrumJS, listenerHz)
	shoot(t, hostB, dir, "e2e-console-live")

	// Recording off, then on again: the speaker's page shows each. Then
	// the host removes the speaker, whose page says so.
	if _, err := chromedp.Run(hostB, chromedp.Evaluate[bool](`window.confirm = () => true; true`)); err != nil {
		t.Fatal(err)
	}
	for _, on := range []string{"false", "true"} {
		run(hostB, "recording "+on, chromedp.Click(`#recording`))
		poll(hostB, "the console's recording "+on, `document.getElementById('recording').getAttribute('aria-pressed') === '`+on+`'`)
		poll(listenerB, "the speaker sees recording "+on, `document.getElementById('recording').dataset.on === '`+on+`'`)
	}
	run(hostB, "remove the speaker", chromedp.Click(`#stage li[data-host="false"] button[data-remove]`))
	poll(listenerB, "the removed speaker is told", `window.amphiSpeak && window.amphiSpeak.state === 'removed'`)
	if s := pageStatus(listenerB); !strings.Contains(s, "removed from the stage") {
		t.Errorf("the removed speaker's page says %q", s)
	}

	// The host ends the space; the listener's page replays it.
	run(hostB, "end", chromedp.Click(`#end`))
	poll(hostB, "ended", `document.getElementById('state').dataset.state === 'ended'`)
	run(listenerB, "replay page", chromedp.Navigate(base+"/s/"+id), chromedp.WaitVisible(`#replay`))
	if _, err := chromedp.Run(listenerB, chromedp.Evaluate[bool](`document.getElementById('replay').play().then(() => true)`, chromedp.EvalAwaitPromise)); err != nil {
		t.Fatalf("play the replay: %v", err)
	}
	poll(listenerB, "the replay plays", `document.getElementById('replay').currentTime > 0.5`)
	shoot(t, listenerB, dir, "e2e-replay")
	assertTonePlays(t, listenerB, "the replay", toneJS("#replay", hostHz), hostHz)

	// The recording holds both voices: the host's throughout, the new
	// speaker's over it once on stage. Each is measured against a
	// frequency neither plays, since both sound at once.
	pcm := decodeOgg(t, fetch(t, ctx, base+"/spaces/"+id+"/recording.opus"))
	const neither = 2500.0
	var withHost, withListener int
	for i := 0; i+4800 <= len(pcm); i += 4800 {
		if tone.Present(pcm[i:i+4800], amphi.SampleRate, hostHz, neither) {
			withHost++
		}
		if tone.Present(pcm[i:i+4800], amphi.SampleRate, listenerHz, neither) {
			withListener++
		}
	}
	t.Logf("recording: %.1f s; 440 Hz in %d and 1000 Hz in %d of its 100 ms blocks", float64(len(pcm))/amphi.SampleRate, withHost, withListener)
	if withHost < 10 || withListener < 5 {
		t.Errorf("the recording has the host in %d and the new speaker in %d blocks of 100 ms, want 10 and 5 or more", withHost, withListener)
	}
}

// assertTonePlays measures the page's audio with js (a spectrum script,
// such as toneJS's) and fails unless it peaks within two bins of hz, above
// -60 dB.
func assertTonePlays(t *testing.T, b context.Context, what, js string, hz float64) {
	t.Helper()
	s, err := chromedp.Run(b, chromedp.Evaluate[spectrum](js, chromedp.EvalAwaitPromise))
	if err != nil {
		t.Fatalf("measure %s: %v", what, err)
	}
	t.Logf("%s plays a peak at %.1f Hz, %.1f dB", what, s.PeakHz, s.PeakDB)
	bin := float64(s.SampleRate) / float64(s.FFTSize)
	if s.PeakDB < -60 || s.PeakHz < hz-2*bin || s.PeakHz > hz+2*bin {
		t.Errorf("%s peaks at %.1f Hz, %.1f dB: want %.0f Hz above -60 dB", what, s.PeakHz, s.PeakDB, hz)
	}
}

// hostSlotsSpectrumJS is slotSpectrumJS for the console's players.
var hostSlotsSpectrumJS = strings.Replace(slotSpectrumJS, "#players audio", "#host-players audio", 1)

// decodeOgg decodes an Ogg Opus file's audio packets (past its two header
// packets) to PCM.
func decodeOgg(t *testing.T, b []byte) []int16 {
	t.Helper()
	rd := ogg.NewReader(bytes.NewReader(b))
	var pkts [][]byte
	for i := 0; ; i++ {
		pkt, _, err := rd.ReadPacket()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("recording packet %d: %v", i, err)
		}
		if i >= 2 {
			pkts = append(pkts, pkt)
		}
	}
	return decode(t, pkts)
}
