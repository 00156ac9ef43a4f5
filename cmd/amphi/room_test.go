package main

import (
	"bufio"
	"context"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/amphi-audio/amphi/internal/client"
	"github.com/amphi-audio/amphi/internal/gate"
)

// The room: who may do what, requests to speak, reactions, the polled
// state, the stage's event stream, moderation and recording on and off,
// each against a real server.

const hostPassword = "a long host password"

// inviteHost has the signed-in admin invite a host, who accepts and signs in.
func inviteHost(t *testing.T, base string, admin session, email string) session {
	t.Helper()
	resp, body := call(t, "POST", base+"/auth/invites", map[string]string{"role": "host"}, admin.headers(true))
	if resp.StatusCode != http.StatusCreated {
		t.Fatalf("invite: %d %v", resp.StatusCode, body)
	}
	link := body["url"].(string)
	secret := strings.TrimPrefix(link, "/setup#invite=")
	resp, body = call(t, "POST", base+"/auth/accept", map[string]string{"invite": secret, "email": email, "password": hostPassword}, nil)
	if resp.StatusCode != http.StatusCreated {
		t.Fatalf("accept: %d %v", resp.StatusCode, body)
	}
	return signIn(t, base, email, hostPassword)
}

func bearerHdr(tok string) map[string]string {
	return map[string]string{"Authorization": "Bearer " + tok}
}

// createAs creates a space as the signed-in host; at nil makes it live.
func createAs(t *testing.T, base string, s session, title string, at *time.Time) (id, hostToken string) {
	t.Helper()
	req := map[string]any{"title": title, "description": "About " + title}
	if at != nil {
		req["scheduled_at"] = at.UTC().Format(time.RFC3339)
	}
	resp, body := call(t, "POST", base+"/spaces", req, s.headers(true))
	if resp.StatusCode != http.StatusCreated {
		t.Fatalf("create: %d %v", resp.StatusCode, body)
	}
	return body["id"].(string), body["host_token"].(string)
}

func askToSpeak(t *testing.T, base, id, name string) (rid, secret string) {
	t.Helper()
	resp, body := call(t, "POST", base+"/spaces/"+id+"/requests", map[string]string{"name": name}, nil)
	if resp.StatusCode != http.StatusCreated {
		t.Fatalf("request to speak: %d %v", resp.StatusCode, body)
	}
	return body["id"].(string), body["secret"].(string)
}

// TestEveryHostActionRefusesEveryoneElse is the authorization table: each
// host action, tried with each kind of credentials, gets the status that
// kind deserves, and the allowed ones really do the action.
func TestEveryHostActionRefusesEveryoneElse(t *testing.T) {
	t.Parallel()
	m, _ := startWithAdmin(t, func(m *Main) { m.Config.API.RequestLimit = gate.LimiterConfig{} })
	base := m.URL()
	admin := signIn(t, base, "admin@example.org", adminPassword)
	owner := inviteHost(t, base, admin, "owner@example.org")
	stranger := inviteHost(t, base, admin, "stranger@example.org")
	_, otherHost := createAs(t, base, stranger, "Elsewhere", nil)

	type fixture struct{ id, host, speaker, speakerID, rid string }
	newSpace := func(t *testing.T, live bool) fixture {
		var at *time.Time
		if !live {
			in := time.Now().Add(time.Hour)
			at = &in
		}
		id, host := createAs(t, base, owner, "Panel", at)
		resp, body := call(t, "POST", base+"/spaces/"+id+"/tokens", map[string]string{"role": "speaker", "name": "Bo"}, bearerHdr(host))
		if resp.StatusCode != http.StatusCreated {
			t.Fatalf("mint: %d %v", resp.StatusCode, body)
		}
		f := fixture{id: id, host: host, speaker: body["token"].(string), speakerID: body["speaker_id"].(string)}
		if live {
			f.rid, _ = askToSpeak(t, base, id, "Cy")
		}
		t.Cleanup(func() { // t's context is done by now
			req, _ := http.NewRequest("POST", base+"/spaces/"+id+"/end", nil)
			req.Header.Set("Authorization", "Bearer "+host)
			if resp, err := http.DefaultClient.Do(req); err == nil {
				resp.Body.Close()
			}
		})
		return f
	}
	actions := []struct {
		name, method string
		path         func(f fixture) string
		body         any
		live         bool
		ok           int // what an allowed caller gets
		speakerOK    bool
	}{
		{"start", "POST", func(fixture) string { return "/start" }, nil, false, http.StatusOK, false},
		{"end", "POST", func(fixture) string { return "/end" }, nil, true, http.StatusOK, false},
		{"mint a speaker token", "POST", func(fixture) string { return "/tokens" }, map[string]string{"role": "speaker"}, true, http.StatusCreated, false},
		{"list requests", "GET", func(fixture) string { return "/requests" }, nil, true, http.StatusOK, false},
		{"approve", "POST", func(f fixture) string { return "/requests/" + f.rid + "/approve" }, nil, true, http.StatusOK, false},
		{"decline", "POST", func(f fixture) string { return "/requests/" + f.rid + "/decline" }, nil, true, http.StatusOK, false},
		// Nobody is on stage: an allowed caller reaches the stage and
		// hears that the speaker is not there.
		{"mute", "POST", func(f fixture) string { return "/speakers/" + f.speakerID + "/mute" }, map[string]bool{"muted": true}, true, http.StatusNotFound, false},
		{"remove", "DELETE", func(f fixture) string { return "/speakers/" + f.speakerID }, nil, true, http.StatusNoContent, false},
		{"recording off", "POST", func(fixture) string { return "/recording" }, map[string]bool{"on": false}, true, http.StatusOK, false},
		// A garbage offer: allowed callers get as far as parsing it.
		{"join the stage", "POST", func(fixture) string { return "/whip" }, nil, true, http.StatusUnsupportedMediaType, true},
		{"follow the stage's events", "GET", func(fixture) string { return "/events" }, nil, true, http.StatusOK, true},
	}
	roles := []struct {
		name string
		hdr  func(f fixture, write bool) map[string]string
		want int // 0: the action's own status
	}{
		{"listener", func(fixture, bool) map[string]string { return nil }, http.StatusUnauthorized},
		{"speaker token", func(f fixture, _ bool) map[string]string { return bearerHdr(f.speaker) }, http.StatusForbidden},
		{"other space's host token", func(fixture, bool) map[string]string { return bearerHdr(otherHost) }, http.StatusUnauthorized},
		{"another host's account", func(_ fixture, w bool) map[string]string { return stranger.headers(w) }, http.StatusForbidden},
		{"owner's account without CSRF", func(fixture, bool) map[string]string { return owner.headers(false) }, http.StatusForbidden},
		{"owner's account", func(_ fixture, w bool) map[string]string { return owner.headers(w) }, 0},
		{"admin's account", func(_ fixture, w bool) map[string]string { return admin.headers(w) }, 0},
		{"host token", func(f fixture, _ bool) map[string]string { return bearerHdr(f.host) }, 0},
	}
	for _, a := range actions {
		for _, r := range roles {
			t.Run(a.name+"/"+r.name, func(t *testing.T) {
				f := newSpace(t, a.live)
				want := r.want
				switch {
				case want == 0 || (a.speakerOK && r.name == "speaker token"):
					want = a.ok
				case a.method == "GET" && r.name == "owner's account without CSRF":
					want = a.ok // reading needs no CSRF token
				}
				resp, body := call(t, a.method, base+"/spaces/"+f.id+a.path(f), a.body, r.hdr(f, a.method != "GET"))
				if resp.StatusCode != want {
					t.Fatalf("%d %v, want %d", resp.StatusCode, body, want)
				}
			})
		}
	}
}

func TestRequestToSpeakIsApprovedIntoAWorkingSpeakerToken(t *testing.T) {
	t.Parallel()
	// A burst big enough for the bad requests below, not for the flood.
	m := MustRunMainWith(t, t.TempDir(), func(m *Main) {
		m.Config.API.RequestLimit = gate.LimiterConfig{SourceRate: 1.0 / 20, SourceBurst: 10}
	})
	t.Cleanup(func() { m.Close() })
	base, ctx := m.URL(), t.Context()
	c := client.New(base)
	sp, err := c.Create(ctx, "Open mic", nil)
	if err != nil {
		t.Fatal(err)
	}
	host := bearerHdr(sp.HostToken)
	reqURL := base + "/spaces/" + sp.ID + "/requests"

	for _, tc := range []struct {
		body any
		want int
		msg  string
	}{
		{map[string]string{"name": ""}, 400, "name is required"},
		{map[string]string{"name": strings.Repeat("x", 61)}, 400, "longer than 60"},
		{map[string]string{"name": "a\u0007b"}, 400, "control characters"},
		{map[string]string{"nom": "Ada"}, 400, "unknown field"},
	} {
		resp, body := call(t, "POST", reqURL, tc.body, nil)
		if resp.StatusCode != tc.want || !strings.Contains(errMessage(body), tc.msg) {
			t.Errorf("%v: %d %v, want %d %q", tc.body, resp.StatusCode, body, tc.want, tc.msg)
		}
	}

	rid, secret := askToSpeak(t, base, sp.ID, "Ada")
	if resp, body := call(t, "GET", reqURL+"/"+rid, nil, bearerHdr("not the secret")); resp.StatusCode != 401 {
		t.Errorf("wrong secret: %d %v", resp.StatusCode, body)
	}
	if resp, body := call(t, "GET", reqURL+"/nosuch", nil, bearerHdr(secret)); resp.StatusCode != 404 {
		t.Errorf("unknown request: %d %v", resp.StatusCode, body)
	}
	resp, body := call(t, "GET", reqURL, nil, host)
	list, _ := body["requests"].([]any)
	if resp.StatusCode != 200 || len(list) != 1 || list[0].(map[string]any)["name"] != "Ada" {
		t.Fatalf("host's list: %d %v", resp.StatusCode, body)
	}
	if _, st := call(t, "GET", base+"/spaces/"+sp.ID+"/state", nil, nil); st["requests"] != 1.0 {
		t.Errorf("state counts %v requests, want 1", st["requests"])
	}
	if resp, body := call(t, "POST", reqURL+"/"+rid+"/approve", nil, host); resp.StatusCode != 200 || body["status"] != "approved" {
		t.Fatalf("approve: %d %v", resp.StatusCode, body)
	}
	if resp, body := call(t, "POST", reqURL+"/"+rid+"/decline", nil, host); resp.StatusCode != 409 {
		t.Errorf("answering twice: %d %v", resp.StatusCode, body)
	}
	resp, body = call(t, "GET", reqURL+"/"+rid, nil, bearerHdr(secret))
	token, _ := body["token"].(string)
	if resp.StatusCode != 200 || body["status"] != "approved" || token == "" || body["speak_url"] != "/s/"+sp.ID+"/speak#token="+token {
		t.Fatalf("requester's answer: %d %v", resp.StatusCode, body)
	}

	// The approved listener goes on stage under their name.
	dialSpeaker(t, ctx, c, sp.ID, token)
	var onStage []any
	deadline := time.Now().Add(5 * time.Second)
	for len(onStage) == 0 && time.Now().Before(deadline) {
		time.Sleep(200 * time.Millisecond)
		_, st := call(t, "GET", base+"/spaces/"+sp.ID+"/state", nil, nil)
		onStage, _ = st["speakers"].([]any)
	}
	if len(onStage) != 1 || onStage[0].(map[string]any)["name"] != "Ada" || onStage[0].(map[string]any)["host"] != false {
		t.Fatalf("stage %v, want Ada", onStage)
	}

	// A declined request says so; a withdrawn one is gone.
	rid2, secret2 := askToSpeak(t, base, sp.ID, "Bo")
	call(t, "POST", reqURL+"/"+rid2+"/decline", nil, host)
	if _, body := call(t, "GET", reqURL+"/"+rid2, nil, bearerHdr(secret2)); body["status"] != "declined" || body["token"] != nil {
		t.Errorf("declined request: %v", body)
	}
	rid3, secret3 := askToSpeak(t, base, sp.ID, "Cy")
	if resp, _ := call(t, "DELETE", reqURL+"/"+rid3, nil, bearerHdr(secret3)); resp.StatusCode != 204 {
		t.Errorf("withdraw: %d", resp.StatusCode)
	}
	if resp, _ := call(t, "POST", reqURL+"/"+rid3+"/approve", nil, host); resp.StatusCode != 404 {
		t.Errorf("approving a withdrawn request: %d", resp.StatusCode)
	}

	// Asking again and again from one address is limited.
	var limited bool
	for range 10 {
		if resp, _ := call(t, "POST", reqURL, map[string]string{"name": "Spam"}, nil); resp.StatusCode == http.StatusTooManyRequests {
			limited = true
			break
		}
	}
	if !limited {
		t.Error("ten more requests from one address were all accepted")
	}
	if _, err := c.End(ctx, sp.ID, sp.HostToken); err != nil {
		t.Fatal(err)
	}
	if resp, body := call(t, "POST", reqURL, map[string]string{"name": "Late"}, nil); resp.StatusCode != http.StatusGone && resp.StatusCode != http.StatusTooManyRequests {
		t.Errorf("asking to speak in an ended space: %d %v", resp.StatusCode, body)
	}
}

func TestPendingRequestsAreCapped(t *testing.T) {
	t.Parallel()
	m := MustRunMainWith(t, t.TempDir(), func(m *Main) { m.Config.API.RequestLimit = gate.LimiterConfig{} })
	t.Cleanup(func() { m.Close() })
	sp, err := client.New(m.URL()).Create(t.Context(), "Popular", nil)
	if err != nil {
		t.Fatal(err)
	}
	for i := range 100 {
		askToSpeak(t, m.URL(), sp.ID, fmt.Sprint("listener ", i))
	}
	resp, body := call(t, "POST", m.URL()+"/spaces/"+sp.ID+"/requests", map[string]string{"name": "one too many"}, nil)
	if resp.StatusCode != http.StatusServiceUnavailable || !strings.Contains(errMessage(body), "already waiting") {
		t.Fatalf("101st request: %d %v", resp.StatusCode, body)
	}
}

func TestReactionsAreAggregatedAndBadOnesRefused(t *testing.T) {
	t.Parallel()
	m := MustRunMain(t, t.TempDir())
	t.Cleanup(func() { m.Close() })
	base := m.URL()
	c := client.New(base)
	sp, err := c.Create(t.Context(), "Cheers", nil)
	if err != nil {
		t.Fatal(err)
	}
	url := base + "/spaces/" + sp.ID + "/reactions"
	for _, tc := range []struct {
		body any
		want int
	}{
		{map[string]any{"kind": "clap", "count": 3}, 204},
		{map[string]any{"kind": "heart", "count": 1}, 204},
		{map[string]any{"kind": "boo", "count": 1}, 400},
		{map[string]any{"kind": "clap", "count": 0}, 400},
		{map[string]any{"kind": "clap", "count": 21}, 400},
	} {
		if resp, body := call(t, "POST", url, tc.body, nil); resp.StatusCode != tc.want {
			t.Errorf("%v: %d %v, want %d", tc.body, resp.StatusCode, body, tc.want)
		}
	}
	// The burst of 5 is spent: the next is limited.
	if resp, _ := call(t, "POST", url, map[string]any{"kind": "clap", "count": 1}, nil); resp.StatusCode != http.StatusTooManyRequests {
		t.Errorf("sixth reaction in a second: %d, want 429", resp.StatusCode)
	}
	time.Sleep(stateAge)
	resp, st := call(t, "GET", base+"/spaces/"+sp.ID+"/state", nil, nil)
	r, _ := st["reactions"].(map[string]any)
	if resp.StatusCode != 200 || r["clap"] != 3.0 || r["heart"] != 1.0 {
		t.Fatalf("state reactions %v (%d)", st, resp.StatusCode)
	}
	if resp, _ := call(t, "POST", base+"/spaces/nosuch/reactions", map[string]any{"kind": "clap", "count": 1}, nil); resp.StatusCode != 404 && resp.StatusCode != 429 {
		t.Errorf("reaction to no space: %d", resp.StatusCode)
	}
}

// stateAge outlasts the state's one-second cache.
const stateAge = 1100 * time.Millisecond

func TestStateIsCacheableAndShowsTheRoom(t *testing.T) {
	t.Parallel()
	m := MustRunMain(t, t.TempDir())
	t.Cleanup(func() { m.Close() })
	base, ctx := m.URL(), t.Context()
	c := client.New(base)
	sp, err := c.Create(ctx, "Busy", nil)
	if err != nil {
		t.Fatal(err)
	}
	spk := dialSpeaker(t, ctx, c, sp.ID, sp.HostToken)
	go spk.play(ctx, 440, 0, 10*time.Second, 10*time.Second)
	lctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go c.Listen(lctx, sp.ID, client.ListenOptions{})

	stateURL := base + "/spaces/" + sp.ID + "/state"
	var st map[string]any
	var resp *http.Response
	deadline := time.Now().Add(8 * time.Second)
	for time.Now().Before(deadline) {
		resp, st = call(t, "GET", stateURL, nil, nil)
		spk, _ := st["speakers"].([]any)
		if st["listeners"] == 1.0 && len(spk) == 1 && spk[0].(map[string]any)["speaking"] == true {
			break
		}
		time.Sleep(300 * time.Millisecond)
	}
	speakers, _ := st["speakers"].([]any)
	if st["listeners"] != 1.0 || len(speakers) != 1 || st["recording"] != true || st["state"] != "live" || st["poll_after_ms"] != 2000.0 {
		t.Fatalf("state %v", st)
	}
	if s := speakers[0].(map[string]any); s["speaking"] != true || s["host"] != true || s["name"] != "Host" {
		t.Fatalf("host on stage: %v", s)
	}
	if _, got := call(t, "GET", base+"/spaces/"+sp.ID, nil, nil); got["listeners"] != 1.0 || got["speakers"] != 1.0 {
		t.Errorf("the space counts %v listeners and %v speakers, want 1 and 1", got["listeners"], got["speakers"])
	}
	if cc := resp.Header.Get("Cache-Control"); cc != "public, max-age=1" || resp.Header.Get("ETag") == "" {
		t.Fatalf("Cache-Control %q, ETag %q", cc, resp.Header.Get("ETag"))
	}
	// A poll inside the second gets the same body: one encoding serves all.
	req, _ := http.NewRequestWithContext(ctx, "GET", stateURL, nil)
	req.Header.Set("If-None-Match", resp.Header.Get("ETag"))
	r2, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	r2.Body.Close()
	if r2.StatusCode != http.StatusNotModified && r2.Header.Get("ETag") == resp.Header.Get("ETag") {
		t.Errorf("same ETag answered %d, want 304", r2.StatusCode)
	}

	// Recording off, then on: the state says so at once.
	for _, on := range []bool{false, true} {
		resp, body := call(t, "POST", base+"/spaces/"+sp.ID+"/recording", map[string]bool{"on": on}, bearerHdr(sp.HostToken))
		if resp.StatusCode != 200 || body["recording"] != on {
			t.Fatalf("recording %v: %d %v", on, resp.StatusCode, body)
		}
		if _, st := call(t, "GET", stateURL, nil, nil); st["recording"] != on {
			t.Errorf("state recording %v, want %v", st["recording"], on)
		}
	}
	// Polls of made-up spaces are refused and counted for the ops verdict.
	for range 5 {
		if resp, body := call(t, "GET", base+"/spaces/nosuch/state", nil, nil); resp.StatusCode != 404 {
			t.Fatalf("state of no space: %d %v", resp.StatusCode, body)
		}
	}
	if metrics := string(fetch(t, ctx, m.OpsURL()+"/metrics")); !strings.Contains(metrics, `amphi_refusals_total{reason="not_found"} 5`) {
		t.Errorf("metrics do not count 5 not_found refusals:\n%s", grepLines(metrics, "amphi_refusals_total"))
	}
	// Scanning made-up ids is limited: they cost database reads. The live
	// space's state, served from memory, is not.
	var limited int
	for i := range 40 {
		if resp, _ := call(t, "GET", fmt.Sprintf("%s/spaces/made-up-%d/state", base, i), nil, nil); resp.StatusCode == http.StatusTooManyRequests {
			limited++
		}
	}
	if limited == 0 {
		t.Error("40 polls of made-up spaces from one address were never limited")
	}
	if resp, _ := call(t, "GET", stateURL, nil, nil); resp.StatusCode != http.StatusOK {
		t.Errorf("the live space's state after the scan: %d", resp.StatusCode)
	}
}

// grepLines keeps the lines of s that contain sub.
func grepLines(s, sub string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, sub) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

func TestHostMutesAndRemovesASpeaker(t *testing.T) {
	t.Parallel()
	m := MustRunMain(t, t.TempDir())
	t.Cleanup(func() { m.Close() })
	base, ctx := m.URL(), t.Context()
	c := client.New(base)
	sp, err := c.Create(ctx, "Moderated", nil)
	if err != nil {
		t.Fatal(err)
	}
	host := bearerHdr(sp.HostToken)
	resp, body := call(t, "POST", base+"/spaces/"+sp.ID+"/tokens", map[string]string{"role": "speaker", "name": "Eve"}, host)
	if resp.StatusCode != 201 {
		t.Fatalf("mint: %d %v", resp.StatusCode, body)
	}
	token, sid := body["token"].(string), body["speaker_id"].(string)
	dialSpeaker(t, ctx, c, sp.ID, token)

	speakerURL := base + "/spaces/" + sp.ID + "/speakers/" + sid
	if resp, body := call(t, "POST", speakerURL+"/mute", map[string]bool{"muted": true}, host); resp.StatusCode != 200 || body["muted"] != true || body["name"] != "Eve" {
		t.Fatalf("mute: %d %v", resp.StatusCode, body)
	}
	if _, st := call(t, "GET", base+"/spaces/"+sp.ID+"/state", nil, nil); !strings.Contains(fmt.Sprint(st["speakers"]), "muted:true") {
		t.Errorf("state after mute: %v", st["speakers"])
	}
	if resp, body := call(t, "POST", speakerURL+"/mute", map[string]string{}, host); resp.StatusCode != 400 {
		t.Errorf("mute without muted: %d %v", resp.StatusCode, body)
	}
	if resp, body := call(t, "DELETE", speakerURL, nil, host); resp.StatusCode != 204 {
		t.Fatalf("remove: %d %v", resp.StatusCode, body)
	}
	// The removed speaker's link no longer works, and says why.
	resp, body = call(t, "POST", base+"/spaces/"+sp.ID+"/whip", nil, bearerHdr(token))
	if resp.StatusCode != 401 || !strings.Contains(errMessage(body), "removed you from the stage") {
		t.Fatalf("rejoin after removal: %d %v", resp.StatusCode, body)
	}
	if resp, _ := call(t, "DELETE", base+"/spaces/"+sp.ID+"/speakers/0000000000000000", nil, host); resp.StatusCode != 404 {
		t.Errorf("removing nobody: %d", resp.StatusCode)
	}
}

func TestExpiredSpeakerLinkSaysSo(t *testing.T) {
	t.Parallel()
	clk := &clock{}
	m := MustRunMainWith(t, t.TempDir(), func(m *Main) { m.Config.API.Now = clk.Now })
	t.Cleanup(func() { m.Close() })
	sp, err := client.New(m.URL()).Create(t.Context(), "Short", nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		ttl  int
		want int
	}{{-1, 400}, {31 * 86400, 400}, {60, 201}} {
		resp, body := call(t, "POST", m.URL()+"/spaces/"+sp.ID+"/tokens", map[string]any{"role": "speaker", "ttl_seconds": tc.ttl}, bearerHdr(sp.HostToken))
		if resp.StatusCode != tc.want {
			t.Fatalf("ttl %d: %d %v", tc.ttl, resp.StatusCode, body)
		}
		if tc.want == 201 {
			clk.Advance(61 * time.Second)
			resp, body = call(t, "POST", m.URL()+"/spaces/"+sp.ID+"/whip", nil, bearerHdr(body["token"].(string)))
			if resp.StatusCode != 401 || !strings.Contains(errMessage(body), "speaker link expired") {
				t.Fatalf("expired link: %d %v", resp.StatusCode, body)
			}
		}
	}
}

func TestHostInvitesAreSingleUseAndExpire(t *testing.T) {
	t.Parallel()
	m, clk := startWithAdmin(t, nil)
	base := m.URL()
	admin := signIn(t, base, "admin@example.org", adminPassword)
	host := inviteHost(t, base, admin, "host@example.org")

	// Only admins invite, with the CSRF header.
	if resp, body := call(t, "POST", base+"/auth/invites", map[string]string{"role": "host"}, host.headers(true)); resp.StatusCode != 403 {
		t.Errorf("host inviting: %d %v", resp.StatusCode, body)
	}
	if resp, body := call(t, "POST", base+"/auth/invites", map[string]string{"role": "host"}, admin.headers(false)); resp.StatusCode != 403 {
		t.Errorf("invite without CSRF: %d %v", resp.StatusCode, body)
	}
	if resp, body := call(t, "POST", base+"/auth/invites", map[string]string{"role": "root"}, admin.headers(true)); resp.StatusCode != 400 {
		t.Errorf("invite as root: %d %v", resp.StatusCode, body)
	}
	invite := func() string {
		resp, body := call(t, "POST", base+"/auth/invites", map[string]any{"role": "host", "ttl_seconds": 3600}, admin.headers(true))
		if resp.StatusCode != 201 {
			t.Fatalf("invite: %d %v", resp.StatusCode, body)
		}
		return strings.TrimPrefix(body["url"].(string), "/setup#invite=")
	}
	accept := func(inv, email, password string) (int, string) {
		resp, body := call(t, "POST", base+"/auth/accept", map[string]string{"invite": inv, "email": email, "password": password}, nil)
		return resp.StatusCode, errMessage(body)
	}
	inv := invite()
	if code, msg := accept(inv, "new@example.org", "short"); code != 400 {
		t.Errorf("weak password: %d %q", code, msg)
	}
	if code, msg := accept(inv, "new@example.org", hostPassword); code != 201 {
		t.Fatalf("accept after a mistyped password: %d %q", code, msg)
	}
	if code, msg := accept(inv, "again@example.org", hostPassword); code != 410 || !strings.Contains(msg, "already used") {
		t.Errorf("second use: %d %q", code, msg)
	}
	if code, msg := accept("forged", "x@example.org", hostPassword); code != 401 {
		t.Errorf("forged invite: %d %q", code, msg)
	}
	// The new host's spaces are theirs.
	id, _ := createAs(t, base, signIn(t, base, "new@example.org", hostPassword), "Mine", nil)
	resp, body := call(t, "GET", base+"/spaces?mine=true", nil, host.headers(false))
	if resp.StatusCode != 200 || strings.Contains(fmt.Sprint(body), id) {
		t.Errorf("another host's list shows the space: %v", body)
	}
	if resp, _ := call(t, "GET", base+"/spaces?mine=true", nil, nil); resp.StatusCode != 401 {
		t.Errorf("mine without signing in: %d", resp.StatusCode)
	}
	old := invite()
	clk.Advance(2 * time.Hour)
	if code, msg := accept(old, "late@example.org", hostPassword); code != 410 || !strings.Contains(msg, "expired") {
		t.Errorf("expired invite: %d %q", code, msg)
	}
}

func TestEventStreamFollowsTheStage(t *testing.T) {
	t.Parallel()
	m := MustRunMain(t, t.TempDir())
	t.Cleanup(func() { m.Close() })
	base, ctx := m.URL(), t.Context()
	c := client.New(base)
	sp, err := c.Create(ctx, "Streamed", nil)
	if err != nil {
		t.Fatal(err)
	}
	req, _ := http.NewRequestWithContext(ctx, "GET", base+"/spaces/"+sp.ID+"/events", nil)
	req.Header.Set("Authorization", "Bearer "+sp.HostToken)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "text/event-stream" {
		t.Fatalf("events: %d %s", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	events := make(chan string, 64)
	go func() {
		defer close(events)
		sc := bufio.NewScanner(resp.Body)
		var ev string
		for sc.Scan() {
			line := sc.Text()
			switch {
			case strings.HasPrefix(line, "event: "):
				ev = strings.TrimPrefix(line, "event: ")
			case strings.HasPrefix(line, "data: "):
				events <- ev + " " + strings.TrimPrefix(line, "data: ")
			}
		}
	}()
	// expect waits for events matching each of want, in any order.
	expect := func(want ...string) {
		t.Helper()
		timeout := time.After(10 * time.Second)
		for len(want) > 0 {
			select {
			case e, ok := <-events:
				if !ok {
					t.Fatalf("stream ended waiting for %q", want)
				}
				want = slices.DeleteFunc(want, func(w string) bool {
					kind, contains, _ := strings.Cut(w, " ")
					return strings.HasPrefix(e, kind+" ") && strings.Contains(e, contains)
				})
			case <-timeout:
				t.Fatalf("no events matching %q", want)
			}
		}
	}
	expect(`state "state":"live"`, `requests "requests":[]`)

	// A space holds 32 streams, two per token; the 33rd is refused.
	var tok string
	for i := range 32 {
		if i%2 == 0 {
			tok = freshSpeaker(t, c, sp)
		}
		req, _ := http.NewRequestWithContext(ctx, "GET", base+"/spaces/"+sp.ID+"/events", nil)
		req.Header.Set("Authorization", "Bearer "+tok)
		r, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer r.Body.Close()
		if want := map[bool]int{true: 503, false: 200}[i == 31]; r.StatusCode != want {
			t.Fatalf("stream %d: %d, want %d", i+2, r.StatusCode, want)
		}
	}
	askToSpeak(t, base, sp.ID, "Dee")
	expect(`requests "name":"Dee"`, `state "requests":1`)
	if _, err := c.End(ctx, sp.ID, sp.HostToken); err != nil {
		t.Fatal(err)
	}
	expect(`end ended`)

	// A listener may not open the stream.
	if resp, _ := call(t, "GET", base+"/spaces/"+sp.ID+"/events", nil, nil); resp.StatusCode != 401 {
		t.Errorf("listener's events: %d", resp.StatusCode)
	}
}

func TestCalendarEventForAScheduledSpace(t *testing.T) {
	t.Parallel()
	m := MustRunMain(t, t.TempDir())
	t.Cleanup(func() { m.Close() })
	at := time.Date(2031, 5, 6, 17, 30, 0, 0, time.UTC)
	resp, body := call(t, "POST", m.URL()+"/spaces", map[string]any{"title": "Launch; party, with a very long title that must be folded because it is longer than seventy-five octets", "description": "Line one\nline two", "scheduled_at": at}, nil)
	if resp.StatusCode != 201 {
		t.Fatalf("create: %d %v", resp.StatusCode, body)
	}
	id := body["id"].(string)
	got := fetch(t, t.Context(), m.URL()+"/spaces/"+id+"/calendar.ics")
	ics := string(got)
	for _, want := range []string{"BEGIN:VCALENDAR\r\n", "DTSTART:20310506T173000Z\r\n", "DTEND:20310506T183000Z\r\n", `SUMMARY:Launch\; party\, with`, `Line one\nline two`, "URL:" + m.URL() + "/s/" + id, "END:VCALENDAR\r\n"} {
		if !strings.Contains(ics, want) {
			t.Errorf("calendar lacks %q:\n%s", want, ics)
		}
	}
	for _, line := range strings.Split(ics, "\r\n") {
		if len(line) > 75 {
			t.Errorf("line of %d octets: %q", len(line), line)
		}
	}
	live, err := client.New(m.URL()).Create(t.Context(), "Now", nil)
	if err != nil {
		t.Fatal(err)
	}
	if resp, _ := call(t, "GET", m.URL()+"/spaces/"+live.ID+"/calendar.ics", nil, nil); resp.StatusCode != 404 {
		t.Errorf("calendar of a space with no start time: %d", resp.StatusCode)
	}
	if resp, body := call(t, "POST", m.URL()+"/spaces", map[string]any{"title": "Past", "scheduled_at": time.Now().Add(-time.Hour)}, nil); resp.StatusCode != 400 || !strings.Contains(errMessage(body), "in the past") {
		t.Errorf("scheduling in the past: %d %v", resp.StatusCode, body)
	}
	if resp, body := call(t, "POST", m.URL()+"/spaces", map[string]any{"title": "Long", "description": strings.Repeat("d", 2001)}, nil); resp.StatusCode != 400 {
		t.Errorf("long description: %d %v", resp.StatusCode, body)
	}
}
