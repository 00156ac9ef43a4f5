package main

import (
	"bufio"
	"context"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/amphi-audio/amphi"
	"github.com/amphi-audio/amphi/internal/api"
	"github.com/amphi-audio/amphi/internal/client"
)

// manySpaces lifts the limit on creating spaces for the tests that start a
// server through the shared helpers: they create many spaces from
// 127.0.0.1, which is nobody's real shape. The tests of the limit set it
// again.
func manySpaces(m *Main) {
	m.Config.API.CreateLimit = api.CreateLimitConfig{}
}

func scheduledBody(title string) map[string]any {
	return map[string]any{"title": title, "scheduled_at": time.Now().Add(24 * time.Hour).UTC().Format(time.RFC3339)}
}

// TestSpaceCreationFloodIsLimited: one address creates five spaces, then
// is refused with 429, a clear message and a Retry-After of a minute, while
// another address still creates; a signed-in account has its own limit
// from any address, and a minute later may create again.
func TestSpaceCreationFloodIsLimited(t *testing.T) {
	t.Parallel()
	m, clk := startWithAdmin(t, func(m *Main) { m.Config.API.CreateLimit = api.DefaultCreateLimit() })
	base := m.URL()
	for i := range 5 {
		if resp, body := call(t, "POST", base+"/spaces", scheduledBody("Flood"), nil); resp.StatusCode != http.StatusCreated {
			t.Fatalf("space %d from 127.0.0.1: %d %v", i+1, resp.StatusCode, body)
		}
	}
	resp, body := call(t, "POST", base+"/spaces", scheduledBody("Flood"), nil)
	if resp.StatusCode != http.StatusTooManyRequests || resp.Header.Get("Retry-After") != "60" || !strings.Contains(errMessage(body), "too many spaces created from your address") {
		t.Fatalf("6th space from 127.0.0.1: %d Retry-After %q %v, want 429, 60 and why", resp.StatusCode, resp.Header.Get("Retry-After"), body)
	}

	// Another address, in another /24, is not held back by the first.
	other := client.New(base)
	other.HTTP = fromSource("127.0.2.1")
	if _, err := other.Create(t.Context(), "Elsewhere", nil); err != nil {
		t.Fatalf("a space from 127.0.2.1: %v", err)
	}

	// A signed-in account is limited as itself, not by its address.
	admin := signIn(t, base, "admin@example.org", adminPassword)
	for i := range 5 {
		if resp, body := call(t, "POST", base+"/spaces", scheduledBody("Mine"), admin.headers(true)); resp.StatusCode != http.StatusCreated {
			t.Fatalf("account's space %d: %d %v", i+1, resp.StatusCode, body)
		}
	}
	resp, body = call(t, "POST", base+"/spaces", scheduledBody("Mine"), admin.headers(true))
	if resp.StatusCode != http.StatusTooManyRequests || !strings.Contains(errMessage(body), "this account created 5 spaces") {
		t.Fatalf("account's 6th space: %d %v, want 429 naming the account's limit", resp.StatusCode, body)
	}
	clk.Advance(61 * time.Second)
	if resp, body := call(t, "POST", base+"/spaces", scheduledBody("Mine"), admin.headers(true)); resp.StatusCode != http.StatusCreated {
		t.Fatalf("account's space a minute later: %d %v", resp.StatusCode, body)
	}
}

// TestLiveSpaceCapRefusesWith503: past the node's cap on spaces on air,
// creating a live space and starting a scheduled one answer 503 and leave
// nothing half made; once a space ends, its place is free again.
func TestLiveSpaceCapRefusesWith503(t *testing.T) {
	t.Parallel()
	m := MustRunMainWith(t, t.TempDir(), func(m *Main) { m.Config.Live.MaxLive = 2 })
	t.Cleanup(func() { m.Close() })
	base, ctx := m.URL(), t.Context()
	c := client.New(base)
	var live []*client.Created
	for i := range 2 {
		sp, err := c.Create(ctx, "On air", nil)
		if err != nil {
			t.Fatalf("live space %d: %v", i+1, err)
		}
		live = append(live, sp)
	}
	resp, body := call(t, "POST", base+"/spaces", map[string]any{"title": "One too many"}, nil)
	if resp.StatusCode != http.StatusServiceUnavailable || !strings.Contains(errMessage(body), "2 spaces on air") {
		t.Fatalf("3rd live space: %d %v, want 503 saying the server is full", resp.StatusCode, body)
	}
	sched, err := c.Create(ctx, "Later", ptr(time.Now().Add(time.Hour)))
	if err != nil {
		t.Fatalf("a scheduled space takes no place on air: %v", err)
	}
	resp, body = call(t, "POST", base+"/spaces/"+sched.ID+"/start", nil, bearerHdr(sched.HostToken))
	if resp.StatusCode != http.StatusServiceUnavailable {
		t.Fatalf("starting a scheduled space on a full server: %d %v, want 503", resp.StatusCode, body)
	}
	if sp, err := c.Get(ctx, sched.ID); err != nil || sp.State != amphi.StateScheduled {
		t.Fatalf("the refused start left the space %+v (%v), want it still scheduled", sp, err)
	}
	if _, err := c.End(ctx, live[0].ID, live[0].HostToken); err != nil {
		t.Fatal(err)
	}
	if sp, err := c.Start(ctx, sched.ID, sched.HostToken); err != nil || sp.State != amphi.StateLive {
		t.Fatalf("start once a place is free: %+v %v", sp, err)
	}
}

func ptr[T any](v T) *T { return &v }

// waitEnded polls a space until it has ended, for a minute at most.
func waitEnded(t *testing.T, c *client.Client, id string) *client.Space {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for {
		sp, err := c.Get(t.Context(), id)
		if err != nil {
			t.Fatal(err)
		}
		if sp.State == amphi.StateEnded {
			return sp
		}
		if time.Now().After(deadline) {
			t.Fatalf("space %s still %s after a minute", id, sp.State)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// TestIdleSpaceEndsByItself: a live space nobody comes on stage in ends
// after the idle time; one whose speaker stays is not ended, and ends once
// the speaker leaves. Both end through the host's path: the end reason is
// recorded, listeners receive the end and the recording is finalised.
func TestIdleSpaceEndsByItself(t *testing.T) {
	t.Parallel()
	const idle = 3 * time.Second
	m := MustRunMainWith(t, t.TempDir(), func(m *Main) { m.Config.Live.IdleEnd = idle })
	t.Cleanup(func() { m.Close() })
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	c := client.New(m.URL())
	empty, err := c.Create(ctx, "Nobody came", nil)
	if err != nil {
		t.Fatal(err)
	}
	talk, err := c.Create(ctx, "Someone talks", nil)
	if err != nil {
		t.Fatal(err)
	}
	spk := dialSpeaker(t, ctx, c, talk.ID, talk.SpeakerToken)
	listened := make(chan *client.ListenStats, 1)
	go func() {
		st, err := c.Listen(ctx, talk.ID, client.ListenOptions{})
		if err != nil {
			t.Errorf("listen: %v", err)
		}
		listened <- st
	}()

	got := waitEnded(t, c, empty.ID)
	if got.EndReason != amphi.EndIdle {
		t.Errorf("the empty space ended for %q, want %q", got.EndReason, amphi.EndIdle)
	}
	if d := got.EndedAt.Sub(*got.StartedAt); d < idle {
		t.Errorf("the empty space ended %v after it started, before the idle time %v", d, idle)
	}
	recordingDuration(t, fetch(t, ctx, got.RecordingURL)) // whole and readable

	// Twice the idle time with a speaker on stage: still live.
	time.Sleep(2 * idle)
	if sp, err := c.Get(ctx, talk.ID); err != nil || sp.State != amphi.StateLive {
		t.Fatalf("a space with its speaker on stage: %+v %v, want it live", sp, err)
	}
	spk.sess.Close(ctx)
	got = waitEnded(t, c, talk.ID)
	if got.EndReason != amphi.EndIdle {
		t.Errorf("the space its speaker left ended for %q, want %q", got.EndReason, amphi.EndIdle)
	}
	select {
	case st := <-listened:
		if st == nil || !st.Ended {
			t.Errorf("listener: %+v, want the stream to end with the space", st)
		}
	case <-ctx.Done():
		t.Fatal("the listener's stream did not end with the space")
	}
	rec := recordingDuration(t, fetch(t, ctx, got.RecordingURL))
	if onAir := got.EndedAt.Sub(*got.StartedAt); (rec - onAir).Abs() > time.Second {
		t.Errorf("recording holds %v of the %v on air", rec, onAir)
	}
}

// openEvents opens a space's event stream with a bearer token. For a 200
// it returns the names of the events as they arrive, the channel closed
// when the server ends the stream; the stream is closed at cleanup.
func openEvents(t *testing.T, base, id, token string) (int, string, <-chan string) {
	t.Helper()
	ctx, cancel := context.WithCancel(t.Context())
	req, _ := http.NewRequestWithContext(ctx, "GET", base+"/spaces/"+id+"/events", nil)
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	t.Cleanup(func() { cancel(); resp.Body.Close() })
	if resp.StatusCode != http.StatusOK {
		var b [512]byte
		n, _ := resp.Body.Read(b[:])
		return resp.StatusCode, string(b[:n]), nil
	}
	events := make(chan string, 64)
	go func() {
		defer close(events)
		sc := bufio.NewScanner(resp.Body)
		for sc.Scan() {
			if ev, ok := strings.CutPrefix(sc.Text(), "event: "); ok {
				events <- ev
			}
		}
	}()
	return resp.StatusCode, "", events
}

// mintSpeaker mints a speaker token and returns it with its speaker id.
func mintSpeaker(t *testing.T, base string, sp *client.Created) (token, sid string) {
	t.Helper()
	resp, body := call(t, "POST", base+"/spaces/"+sp.ID+"/tokens", map[string]string{"role": "speaker"}, bearerHdr(sp.HostToken))
	if resp.StatusCode != http.StatusCreated {
		t.Fatalf("mint: %d %v", resp.StatusCode, body)
	}
	return body["token"].(string), body["speaker_id"].(string)
}

// TestEventStreamsPerTokenAreCapped: one token holds two event streams at
// most, so it cannot take the space's 32; another token still gets its own,
// and a stream closed frees its place.
func TestEventStreamsPerTokenAreCapped(t *testing.T) {
	t.Parallel()
	m := MustRunMain(t, t.TempDir())
	t.Cleanup(func() { m.Close() })
	base := m.URL()
	sp, err := client.New(base).Create(t.Context(), "Streams", nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	req, _ := http.NewRequestWithContext(ctx, "GET", base+"/spaces/"+sp.ID+"/events", nil)
	req.Header.Set("Authorization", "Bearer "+sp.SpeakerToken)
	first, err := http.DefaultClient.Do(req)
	if err != nil || first.StatusCode != http.StatusOK {
		t.Fatalf("1st stream: %v %v", first, err)
	}
	if code, _, _ := openEvents(t, base, sp.ID, sp.SpeakerToken); code != http.StatusOK {
		t.Fatalf("2nd stream: %d", code)
	}
	code, msg, _ := openEvents(t, base, sp.ID, sp.SpeakerToken)
	if code != http.StatusTooManyRequests || !strings.Contains(msg, "already has 2 event streams open") {
		t.Fatalf("3rd stream of one token: %d %s, want 429 saying why", code, msg)
	}
	if code, _, _ := openEvents(t, base, sp.ID, sp.HostToken); code != http.StatusOK {
		t.Fatalf("another token's stream: %d", code)
	}
	cancel()
	first.Body.Close()
	waitFor(t, func() bool {
		code, _, _ := openEvents(t, base, sp.ID, sp.SpeakerToken)
		return code == http.StatusOK
	})
}

// TestRemovedSpeakersEventStreamCloses: when the host removes a speaker,
// the speaker's open event streams end at once, saying why, and it cannot
// open another.
func TestRemovedSpeakersEventStreamCloses(t *testing.T) {
	t.Parallel()
	m := MustRunMain(t, t.TempDir())
	t.Cleanup(func() { m.Close() })
	base := m.URL()
	sp, err := client.New(base).Create(t.Context(), "Removal", nil)
	if err != nil {
		t.Fatal(err)
	}
	tok, sid := mintSpeaker(t, base, sp)
	code, _, events := openEvents(t, base, sp.ID, tok)
	if code != http.StatusOK {
		t.Fatalf("speaker's stream: %d", code)
	}
	if ev := <-events; ev != "state" {
		t.Fatalf("first event %q, want state", ev)
	}
	if resp, body := call(t, "DELETE", base+"/spaces/"+sp.ID+"/speakers/"+sid, nil, bearerHdr(sp.HostToken)); resp.StatusCode != http.StatusNoContent {
		t.Fatalf("remove: %d %v", resp.StatusCode, body)
	}
	timeout := time.After(10 * time.Second) // the stream's own ping is every 15 s
	var last string
	for ended := false; !ended; {
		select {
		case ev, ok := <-events:
			if ok {
				last = ev
			}
			ended = !ok
		case <-timeout:
			t.Fatal("the removed speaker's event stream is still open")
		}
	}
	if last != "revoked" {
		t.Errorf("the stream's last event was %q, want revoked", last)
	}
	if code, msg, _ := openEvents(t, base, sp.ID, tok); code != http.StatusUnauthorized || !strings.Contains(msg, "removed you") {
		t.Errorf("removed speaker's new stream: %d %s, want 401", code, msg)
	}
}
