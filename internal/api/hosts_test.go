package api

import (
	"context"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/amphi-audio/amphi"
	"github.com/amphi-audio/amphi/internal/account"
	"github.com/amphi-audio/amphi/internal/store"
)

// signIn makes an account of the role and returns its session token.
func (ts *testServer) signIn(email string, role store.UserRole) string {
	ts.t.Helper()
	ctx := context.Background()
	const password = "correct horse battery staple"
	if _, err := ts.accounts.CreateUser(ctx, email, password, role); err != nil {
		ts.t.Fatal(err)
	}
	_, token, _, err := ts.accounts.SignIn(ctx, email, password)
	if err != nil {
		ts.t.Fatal(err)
	}
	return token
}

func TestOnlyTheHostMayStartEndAndMintTokens(t *testing.T) {
	ts := newTestServer(t, nil)
	sp, other := ts.scheduled(), ts.scheduled()
	speaker := ts.speaker(sp.ID, time.Hour)
	expired := ts.speaker(sp.ID, -time.Minute)
	removed := ts.speaker(sp.ID, time.Hour)
	if err := ts.db.RevokeToken(context.Background(), sp.ID, (&store.Token{Hash: store.HashToken(removed)}).SpeakerID(), ts.now()); err != nil {
		t.Fatal(err)
	}
	stranger := ts.signIn("stranger@example.org", store.UserHost)
	base := "/spaces/" + sp.ID
	const js = "application/json"
	for _, tc := range []struct {
		name string
		call
		status int
		code   string
		says   string // in the message
	}{
		{"start without a token", call{method: "POST", path: base + "/start"}, 401, "unauthorized", "Bearer"},
		{"start with a made-up token", call{method: "POST", path: base + "/start", token: "not-a-token"}, 401, "unauthorized", ""},
		{"start with another space's host token", call{method: "POST", path: base + "/start", token: other.HostToken}, 401, "unauthorized", ""},
		{"start with a speaker token", call{method: "POST", path: base + "/start", token: speaker}, 403, "forbidden", "speaker"},
		{"start with an expired speaker token", call{method: "POST", path: base + "/start", token: expired}, 401, "unauthorized", "expired"},
		{"start with a removed speaker's token", call{method: "POST", path: base + "/start", token: removed}, 401, "unauthorized", "removed you"},
		{"start an unknown space", call{method: "POST", path: "/spaces/nosuchspace/start", token: sp.HostToken}, 404, "not_found", ""},
		{"end with a speaker token", call{method: "POST", path: base + "/end", token: speaker}, 403, "forbidden", ""},
		{"end with another space's host token", call{method: "POST", path: base + "/end", token: other.HostToken}, 401, "unauthorized", ""},
		{"end as another host's account", call{method: "POST", path: base + "/end", cookie: stranger, csrf: account.CSRFToken(stranger)}, 403, "forbidden", "not the host"},
		{"end with a session but no CSRF header", call{method: "POST", path: base + "/end", cookie: stranger}, 403, "forbidden", "X-CSRF-Token"},
		{"end with a made-up session", call{method: "POST", path: base + "/end", cookie: "nope", csrf: "nope"}, 401, "unauthorized", ""},
		{"mint as a speaker", call{method: "POST", path: base + "/tokens", token: speaker, ctype: js, body: `{"role":"speaker"}`}, 403, "forbidden", ""},
		{"mint a host token", call{method: "POST", path: base + "/tokens", token: sp.HostToken, ctype: js, body: `{"role":"host"}`}, 400, "invalid", "role"},
		{"mint for longer than a month", call{method: "POST", path: base + "/tokens", token: sp.HostToken, ctype: js, body: `{"role":"speaker","ttl_seconds":99999999}`}, 400, "invalid", "ttl_seconds"},
		{"mint with a negative lifetime", call{method: "POST", path: base + "/tokens", token: sp.HostToken, ctype: js, body: `{"role":"speaker","ttl_seconds":-1}`}, 400, "invalid", "ttl_seconds"},
		{"mint with a control character in the name", call{method: "POST", path: base + "/tokens", token: sp.HostToken, ctype: js, body: `{"role":"speaker","name":"A\u0007"}`}, 400, "invalid", "control"},
		{"mint", call{method: "POST", path: base + "/tokens", token: sp.HostToken, ctype: js, body: `{"role":"speaker","name":"Bo"}`}, 201, "", ""},
		{"health without an ops verdict", call{method: "GET", path: base + "/health", token: sp.HostToken}, 404, "not_found", ""},
		{"requests of a space not started", call{method: "GET", path: base + "/requests", token: sp.HostToken}, 409, "conflict", "not started"},
		{"mute in a space not started", call{method: "POST", path: base + "/speakers/x/mute", token: sp.HostToken, ctype: js, body: `{"muted":true}`}, 409, "conflict", ""},
		{"events of a space not started", call{method: "GET", path: base + "/events", token: speaker}, 409, "conflict", ""},
		{"whip to a space not started", call{method: "POST", path: base + "/whip", token: speaker, ctype: "application/sdp", body: "v=0"}, 409, "conflict", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w := ts.do(tc.call)
			if w.Code != tc.status || errorCode(w) != tc.code {
				t.Fatalf("answered %d %q, want %d %q: %s", w.Code, errorCode(w), tc.status, tc.code, w.Body)
			}
			if !strings.Contains(w.Body.String(), tc.says) {
				t.Errorf("the message does not say %q: %s", tc.says, w.Body)
			}
		})
	}
	var now struct{ State amphi.State }
	ts.decode(ts.do(call{method: "GET", path: base}), http.StatusOK, &now)
	if now.State != amphi.StateScheduled {
		t.Errorf("the refused calls left the space %s", now.State)
	}
}

// view is what the tests read of a space's JSON.
type view struct {
	State     amphi.State     `json:"state"`
	EndReason amphi.EndReason `json:"end_reason"`
	Speakers  *int            `json:"speakers"`
	Listeners *int            `json:"listeners"`
}

func TestHostActionsFollowTheSpaceLifecycle(t *testing.T) {
	ts := newTestServer(t, nil)
	sp := ts.scheduled()
	host := func(action string) call {
		return call{method: "POST", path: "/spaces/" + sp.ID + "/" + action, token: sp.HostToken}
	}
	get := call{method: "GET", path: "/spaces/" + sp.ID}
	var v view
	ts.decode(ts.do(get), http.StatusOK, &v)
	if v.Speakers != nil || v.Listeners != nil {
		t.Errorf("a scheduled space counts speakers or listeners: %+v", v)
	}
	ts.decode(ts.do(host("start")), http.StatusOK, &v)
	if v.State != amphi.StateLive || v.Speakers == nil || *v.Speakers != 0 || v.Listeners == nil || *v.Listeners != 0 {
		t.Errorf("started: %+v", v)
	}
	if w := ts.do(host("start")); w.Code != http.StatusConflict {
		t.Errorf("a second start: %d %s", w.Code, w.Body)
	}
	v = view{}
	ts.decode(ts.do(host("end")), http.StatusOK, &v)
	if v.State != amphi.StateEnded || v.EndReason != amphi.EndHost || v.Speakers != nil {
		t.Errorf("ended: %+v", v)
	}
	for _, action := range []string{"start", "end"} {
		if w := ts.do(host(action)); w.Code != http.StatusConflict {
			t.Errorf("%s after the end: %d %s", action, w.Code, w.Body)
		}
	}
	if w := ts.do(call{method: "GET", path: "/spaces/" + sp.ID + "/recording.opus"}); w.Code != http.StatusOK || w.Header().Get("Content-Type") != "audio/ogg" {
		t.Errorf("the recording: %d %s", w.Code, w.Header())
	}
}

func TestASpaceWithoutAStartTimeIsOnAirAtOnce(t *testing.T) {
	ts := newTestServer(t, func(c *Config) { c.Verdict = func() string { return "healthy" } })
	sp := ts.create("Now", nil)
	if sp.State != amphi.StateLive {
		t.Fatalf("created %s", sp.State)
	}
	var health map[string]string
	ts.decode(ts.do(call{method: "GET", path: "/spaces/" + sp.ID + "/health", token: sp.HostToken}), http.StatusOK, &health)
	if health["verdict"] != "healthy" {
		t.Errorf("health %v", health)
	}
	if w := ts.do(call{method: "GET", path: "/spaces/" + sp.ID + "/recording.opus"}); w.Code != http.StatusConflict {
		t.Errorf("the recording while live: %d %s", w.Code, w.Body)
	}
}
