package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io/fs"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/amphi-audio/amphi/internal/account"
	"github.com/amphi-audio/amphi/internal/loopnet"
)

// The holes a security review found in accounts, the store and free text,
// each attacked against a real server.

// TestParallelWrongSignInsHashWithinTheBound sends 40 wrong sign-ins at
// once, each from its own /24 so the per-source limit lets them all
// through, at the real argon2id cost. Unbounded, they took a server from
// 103 MB to 878 MB of RSS; bounded, at most the limit hash at once and the
// rest wait their turn or get 503.
func TestParallelWrongSignInsHashWithinTheBound(t *testing.T) {
	t.Parallel()
	m, _ := startWithAdmin(t, func(m *Main) { m.Config.API.Accounts.Params = account.DefaultParams() })
	crowd := &http.Client{Transport: &http.Transport{DialContext: (&loopnet.Dialer{Sources: 40}).DialContext, DisableKeepAlives: true}}
	statuses := make(chan int, 40)
	var wg sync.WaitGroup
	for i := range 40 {
		email := "admin@example.org"
		if i%2 == 1 {
			email = "nobody@example.org"
		}
		wg.Go(func() {
			b, _ := json.Marshal(map[string]string{"email": email, "password": "a wrong guess, again"})
			resp, err := crowd.Post(m.URL()+"/auth/signin", "application/json", bytes.NewReader(b))
			if err != nil {
				t.Error(err)
				return
			}
			resp.Body.Close()
			if resp.StatusCode == http.StatusServiceUnavailable && resp.Header.Get("Retry-After") == "" {
				t.Error("503 without Retry-After")
			}
			statuses <- resp.StatusCode
		})
	}
	wg.Wait()
	close(statuses)
	count := map[int]int{}
	for st := range statuses {
		count[st]++
	}
	if count[http.StatusUnauthorized]+count[http.StatusServiceUnavailable] != 40 {
		t.Errorf("answers %v: want only 401 and 503", count)
	}
	st := m.api.Accounts().HashStats()
	perHash := int(account.DefaultParams().Memory) << 10
	if st.Peak > st.Limit || st.Limit*perHash > 256<<20 {
		t.Errorf("hash stats %+v: want at most %d (≤ 256 MiB at %d MiB each) at once", st, st.Limit, perHash>>20)
	}
	if st.Hashes+st.Refused != 40 || int(st.Refused) != count[http.StatusServiceUnavailable] {
		t.Errorf("hash stats %+v for answers %v: want a hash or a refusal per sign-in", st, count)
	}
	t.Logf("answers %v, hash stats %+v", count, st)
	signIn(t, m.URL(), "admin@example.org", adminPassword) // fine after
}

// TestSignInAndInvitesDoNotTellWhichAccountsExist: a wrong password and an
// unknown email are answered alike after the same work, and an invite
// cannot be used to test email after email.
func TestSignInAndInvitesDoNotTellWhichAccountsExist(t *testing.T) {
	t.Parallel()
	m, _ := startWithAdmin(t, nil)
	base := m.URL()
	answer := func(path string, body map[string]string) string {
		t.Helper()
		b, _ := json.Marshal(body)
		resp, err := http.Post(base+path, "application/json", bytes.NewReader(b))
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var buf bytes.Buffer
		buf.ReadFrom(resp.Body)
		return resp.Status + " " + resp.Header.Get("WWW-Authenticate") + " " + strings.Join(resp.Header.Values("Set-Cookie"), ";") + " " + buf.String()
	}
	hashes := func() uint64 { return m.api.Accounts().HashStats().Hashes }

	h0 := hashes()
	known := answer("/auth/signin", map[string]string{"email": "admin@example.org", "password": "not the admin password"})
	h1 := hashes()
	unknown := answer("/auth/signin", map[string]string{"email": "nobody@example.org", "password": "not the admin password"})
	if known != unknown || !strings.HasPrefix(known, "401 ") {
		t.Errorf("sign-in answers differ:\n known: %s\n unknown: %s", known, unknown)
	}
	if h1-h0 != 1 || hashes()-h1 != 1 {
		t.Errorf("hashes: %d for a known email, %d for an unknown one; want one each", h1-h0, hashes()-h1)
	}

	admin := signIn(t, base, "admin@example.org", adminPassword)
	resp, body := call(t, "POST", base+"/auth/invites", map[string]string{"role": "host"}, admin.headers(true))
	if resp.StatusCode != http.StatusCreated {
		t.Fatalf("invite: %d %v", resp.StatusCode, body)
	}
	inv := strings.TrimPrefix(body["url"].(string), "/setup#invite=")
	accept := func(email string) string {
		return answer("/auth/accept", map[string]string{"invite": inv, "email": email, "password": hostPassword})
	}
	// A taken email spends the invite without naming the email as taken…
	first := accept("admin@example.org")
	if !strings.HasPrefix(first, "410 ") || strings.Contains(first, "admin@example.org") || strings.Contains(first, "exist") {
		t.Errorf("accept with a taken email: %s", first)
	}
	// …so the next try, with any email, learns nothing more.
	taken, free := accept("admin@example.org"), accept("free@example.org")
	if taken != free || !strings.HasPrefix(taken, "410 ") {
		t.Errorf("a spent invite answers differently:\n taken: %s\n free: %s", taken, free)
	}
	inv = "forged"
	if taken, free := accept("admin@example.org"), accept("free@example.org"); taken != free || !strings.HasPrefix(taken, "401 ") {
		t.Errorf("a forged invite answers differently:\n taken: %s\n free: %s", taken, free)
	}
}

// TestFreeTextRefusesControlAndBidiCharacters: titles, descriptions and
// names with NUL, escapes or text-direction overrides (which make
// "gnp.exe" read as "exe.png") are refused with 400 and a message naming
// the character; text in any script, with emoji, is accepted.
func TestFreeTextRefusesControlAndBidiCharacters(t *testing.T) {
	t.Parallel()
	m := MustRunMain(t, t.TempDir())
	t.Cleanup(func() { m.Close() })
	base := m.URL()
	resp, body := call(t, "POST", base+"/spaces", map[string]string{
		"title":       "Launch 🚀 día — نقاش مفتوح",
		"description": "שיחה פתוחה\nwith 👩‍💻 and 👨‍👩‍👧",
	}, nil)
	if resp.StatusCode != http.StatusCreated || body["title"] != "Launch 🚀 día — نقاش مفتوح" {
		t.Fatalf("ordinary text refused: %d %v", resp.StatusCode, body)
	}
	id, host := body["id"].(string), bearerHdr(body["host_token"].(string))
	refused := func(what, path string, req map[string]string, hdr map[string]string, want string) {
		t.Helper()
		resp, body := call(t, "POST", base+path, req, hdr)
		if resp.StatusCode != http.StatusBadRequest || !strings.Contains(errMessage(body), want) {
			t.Errorf("%s: %d %q, want 400 saying %q", what, resp.StatusCode, errMessage(body), want)
		}
	}
	refused("NUL in a title", "/spaces", map[string]string{"title": "Launch\x00"}, nil, "title must not contain control characters or text-direction marks: U+0000 at character 7")
	refused("override in a title", "/spaces", map[string]string{"title": "\u202egnp.exe"}, nil, "U+202E")
	refused("isolate in a description", "/spaces", map[string]string{"title": "Fine", "description": "ok \u2067hidden\u2069"}, nil, "description must not contain")
	refused("override in a speaker's name", "/spaces/"+id+"/tokens", map[string]string{"role": "speaker", "name": "\u202dAda"}, host, "name must not contain")
	resp, body = call(t, "POST", base+"/spaces/"+id+"/tokens", map[string]string{"role": "speaker", "name": "Zoë 👩‍💻"}, host)
	if resp.StatusCode != http.StatusCreated || body["name"] != "Zoë 👩‍💻" {
		t.Errorf("speaker named Zoë 👩‍💻: %d %v", resp.StatusCode, body)
	}
	refused("mark in a request's name", "/spaces/"+id+"/requests", map[string]string{"name": "x\u200fy"}, nil, "U+200F")
	askToSpeak(t, base, id, "مريم")
}

// TestDataDirectoryIsOwnerOnly: the data directory is 0700 and the
// database (with its -wal and -shm) and the gate key 0600 after a start,
// whether the server created them or found them readable by everyone.
func TestDataDirectoryIsOwnerOnly(t *testing.T) {
	t.Parallel()
	fresh := filepath.Join(t.TempDir(), "data")
	loose := t.TempDir()
	if err := os.Chmod(loose, 0o755); err != nil {
		t.Fatal(err)
	}
	key := strings.Repeat("ab", 32) + "\n"
	for name, b := range map[string]string{"amphi.db": "", "gate.key": key} {
		if err := os.WriteFile(filepath.Join(loose, name), []byte(b), 0o644); err != nil {
			t.Fatal(err)
		}
		os.Chmod(filepath.Join(loose, name), 0o644) // whatever the umask
	}
	for _, dir := range []string{fresh, loose} {
		var logs bytes.Buffer
		m := MustRunMainWith(t, dir, func(m *Main) { m.Logger = slog.New(slog.NewTextHandler(&logs, nil)) })
		resp, err := http.Post(m.URL()+"/spaces", "application/json", strings.NewReader(`{"title":"Written"}`))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		want := map[string]fs.FileMode{"": 0o700, "amphi.db": 0o600, "amphi.db-wal": 0o600, "amphi.db-shm": 0o600, "gate.key": 0o600}
		for name, mode := range want {
			fi, err := os.Stat(filepath.Join(dir, name))
			if err != nil {
				t.Fatal(err)
			}
			if fi.Mode().Perm() != mode {
				t.Errorf("%s: mode %#o, want %#o", filepath.Join(dir, name), fi.Mode().Perm(), mode)
			}
		}
		m.Close()
		if dir == loose {
			for _, name := range []string{"amphi.db", "gate.key"} {
				if !strings.Contains(logs.String(), filepath.Join(dir, name)+" was=0644 now=0600") {
					t.Errorf("no log of tightening %s:\n%s", name, logs.String())
				}
			}
		}
	}
}

// TestPublicURLMakesCookiesSecureAndLinksPublic: behind a TLS proxy the
// server sees plain HTTP, so only --public-url tells it the browser's side
// is https. The URL (an .example name, which never resolves) is only
// written into cookies and links; nothing connects to it.
func TestPublicURLMakesCookiesSecureAndLinksPublic(t *testing.T) {
	t.Parallel()
	m, _ := startWithAdmin(t, func(m *Main) {
		if err := m.ParseFlags(context.Background(), []string{"--public-url", "https://x.example/", "--addr", "127.0.0.1:0", "--data", m.Config.DataDir}); err != nil {
			t.Fatal(err)
		}
	})
	resp, body := call(t, "POST", m.URL()+"/auth/signin", map[string]string{"email": "admin@example.org", "password": adminPassword}, nil)
	if resp.StatusCode != http.StatusOK || len(resp.Cookies()) != 2 {
		t.Fatalf("sign in: %d %v %v", resp.StatusCode, body, resp.Cookies())
	}
	for _, c := range resp.Cookies() {
		if !c.Secure {
			t.Errorf("cookie %s is not Secure behind an https public URL", c.Name)
		}
	}
	resp, body = call(t, "POST", m.URL()+"/spaces", map[string]string{"title": "Public"}, nil)
	if url, _ := body["live_url"].(string); resp.StatusCode != http.StatusCreated || !strings.HasPrefix(url, "https://x.example/spaces/") {
		t.Errorf("create: %d, live_url %q, want it on https://x.example", resp.StatusCode, url)
	}

	bad := NewMain()
	bad.Config.Addr, bad.Config.DataDir = "127.0.0.1:0", t.TempDir()
	bad.Logger = slog.New(slog.DiscardHandler)
	bad.Config.API.PublicURL = "ftp://x.example/amphi"
	err := bad.Run(context.Background())
	bad.Close()
	if err == nil || !strings.Contains(err.Error(), "public URL") {
		t.Errorf("Run with --public-url ftp://…: %v, want an error about the public URL", err)
	}
}
