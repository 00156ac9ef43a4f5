package api

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/amphi-audio/amphi"
	"github.com/amphi-audio/amphi/internal/gate"
)

func TestCreateRefusesWhatAHostCanFix(t *testing.T) {
	ts := newTestServer(t, func(c *Config) { c.MaxBody = 1 << 10 })
	past := ts.now().Add(-2 * time.Minute).Format(time.RFC3339)
	const js = "application/json"
	for _, tc := range []struct {
		name, ctype, body string
		status            int
		code, says        string
	}{
		{"not JSON", "text/plain", `{"title":"a"}`, 415, "unsupported", "application/json"},
		{"no Content-Type", "", `{"title":"a"}`, 415, "unsupported", ""},
		{"malformed JSON", js, `{"title":`, 400, "invalid", "malformed"},
		{"an unknown field", js, `{"titel":"a"}`, 400, "invalid", "unknown field"},
		{"data after the object", js, `{"title":"a"} {}`, 400, "invalid", "after the object"},
		{"no title", js, `{"title":"  "}`, 400, "invalid", "title is required"},
		{"a title too long", js, `{"title":"` + strings.Repeat("é", maxTitle+1) + `"}`, 400, "invalid", "longer than 200"},
		{"a description too long", js, `{"title":"a","description":"` + strings.Repeat("d", 1000) + `"}`, 413, "too_large", ""},
		{"a direction mark in the title", js, `{"title":"a\u202eb"}`, 400, "invalid", "text-direction"},
		{"a start time that is not one", js, `{"title":"a","scheduled_at":"tomorrow"}`, 400, "invalid", ""},
		{"a start time in the past", js, `{"title":"a","scheduled_at":"` + past + `"}`, 400, "invalid", "in the past"},
		{"a body too large", js, `{"title":"` + strings.Repeat("x", 2<<10) + `"}`, 413, "too_large", "1024"},
		{"a start time", js, `{"title":"a","scheduled_at":"` + ts.now().Add(time.Minute).Format(time.RFC3339) + `"}`, 201, "", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w := ts.do(call{method: "POST", path: "/spaces", ctype: tc.ctype, body: tc.body})
			if w.Code != tc.status || errorCode(w) != tc.code {
				t.Fatalf("answered %d %q, want %d %q: %s", w.Code, errorCode(w), tc.status, tc.code, w.Body)
			}
			if !strings.Contains(w.Body.String(), tc.says) {
				t.Errorf("the message does not say %q: %s", tc.says, w.Body)
			}
		})
	}
}

func TestCreatingTooFastIsRefusedWithItsOwnRetryAfter(t *testing.T) {
	ts := newTestServer(t, func(c *Config) { c.CreateLimit = DefaultCreateLimit() })
	for range DefaultCreateLimit().Source.SourceBurst {
		ts.scheduled()
	}
	w := ts.do(call{method: "POST", path: "/spaces", ctype: "application/json", body: `{"title":"one more"}`})
	if w.Code != http.StatusTooManyRequests || w.Header().Get("Retry-After") != "60" {
		t.Errorf("answered %d, Retry-After %q: %s", w.Code, w.Header().Get("Retry-After"), w.Body)
	}
}

// stateOf is what the tests read of a state poll.
type stateOf struct {
	State       amphi.State `json:"state"`
	Waiting     int         `json:"waiting"`
	PollAfterMs int64       `json:"poll_after_ms"`
}

func TestStatePollsOfSpacesNotOnAir(t *testing.T) {
	ts := newTestServer(t, nil)
	sp, ended := ts.scheduled(), ts.scheduled()
	if _, err := ts.EndSpace(t.Context(), ended.ID); err != nil {
		t.Fatal(err)
	}
	ts.do(call{method: "POST", path: "/spaces/" + sp.ID + "/join"}) // one in line
	for _, tc := range []struct {
		name, id string
		status   int
		want     stateOf
	}{
		{"unknown", "nosuchspace", 404, stateOf{}},
		{"scheduled", sp.ID, 200, stateOf{State: amphi.StateScheduled, PollAfterMs: 2000}},
		{"ended", ended.ID, 200, stateOf{State: amphi.StateEnded, PollAfterMs: 15000}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := "/spaces/" + tc.id + "/state"
			w := ts.do(call{method: "GET", path: path})
			if w.Code != tc.status {
				t.Fatalf("answered %d: %s", w.Code, w.Body)
			}
			if tc.status != 200 {
				return
			}
			var got stateOf
			json.Unmarshal(w.Body.Bytes(), &got)
			if got != tc.want {
				t.Errorf("state %+v, want %+v", got, tc.want)
			}
			if cc := w.Header().Get("Cache-Control"); cc != "public, max-age=1" {
				t.Errorf("Cache-Control %q", cc)
			}
			r := ts.do(call{method: "GET", path: path})
			if r.Body.String() != w.Body.String() || r.Header().Get("Etag") != w.Header().Get("Etag") {
				t.Error("a second poll within the second was encoded anew")
			}
		})
	}
	if n := ts.GateStats().Refusals[gate.RefusalNotFound]; n != 1 {
		t.Errorf("%d polls of unknown spaces counted, want 1", n)
	}
}

func TestAnUnchangedStateIsNotSentAgain(t *testing.T) {
	ts := newTestServer(t, nil)
	sp := ts.create("Now", nil)
	w := ts.do(call{method: "GET", path: "/spaces/" + sp.ID + "/state"})
	var got stateOf
	ts.decode(w, http.StatusOK, &got)
	if got.State != amphi.StateLive {
		t.Errorf("state %+v", got)
	}
	etag := w.Header().Get("Etag")
	if r := ts.do(call{method: "GET", path: "/spaces/" + sp.ID + "/state", ifNoneMatch: etag}); etag == "" || r.Code != http.StatusNotModified {
		t.Errorf("a poll with the ETag %q answered %d", etag, r.Code)
	}
}

func TestLookupsOfMadeUpSpacesAreLimited(t *testing.T) {
	ts := newTestServer(t, func(c *Config) {
		c.LookupLimit = DefaultLookupLimit()
		c.LookupLimit.SourceBurst, c.LookupLimit.SourceRate = 2, 0.001
	})
	var codes []int
	for i := range 3 {
		codes = append(codes, ts.do(call{method: "GET", path: fmt.Sprint("/spaces/madeup", i, "/state")}).Code)
	}
	if codes[0] != 404 || codes[1] != 404 || codes[2] != 429 {
		t.Errorf("polls answered %v, want 404 404 429", codes)
	}
}

func TestJoiningASpaceNotOnAir(t *testing.T) {
	ts := newTestServer(t, nil)
	sp, ended := ts.scheduled(), ts.scheduled()
	if _, err := ts.EndSpace(t.Context(), ended.ID); err != nil {
		t.Fatal(err)
	}
	join := func(id, listener string) *JoinResponse {
		body := ""
		if listener != "" {
			body = `{"listener":"` + listener + `"}`
		}
		var resp JoinResponse
		ts.decode(ts.do(call{method: "POST", path: "/spaces/" + id + "/join", ctype: "application/json", body: body}), http.StatusOK, &resp)
		return &resp
	}
	first := join(sp.ID, "")
	second := join(sp.ID, "")
	ts.advance(2 * time.Second)
	again := join(sp.ID, first.Listener)
	for _, tc := range []struct {
		name     string
		got      *JoinResponse
		position int
	}{
		{"the first", first, 1},
		{"the second", second, 2},
		{"the first, polling", again, 1},
	} {
		if tc.got.Status != amphi.JoinWaiting || tc.got.Position != tc.position || tc.got.Ticket != "" || tc.got.PollAfter == 0 {
			t.Errorf("%s: %+v, want waiting at %d", tc.name, tc.got, tc.position)
		}
	}
	if again.Listener != first.Listener {
		t.Error("polling changed the listener id")
	}
	for _, tc := range []struct {
		name, path string
		status     int
		code       string
	}{
		{"join an ended space", "/spaces/" + ended.ID + "/join", 410, "gone"},
		{"join an unknown space", "/spaces/nosuchspace/join", 404, "not_found"},
		{"listen to an ended space", "/spaces/" + ended.ID + "/listen", 410, "gone"},
		{"listen to a scheduled space", "/spaces/" + sp.ID + "/listen", 503, "full"},
		{"stream a scheduled space without a ticket", "/spaces/" + sp.ID + "/live.opus", 401, "unauthorized"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			method := "POST"
			if !strings.HasSuffix(tc.path, "/join") {
				method = "GET"
			}
			w := ts.do(call{method: method, path: tc.path})
			if w.Code != tc.status || errorCode(w) != tc.code {
				t.Errorf("answered %d %q, want %d %q: %s", w.Code, errorCode(w), tc.status, tc.code, w.Body)
			}
		})
	}
	// The plain player refused above holds a place in line until it
	// would have stopped polling, as any waiter who leaves does.
	if st := ts.GateStats(); st.WaitingForStart != 3 || st.Waiting != 0 {
		t.Errorf("%d waiting for the start and %d for a place, want 3 and 0", st.WaitingForStart, st.Waiting)
	}
}

func TestJoiningASpaceOnAirHereAdmits(t *testing.T) {
	ts := newTestServer(t, nil)
	sp := ts.create("Now", nil)
	var resp JoinResponse
	ts.decode(ts.do(call{method: "POST", path: "/spaces/" + sp.ID + "/join"}), http.StatusOK, &resp)
	if resp.Status != amphi.JoinAdmitted || resp.Ticket == "" || !strings.Contains(resp.ListenURL, "/spaces/"+sp.ID+"/live.opus?ticket=") {
		t.Errorf("joined: %+v", resp)
	}
}
