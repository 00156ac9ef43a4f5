package main

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/amphi-audio/amphi/internal/client"
)

// turns is an ended space in which Alice spoke, then Bob, and the
// audience reacted in a burst while Bob spoke; times are of the recording,
// as the test's clock saw them.
type turns struct {
	m              *Main
	sp             *client.Created
	alice, bob     string // speaker ids
	aliceOn, bobOn time.Duration
	aliceOff       time.Duration
	bobOff         time.Duration
	burst          time.Duration
}

// timelineJSON is GET /spaces/{id}/timeline's answer.
type timelineJSON struct {
	Duration float64 `json:"duration_s"`
	Speakers []struct {
		ID    string       `json:"id"`
		Name  string       `json:"name"`
		Spans [][2]float64 `json:"spans"`
	} `json:"speakers"`
	Reactions []momentJSON `json:"reactions"`
	Peaks     []momentJSON `json:"peaks"`
}

type momentJSON struct {
	At    float64        `json:"at_s"`
	Count int            `json:"count"`
	Kinds map[string]int `json:"kinds"`
}

// react sends count reactions of the kind, as a listener's page does.
func react(t *testing.T, base, id, kind string, count int) {
	t.Helper()
	resp, body := call(t, http.MethodPost, base+"/spaces/"+id+"/reactions", map[string]any{"kind": kind, "count": count}, nil)
	if resp.StatusCode != http.StatusNoContent {
		t.Fatalf("react: %d %v", resp.StatusCode, body)
	}
}

// speakInTurns makes the space of turns: Alice's tone for 3 s, Bob's for
// 3 s after it, 80 claps 2.5 s into Bob's and 2 hearts before anyone
// spoke; then, having read the timeline while live, the host ends it.
func speakInTurns(t *testing.T, ctx context.Context) *turns {
	t.Helper()
	m := MustRunMain(t, t.TempDir())
	t.Cleanup(func() { m.Close() })
	c := client.New(m.URL())
	before := time.Now()
	sp, err := c.Create(ctx, "In turns", nil)
	if err != nil {
		t.Fatal(err)
	}
	// The recording starts while the space is created: its program is
	// made in real time from then on.
	start := before.Add(time.Since(before) / 2)
	tr := &turns{m: m, sp: sp}
	named := func(name string) (token, id string) {
		resp, body := call(t, http.MethodPost, m.URL()+"/spaces/"+sp.ID+"/tokens", map[string]string{"role": "speaker", "name": name}, bearerHdr(sp.HostToken))
		if resp.StatusCode != http.StatusCreated {
			t.Fatalf("mint %s: %d %v", name, resp.StatusCode, body)
		}
		return body["token"].(string), body["speaker_id"].(string)
	}
	aliceTok, alice := named("Alice")
	bobTok, bob := named("Bob")
	tr.alice, tr.bob = alice, bob
	a := dialSpeaker(t, ctx, c, sp.ID, aliceTok)
	b := dialSpeaker(t, ctx, c, sp.ID, bobTok)
	react(t, m.URL(), sp.ID, "heart", 2)
	if err := a.play(ctx, 440, 500*time.Millisecond, 3500*time.Millisecond, 4*time.Second); err != nil {
		t.Fatal(err)
	}
	played := make(chan error, 1)
	go func() { played <- b.play(ctx, 660, 500*time.Millisecond, 3500*time.Millisecond, 4*time.Second) }()
	time.Sleep(3 * time.Second)
	burst := time.Now()
	for range 4 { // the reaction limit's burst is 5 a source
		react(t, m.URL(), sp.ID, "clap", 20)
	}
	tr.burst = burst.Add(time.Since(burst) / 2).Sub(start)
	if err := <-played; err != nil {
		t.Fatal(err)
	}
	a.mu.Lock()
	tr.aliceOn, tr.aliceOff = a.toneFrom.Sub(start), a.toneTo.Sub(start)
	a.mu.Unlock()
	b.mu.Lock()
	tr.bobOn, tr.bobOff = b.toneFrom.Sub(start), b.toneTo.Sub(start)
	b.mu.Unlock()
	// While live, what is stored so far, not to be cached.
	if resp, _, raw := getTimeline(t, m.URL(), sp.ID); resp.StatusCode != http.StatusOK || resp.Header.Get("Cache-Control") != "no-cache" {
		t.Errorf("a live space's timeline: %d, Cache-Control %q: %s", resp.StatusCode, resp.Header.Get("Cache-Control"), raw)
	}
	if _, err := c.End(ctx, sp.ID, sp.HostToken); err != nil {
		t.Fatal(err)
	}
	return tr
}

func getTimeline(t *testing.T, base, id string) (*http.Response, *timelineJSON, string) {
	t.Helper()
	resp, err := http.Get(base + "/spaces/" + id + "/timeline")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var raw json.RawMessage
	if err := json.NewDecoder(resp.Body).Decode(&raw); err != nil {
		t.Fatalf("timeline: %d, not JSON: %v", resp.StatusCode, err)
	}
	var tl timelineJSON
	json.Unmarshal(raw, &tl)
	return resp, &tl, string(raw)
}

// near reports whether got seconds is within a second of want.
func near(got float64, want time.Duration) bool { return math.Abs(got-want.Seconds()) <= 1 }

// TestTimelineSaysWhoSpokeWhenAndWhereTheAudienceReacted: after a space in
// which Alice spoke, then Bob, its timeline has each one's span where they
// spoke (within a second) and a reaction peak at the burst of claps; it is
// cacheable, 404 for a made-up id, and goes with the recording.
func TestTimelineSaysWhoSpokeWhenAndWhereTheAudienceReacted(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	tr := speakInTurns(t, ctx)
	base, id := tr.m.URL(), tr.sp.ID

	resp, tl, raw := getTimeline(t, base, id)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("timeline: %d %s", resp.StatusCode, raw)
	}
	if cc := resp.Header.Get("Cache-Control"); !strings.Contains(cc, "public") || !strings.Contains(cc, "max-age=") {
		t.Errorf("an ended space's timeline has Cache-Control %q, want it cacheable", cc)
	}
	if tl.Duration < 7 || tl.Duration > 12 {
		t.Errorf("duration %v s, want about 8", tl.Duration)
	}
	t.Logf("Alice spoke [%.2f, %.2f], Bob [%.2f, %.2f], claps at %.2f; timeline %s", tr.aliceOn.Seconds(), tr.aliceOff.Seconds(),
		tr.bobOn.Seconds(), tr.bobOff.Seconds(), tr.burst.Seconds(), raw)
	if len(tl.Speakers) != 2 {
		t.Fatalf("speakers %s, want Alice and Bob", raw)
	}
	for i, want := range []struct {
		id, name string
		on, off  time.Duration
	}{{tr.alice, "Alice", tr.aliceOn, tr.aliceOff}, {tr.bob, "Bob", tr.bobOn, tr.bobOff}} {
		got := tl.Speakers[i]
		if got.ID != want.id || got.Name != want.name {
			t.Errorf("speaker %d is %s %q, want %s %q", i, got.ID, got.Name, want.id, want.name)
			continue
		}
		if len(got.Spans) != 1 || !near(got.Spans[0][0], want.on) || !near(got.Spans[0][1], want.off) {
			t.Errorf("%s spoke %v in the recording, want one span of about [%.2f, %.2f]", want.name, got.Spans, want.on.Seconds(), want.off.Seconds())
		}
	}
	var peak momentJSON
	for _, p := range tl.Peaks {
		if p.Count > peak.Count {
			peak = p
		}
	}
	// A burst across a bucket's edge splits; the busiest half has half.
	if b := tr.burst.Seconds(); peak.Count < 40 || peak.Kinds["clap"] != peak.Count || b < peak.At-1 || b > peak.At+5+1 {
		t.Errorf("the busiest peak %+v, want the claps sent at %.2f s", peak, b)
	}
	total := 0
	for _, m := range tl.Reactions {
		total += m.Count
	}
	if total != 82 {
		t.Errorf("%d reactions on the timeline, want 82: %s", total, raw)
	}

	resp, _, raw = getTimeline(t, base, "nosuchspace")
	if resp.StatusCode != http.StatusNotFound || !strings.Contains(raw, "no space") {
		t.Errorf("a made-up id: %d %s, want 404 saying there is no such space", resp.StatusCode, raw)
	}
	del, body := call(t, http.MethodDelete, base+"/spaces/"+id+"/recording", nil, bearerHdr(tr.sp.HostToken))
	if del.StatusCode != http.StatusOK {
		t.Fatalf("delete the recording: %d %v", del.StatusCode, body)
	}
	resp, _, raw = getTimeline(t, base, id)
	if resp.StatusCode != http.StatusNotFound || !strings.Contains(raw, "no recording") {
		t.Errorf("after deleting the recording, the timeline: %d %s, want 404", resp.StatusCode, raw)
	}
}

// TestWebReplayShowsWhoSpokeAndSeeksToTheirTurn: the replay page, in
// Chromium, shows a lane per speaker labelled with their name and times,
// and choosing Bob's stretch seeks the recording to where he began; the
// reactions' peak seeks likewise.
func TestWebReplayShowsWhoSpokeAndSeeksToTheirTurn(t *testing.T) {
	parallelBrowser(t)
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	tr := speakInTurns(t, ctx)

	b := browserFor(t, ctx)
	bobSpan := `#lanes .lane:nth-child(2) .span`
	if err := chromedp.Do(b, chromedp.Navigate(tr.m.URL()+"/s/"+tr.sp.ID+"/replay"), chromedp.WaitVisible(bobSpan)); err != nil {
		t.Fatalf("the replay page's lanes: %v (status %q)", err, pageStatus(b))
	}
	lanes, err := chromedp.Run(b, chromedp.Evaluate[[]string](`[...document.querySelectorAll('#lanes .lane')].map((l) =>
		l.getAttribute('aria-label') + ': ' + [...l.querySelectorAll('.span')].map((s) => s.getAttribute('aria-label')).join('; '))`))
	if err != nil || len(lanes) != 2 || !strings.HasPrefix(lanes[0], "Alice: Alice, 0:0") || !strings.HasPrefix(lanes[1], "Bob: Bob, 0:0") {
		t.Fatalf("lanes %q (%v), want Alice's then Bob's, labelled with names and times", lanes, err)
	}
	seekedBy := func(sel string) (at, from float64) {
		t.Helper()
		if err := chromedp.Do(b, chromedp.Click(sel)); err != nil {
			t.Fatal(err)
		}
		got, err := chromedp.Run(b, chromedp.Evaluate[[]float64](fmt.Sprintf(`(async () => {
			const a = document.getElementById('audio');
			if (a.seeking) await new Promise((r) => a.addEventListener('seeked', r, {once: true}));
			return [a.currentTime, Number(document.querySelector(%q).dataset.from)];
		})()`, sel), chromedp.EvalAwaitPromise))
		if err != nil || len(got) != 2 {
			t.Fatalf("after clicking %s: %v (%v)", sel, got, err)
		}
		return got[0], got[1]
	}
	// Nothing sticks out: the last bucket is cut at the recording's end.
	wide, err := chromedp.Run(b, chromedp.Evaluate[bool](`document.documentElement.scrollWidth > document.documentElement.clientWidth`))
	if err != nil || wide {
		t.Errorf("the replay page scrolls sideways (%v)", err)
	}
	at, from := seekedBy(bobSpan)
	if math.Abs(at-from) > 0.1 || !near(from, tr.bobOn) {
		t.Errorf("choosing Bob's stretch (from %.2f s) put the replay at %.2f s; Bob began at about %.2f s", from, at, tr.bobOn.Seconds())
	}
	seek, _ := chromedp.Run(b, chromedp.Evaluate[float64](`Number(document.getElementById('seek').value)`))
	if math.Abs(seek-at) > 0.2 {
		t.Errorf("the seek bar is at %v s, the replay at %v s", seek, at)
	}
	at, from = seekedBy(`#reactions .peak:last-of-type`)
	if math.Abs(at-from) > 0.1 || from > tr.burst.Seconds()+1 || from < tr.burst.Seconds()-6 {
		t.Errorf("choosing the peak (at %.2f s) put the replay at %.2f s; the claps came at about %.2f s", from, at, tr.burst.Seconds())
	}
}
