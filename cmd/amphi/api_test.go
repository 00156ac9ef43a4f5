package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pion/rtp"

	"github.com/amphi-audio/amphi/internal/client"
	"github.com/amphi-audio/amphi/internal/mix"
	"github.com/amphi-audio/amphi/internal/whip"
)

// videoOnlyOffer is a well-formed offer a WHIP endpoint for Opus cannot
// take.
const videoOnlyOffer = "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\n" +
	"a=group:BUNDLE 0\r\nm=video 9 UDP/TLS/RTP/SAVPF 96\r\nc=IN IP4 0.0.0.0\r\n" +
	"a=mid:0\r\na=sendonly\r\na=ice-ufrag:abcd\r\na=ice-pwd:abcdefghijklmnopqrstuvwx\r\n" +
	"a=fingerprint:sha-256 00:11:22:33:44:55:66:77:88:99:AA:BB:CC:DD:EE:FF:00:11:22:33:44:55:66:77:88:99:AA:BB:CC:DD:EE:FF\r\n" +
	"a=setup:actpass\r\na=rtcp-mux\r\na=rtpmap:96 VP8/90000\r\n"

// TestBadRequestsGetClearErrors attacks a real server with malformed,
// unauthorised and oversized requests: each gets its status and a JSON error
// with a code, never a crash or a hang.
func TestBadRequestsGetClearErrors(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	m := MustRunMain(t, t.TempDir())
	defer m.Close()
	c := client.New(m.URL())
	live, err := c.Create(ctx, "Live", nil)
	if err != nil {
		t.Fatal(err)
	}
	later := time.Now().Add(time.Hour)
	scheduled, err := c.Create(ctx, "Later", &later)
	if err != nil {
		t.Fatal(err)
	}
	big := strings.Repeat("x", 100<<10)
	sp := "/spaces/" + live.ID
	for _, tc := range []struct {
		name         string
		method, path string
		ctype, token string
		body         string
		status       int
		code         string
	}{
		{"create without JSON type", "POST", "/spaces", "text/plain", "", `{"title":"a"}`, 415, "unsupported"},
		{"create with malformed JSON", "POST", "/spaces", "application/json", "", `{"title":`, 400, "invalid"},
		{"create with unknown field", "POST", "/spaces", "application/json", "", `{"titel":"a"}`, 400, "invalid"},
		{"create with trailing data", "POST", "/spaces", "application/json", "", `{"title":"a"} {}`, 400, "invalid"},
		{"create without title", "POST", "/spaces", "application/json", "", `{"title":"  "}`, 400, "invalid"},
		{"create with a long title", "POST", "/spaces", "application/json", "", `{"title":"` + strings.Repeat("é", 201) + `"}`, 400, "invalid"},
		{"create with a bad time", "POST", "/spaces", "application/json", "", `{"title":"a","scheduled_at":"tomorrow"}`, 400, "invalid"},
		{"create oversized", "POST", "/spaces", "application/json", "", `{"title":"` + big + `"}`, 413, "too_large"},
		{"unknown space", "GET", "/spaces/nosuchspace", "", "", "", 404, "not_found"},
		{"unknown route", "GET", "/nowhere", "", "", "", 404, "not_found"},
		{"list with unknown state", "GET", "/spaces?state=paused", "", "", "", 400, "invalid"},
		{"live without a ticket", "GET", sp + "/live.opus", "", "", "", 401, "unauthorized"},
		{"live with a forged ticket", "GET", sp + "/live.opus?ticket=AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA", "", "", "", 401, "unauthorized"},
		{"live with garbage for a ticket", "GET", sp + "/live.opus?ticket=%00%ff", "", "", "", 401, "unauthorized"},
		{"join an unknown space", "POST", "/spaces/nosuchspace/join", "", "", "", 404, "not_found"},
		{"join with malformed JSON", "POST", sp + "/join", "application/json", "", `{"listener":`, 400, "invalid"},
		{"listen to an unknown space", "GET", "/spaces/nosuchspace/listen", "", "", "", 404, "not_found"},
		{"live with a bad burst", "GET", sp + "/live.opus?burst=lots", "", "", "", 400, "invalid"},
		{"recording while live", "GET", sp + "/recording.opus", "", "", "", 409, "conflict"},
		{"recording of unknown space", "GET", "/spaces/nosuchspace/recording.opus", "", "", "", 404, "not_found"},
		{"start without token", "POST", sp + "/start", "", "", "", 401, "unauthorized"},
		{"start with a wrong token", "POST", sp + "/start", "", "not-a-token", "", 401, "unauthorized"},
		{"start with another space's token", "POST", sp + "/start", "", scheduled.HostToken, "", 401, "unauthorized"},
		{"start with a speaker token", "POST", sp + "/start", "", live.SpeakerToken, "", 403, "forbidden"},
		{"start a live space", "POST", sp + "/start", "", live.HostToken, "", 409, "conflict"},
		{"end an unknown space", "POST", "/spaces/nosuchspace/end", "", live.HostToken, "", 404, "not_found"},
		{"mint a host token", "POST", sp + "/tokens", "application/json", live.HostToken, `{"role":"host"}`, 400, "invalid"},
		{"mint as a speaker", "POST", sp + "/tokens", "application/json", live.SpeakerToken, `{"role":"speaker"}`, 403, "forbidden"},
		{"whip without token", "POST", sp + "/whip", "application/sdp", "", "v=0", 401, "unauthorized"},
		{"whip with a wrong token", "POST", sp + "/whip", "application/sdp", "nope", "v=0", 401, "unauthorized"},
		{"whip to an unknown space", "POST", "/spaces/nosuchspace/whip", "application/sdp", live.SpeakerToken, "v=0", 404, "not_found"},
		{"whip without SDP type", "POST", sp + "/whip", "application/json", live.SpeakerToken, "v=0", 415, "unsupported"},
		{"whip with malformed SDP", "POST", sp + "/whip", "application/sdp", live.SpeakerToken, "hello\r\nworld", 400, "invalid"},
		{"whip without Opus", "POST", sp + "/whip", "application/sdp", live.SpeakerToken, videoOnlyOffer, 415, "unsupported"},
		{"whip oversized", "POST", sp + "/whip", "application/sdp", live.SpeakerToken, big, 413, "too_large"},
		{"whip to a scheduled space", "POST", "/spaces/" + scheduled.ID + "/whip", "application/sdp", scheduled.HostToken, videoOnlyOffer, 409, "conflict"},
		{"delete an unknown session", "DELETE", sp + "/whip/nosuchsession", "", live.SpeakerToken, "", 404, "not_found"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			req, _ := http.NewRequestWithContext(ctx, tc.method, m.URL()+tc.path, strings.NewReader(tc.body))
			if tc.ctype != "" {
				req.Header.Set("Content-Type", tc.ctype)
			}
			if tc.token != "" {
				req.Header.Set("Authorization", "Bearer "+tc.token)
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			var body struct {
				Error struct{ Code, Message string }
			}
			if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
				t.Fatalf("status %d, body is not a JSON error: %v", resp.StatusCode, err)
			}
			if resp.StatusCode != tc.status || body.Error.Code != tc.code || body.Error.Message == "" {
				t.Errorf("got %d %q %q, want %d %q with a message", resp.StatusCode, body.Error.Code, body.Error.Message, tc.status, tc.code)
			}
		})
	}
}

// TestStageSurvivesMisbehavingSpeakers fills the stage, refuses a 14th
// speaker, feeds it garbage RTP and loses a speaker without a DELETE, while a
// listener checks the program never has a hole.
func TestStageSurvivesMisbehavingSpeakers(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	m := MustRunMain(t, t.TempDir())
	defer m.Close()
	c := client.New(m.URL())
	sp, err := c.Create(ctx, "Unruly", nil)
	if err != nil {
		t.Fatal(err)
	}
	listenCtx, stopListening := context.WithCancel(ctx)
	listened := make(chan *client.ListenStats, 1)
	go func() {
		st, err := c.Listen(listenCtx, sp.ID, client.ListenOptions{})
		if err != nil {
			t.Errorf("listen: %v", err)
		}
		listened <- st
	}()

	// One speaker sends garbage: every third packet's payload is random
	// bytes and every fifth has a payload type nobody negotiated.
	var n int
	var mu sync.Mutex
	garbage, err := whip.Dial(ctx, c.WHIPURL(sp.ID), sp.SpeakerToken, whip.Config{Slots: -1, Knobs: whip.Knobs{
		OutgoingRTP: func(h *rtp.Header, payload []byte) {
			mu.Lock()
			defer mu.Unlock()
			n++
			switch {
			case n%5 == 0:
				h.PayloadType = 96
			case n%3 == 0:
				for i := range payload {
					payload[i] = byte(n * (i + 7))
				}
			}
		},
	}})
	if err != nil {
		t.Fatal(err)
	}
	speakers := []*whip.Session{garbage}
	for len(speakers) < 13 {
		s, err := whip.Dial(ctx, c.WHIPURL(sp.ID), freshSpeaker(t, c, sp), whip.Config{Slots: 2})
		if err != nil {
			t.Fatalf("speaker %d: %v", len(speakers)+1, err)
		}
		speakers = append(speakers, s)
	}
	_, err = whip.Dial(ctx, c.WHIPURL(sp.ID), freshSpeaker(t, c, sp), whip.Config{Slots: -1})
	var se *whip.StatusError
	if !errors.As(err, &se) || se.StatusCode != http.StatusServiceUnavailable || se.Code != "full" {
		t.Errorf("14th speaker: got %v, want 503 full", err)
	}

	<-garbage.Connected()
	silence := []byte{0xF8, 0xFF, 0xFE} // a 20 ms CELT silence frame
	for range 100 {
		if err := garbage.WriteOpus(silence, 20*time.Millisecond); err != nil {
			t.Fatal(err)
		}
		time.Sleep(20 * time.Millisecond)
	}

	// Vanish without DELETE: the stage must notice and free the place.
	speakers[1].Abandon()
	stage := m.live.Session(sp.ID).Stage()
	deadline := time.Now().Add(15 * time.Second)
	for len(stage.Speakers()) != 12 && time.Now().Before(deadline) {
		time.Sleep(100 * time.Millisecond)
	}
	if got := len(stage.Speakers()); got != 12 {
		t.Errorf("after a speaker vanished the stage has %d speakers, want 12", got)
	}
	st := stage.Stats()
	if st.DroppedPayloadType == 0 {
		t.Errorf("stage dropped no packets of an unknown payload type: %+v", st)
	}
	if mx := m.live.Session(sp.ID).Mixer().Stats(); undecodable(mx) == 0 {
		t.Errorf("mixer counted no undecodable packets: %+v", mx)
	}
	// A new speaker takes the free place.
	if s, err := whip.Dial(ctx, c.WHIPURL(sp.ID), freshSpeaker(t, c, sp), whip.Config{Slots: -1}); err != nil {
		t.Errorf("joining the freed place: %v", err)
	} else {
		speakers = append(speakers, s)
	}
	for _, s := range speakers {
		s.Close(ctx)
	}
	stopListening()
	ls := <-listened
	if ls.Holes != 0 || ls.Audio < 2*time.Second {
		t.Errorf("listener: %d holes in %v of audio, want none", ls.Holes, ls.Audio)
	}
	if _, err := c.End(ctx, sp.ID, sp.HostToken); err != nil {
		t.Fatal(err)
	}
	rec := fetch(t, ctx, sp.RecordingURL)
	if d := recordingDuration(t, rec); d < 2*time.Second {
		t.Errorf("recording holds %v", d)
	}
	if !bytes.HasPrefix(rec, []byte("OggS")) {
		t.Error("recording is not Ogg")
	}
}

// undecodable counts the packets the mixer refused as not Opus.
func undecodable(st mix.Stats) uint64 {
	var n uint64
	for _, s := range st.Sources {
		n += s.Dropped.Invalid + s.Dropped.Undecodable
	}
	return n
}
