package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/amphi-audio/amphi/internal/account"
	"github.com/amphi-audio/amphi/internal/client"
)

// Accounts in these tests hash cheaply; the CLI still uses the defaults.
var cheapParams = account.Params{Time: 1, Memory: 64, Threads: 1}

const adminPassword = "a long admin password"

// call sends one request and decodes a JSON answer, if any. hdr may carry
// "Cookie" and "X-CSRF-Token" among others.
func call(t *testing.T, method, url string, body any, hdr map[string]string) (*http.Response, map[string]any) {
	t.Helper()
	var rd *bytes.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		rd = bytes.NewReader(b)
	} else {
		rd = bytes.NewReader(nil)
	}
	req, err := http.NewRequestWithContext(t.Context(), method, url, rd)
	if err != nil {
		t.Fatal(err)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var out map[string]any
	json.NewDecoder(resp.Body).Decode(&out)
	return resp, out
}

func errMessage(body map[string]any) string {
	e, _ := body["error"].(map[string]any)
	m, _ := e["message"].(string)
	return m
}

// withStdin runs f with os.Stdin reading input, as a shell pipe would.
func withStdin(t *testing.T, input string, f func()) {
	t.Helper()
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	go func() { w.WriteString(input); w.Close() }()
	old := os.Stdin
	os.Stdin = r
	defer func() { os.Stdin = old; r.Close() }()
	f()
}

// createAdmin runs `amphi admin create` in-process with the password on stdin.
func createAdmin(t *testing.T, dir, email, password string) error {
	t.Helper()
	b, err := captureStdout(t, func() (err error) {
		withStdin(t, password+"\n", func() {
			err = run(context.Background(), []string{"admin", "create", "--data", dir, "--email", email})
		})
		return err
	})
	if err == nil && !strings.HasPrefix(string(b), "created admin ") {
		t.Fatalf("admin create printed %q", b)
	}
	return err
}

// session is a signed-in browser's credentials.
type session struct{ cookie, csrf string }

func (s session) headers(withCSRF bool) map[string]string {
	h := map[string]string{"Cookie": "amphi_session=" + s.cookie}
	if withCSRF {
		h["X-CSRF-Token"] = s.csrf
	}
	return h
}

func signIn(t *testing.T, base, email, password string) session {
	t.Helper()
	resp, body := call(t, "POST", base+"/auth/signin", map[string]string{"email": email, "password": password}, nil)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("sign in: %d %v", resp.StatusCode, body)
	}
	var s session
	for _, c := range resp.Cookies() {
		if c.Name == "amphi_session" {
			s.cookie = c.Value
		}
	}
	s.csrf, _ = body["csrf"].(string)
	if s.cookie == "" || s.csrf == "" {
		t.Fatalf("sign in gave no session cookie or csrf: %v", body)
	}
	return s
}

func startWithAdmin(t *testing.T, adjust func(*Main)) (*Main, *clock) {
	t.Helper()
	dir := t.TempDir()
	if err := createAdmin(t, dir, "admin@example.org", adminPassword); err != nil {
		t.Fatal(err)
	}
	clk := &clock{}
	m := MustRunMainWith(t, dir, func(m *Main) {
		m.Config.API.Accounts.Params = cheapParams
		m.Config.API.Accounts.SessionTTL = time.Hour
		m.Config.API.Now = clk.Now
		if adjust != nil {
			adjust(m)
		}
	})
	t.Cleanup(func() { m.Close() })
	return m, clk
}

func TestAdminCreateFromTheCommandLine(t *testing.T) {
	dir := t.TempDir()
	if err := createAdmin(t, dir, "Ada@Example.org", adminPassword); err != nil {
		t.Fatal(err)
	}
	pwFile := filepath.Join(t.TempDir(), "pw")
	os.WriteFile(pwFile, []byte("another admin password\r\n"), 0o600)
	if err := run(context.Background(), []string{"admin", "create", "--data", dir, "--email", "bob@example.org", "--password-file", pwFile}); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, email, password, want string
	}{
		{"duplicate email", "ada@example.org", adminPassword, "already exists"},
		{"weak password", "carol@example.org", "short", "too weak: use at least 12 characters"},
		{"no password", "carol@example.org", "", "no password given"},
		{"not an email", "carol", adminPassword, "is not an email address"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := createAdmin(t, dir, tc.email, tc.password)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want one saying %q", err, tc.want)
			}
		})
	}
	m := MustRunMain(t, dir)
	defer m.Close()
	for _, who := range []struct{ email, password string }{{"ada@example.org", adminPassword}, {"bob@example.org", "another admin password"}} {
		s := signIn(t, m.URL(), who.email, who.password)
		resp, body := call(t, "GET", m.URL()+"/auth/me", nil, s.headers(false))
		user, _ := body["user"].(map[string]any)
		if resp.StatusCode != http.StatusOK || user["email"] != who.email || user["role"] != "admin" {
			t.Fatalf("/auth/me: %d %v", resp.StatusCode, body)
		}
		if _, leaked := user["password_hash"]; leaked {
			t.Fatal("/auth/me shows the password hash")
		}
	}
}

func TestSignInSetsAHardenedSessionCookie(t *testing.T) {
	t.Parallel()
	m, _ := startWithAdmin(t, nil)
	resp, body := call(t, "POST", m.URL()+"/auth/signin", map[string]string{"email": "admin@example.org", "password": adminPassword}, nil)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("%d %v", resp.StatusCode, body)
	}
	var sess, csrf *http.Cookie
	for _, c := range resp.Cookies() {
		switch c.Name {
		case "amphi_session":
			sess = c
		case "amphi_csrf":
			csrf = c
		}
	}
	if sess == nil || csrf == nil {
		t.Fatalf("cookies %v", resp.Cookies())
	}
	if !sess.HttpOnly || sess.SameSite != http.SameSiteLaxMode || sess.Path != "/" || sess.MaxAge != 3600 {
		t.Errorf("session cookie %+v: want HttpOnly, SameSite=Lax, Path=/, Max-Age=3600", sess)
	}
	if sess.Secure {
		t.Error("session cookie is Secure over plain HTTP: browsers would drop it")
	}
	if csrf.HttpOnly || csrf.Value != body["csrf"] || csrf.Value == sess.Value {
		t.Errorf("csrf cookie %+v: want readable by scripts, equal to the body's csrf, not the session", csrf)
	}
}

func TestWrongPasswordAndUnknownEmailLookTheSame(t *testing.T) {
	t.Parallel()
	m, _ := startWithAdmin(t, nil)
	var answers []string
	for _, cred := range []map[string]string{
		{"email": "admin@example.org", "password": "not the admin password"},
		{"email": "nobody@example.org", "password": adminPassword},
	} {
		resp, body := call(t, "POST", m.URL()+"/auth/signin", cred, nil)
		if resp.StatusCode != http.StatusUnauthorized || len(resp.Cookies()) != 0 {
			t.Fatalf("%v: %d, cookies %v", cred, resp.StatusCode, resp.Cookies())
		}
		answers = append(answers, errMessage(body))
	}
	if answers[0] != answers[1] || answers[0] == "" {
		t.Fatalf("answers differ: %q", answers)
	}
}

func TestSignInIsRateLimitedPerSource(t *testing.T) {
	t.Parallel()
	m, clk := startWithAdmin(t, nil)
	// The server's time stands still: on a busy machine ten password
	// checks can take the six seconds that earn another try.
	clk.Stop()
	cred := map[string]string{"email": "admin@example.org", "password": "guess guess guess"}
	for i := range 10 { // the burst
		if resp, _ := call(t, "POST", m.URL()+"/auth/signin", cred, nil); resp.StatusCode != http.StatusUnauthorized {
			t.Fatalf("try %d: %d, want 401", i+1, resp.StatusCode)
		}
	}
	resp, _ := call(t, "POST", m.URL()+"/auth/signin", cred, nil)
	if resp.StatusCode != http.StatusTooManyRequests || resp.Header.Get("Retry-After") == "" {
		t.Fatalf("11th try: %d, want 429 with Retry-After", resp.StatusCode)
	}
}

func TestExpiredSessionSaysSo(t *testing.T) {
	t.Parallel()
	m, clk := startWithAdmin(t, nil)
	s := signIn(t, m.URL(), "admin@example.org", adminPassword)
	if resp, body := call(t, "GET", m.URL()+"/auth/me", nil, s.headers(false)); resp.StatusCode != http.StatusOK || body["csrf"] != s.csrf {
		t.Fatalf("/auth/me: %d %v", resp.StatusCode, body)
	}
	if resp, body := call(t, "GET", m.URL()+"/auth/me", nil, nil); resp.StatusCode != http.StatusUnauthorized || errMessage(body) != "not signed in" {
		t.Fatalf("/auth/me without a cookie: %d %v", resp.StatusCode, body)
	}
	clk.Advance(time.Hour + time.Second)
	resp, body := call(t, "GET", m.URL()+"/auth/me", nil, s.headers(false))
	if resp.StatusCode != http.StatusUnauthorized || !strings.Contains(errMessage(body), "session expired") {
		t.Fatalf("/auth/me after expiry: %d %v", resp.StatusCode, body)
	}
	// Creating a space with the expired session says so too.
	resp, body = call(t, "POST", m.URL()+"/spaces", map[string]string{"title": "Late"}, s.headers(true))
	if resp.StatusCode != http.StatusUnauthorized || !strings.Contains(errMessage(body), "session expired") {
		t.Fatalf("create after expiry: %d %v", resp.StatusCode, body)
	}
}

func TestCookieAuthenticatedRequestsNeedTheCSRFToken(t *testing.T) {
	t.Parallel()
	m, _ := startWithAdmin(t, nil)
	s := signIn(t, m.URL(), "admin@example.org", adminPassword)
	other := signIn(t, m.URL(), "admin@example.org", adminPassword)
	title := map[string]string{"title": "Town hall"}
	for _, tc := range []struct {
		name string
		hdr  map[string]string
		want int
	}{
		{"no header", s.headers(false), http.StatusForbidden},
		{"wrong header", map[string]string{"Cookie": "amphi_session=" + s.cookie, "X-CSRF-Token": "forged"}, http.StatusForbidden},
		{"another session's token", map[string]string{"Cookie": "amphi_session=" + s.cookie, "X-CSRF-Token": other.csrf}, http.StatusForbidden},
		{"the session's token", s.headers(true), http.StatusCreated},
	} {
		t.Run(tc.name, func(t *testing.T) {
			resp, body := call(t, "POST", m.URL()+"/spaces", title, tc.hdr)
			if resp.StatusCode != tc.want {
				t.Fatalf("%d %v, want %d", resp.StatusCode, body, tc.want)
			}
			if tc.want == http.StatusCreated && body["host_token"] == "" {
				t.Fatal("no host token")
			}
		})
	}
	if resp, _ := call(t, "POST", m.URL()+"/auth/signout", nil, s.headers(false)); resp.StatusCode != http.StatusForbidden {
		t.Fatalf("sign out without CSRF: %d, want 403", resp.StatusCode)
	}
	resp, _ := call(t, "POST", m.URL()+"/auth/signout", nil, s.headers(true))
	if resp.StatusCode != http.StatusNoContent {
		t.Fatalf("sign out: %d, want 204", resp.StatusCode)
	}
	for _, c := range resp.Cookies() {
		if c.MaxAge >= 0 || c.Value != "" {
			t.Errorf("sign out left cookie %+v", c)
		}
	}
	if resp, body := call(t, "GET", m.URL()+"/auth/me", nil, s.headers(false)); resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("/auth/me after sign out: %d %v", resp.StatusCode, body)
	}
	// Bearer-authenticated and anonymous requests carry no cookie and need
	// no CSRF token: the CLI's flows are unchanged.
	if resp, body := call(t, "POST", m.URL()+"/spaces", title, nil); resp.StatusCode != http.StatusCreated {
		t.Fatalf("anonymous create: %d %v", resp.StatusCode, body)
	}
}

func TestRequireAccountsRefusesAnonymousCreation(t *testing.T) {
	m, _ := startWithAdmin(t, func(m *Main) {
		if err := m.ParseFlags(context.Background(), []string{"--require-accounts", "--addr", "127.0.0.1:0", "--data", m.Config.DataDir}); err != nil {
			t.Fatal(err)
		}
	})
	title := map[string]string{"title": "Members only"}
	resp, body := call(t, "POST", m.URL()+"/spaces", title, nil)
	if resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("anonymous create: %d %v, want 401", resp.StatusCode, body)
	}
	s := signIn(t, m.URL(), "admin@example.org", adminPassword)
	if resp, body := call(t, "POST", m.URL()+"/spaces", title, s.headers(true)); resp.StatusCode != http.StatusCreated {
		t.Fatalf("signed-in create: %d %v, want 201", resp.StatusCode, body)
	}

	// The CLI signs in when given an account.
	pw := filepath.Join(t.TempDir(), "password")
	if err := os.WriteFile(pw, []byte(adminPassword+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	args := []string{"create", "--server", m.URL(), "--title", "From the shell", "--description", "Made by the CLI"}
	if err := run(t.Context(), args); err == nil || !strings.Contains(err.Error(), "sign in as a host") {
		t.Fatalf("anonymous amphi create: %v", err)
	}
	out, err := captureStdout(t, func() error {
		return run(t.Context(), append(args, "--email", "admin@example.org", "--password-file", pw))
	})
	if err != nil {
		t.Fatal(err)
	}
	var created map[string]any
	if err := json.Unmarshal(out, &created); err != nil || created["host_token"] == "" || created["description"] != "Made by the CLI" {
		t.Fatalf("amphi create printed %s (%v)", out, err)
	}
	resp, body = call(t, "GET", m.URL()+"/spaces?mine=true", nil, s.headers(false))
	if resp.StatusCode != 200 || !strings.Contains(fmt.Sprint(body), created["id"].(string)) {
		t.Errorf("the CLI's space is not the admin's own: %v", body)
	}
}

// captureStdout runs f with os.Stdout going to a file and returns what it
// wrote there, and f's error.
func captureStdout(t *testing.T, f func() error) ([]byte, error) {
	t.Helper()
	out, err := os.CreateTemp(t.TempDir(), "stdout")
	if err != nil {
		t.Fatal(err)
	}
	defer out.Close()
	old := os.Stdout
	os.Stdout = out
	ferr := f()
	os.Stdout = old
	b, err := os.ReadFile(out.Name())
	if err != nil {
		t.Fatal(err)
	}
	return b, ferr
}

func TestFirstStartLinkCreatesTheFirstAdminOnce(t *testing.T) {
	t.Parallel()
	clk := &clock{}
	m := MustRunMainWith(t, t.TempDir(), func(m *Main) {
		m.Config.API.Accounts.Params = cheapParams
		m.Config.API.Now = clk.Now
	})
	defer m.Close()
	link, err := m.api.FirstAdminLink(t.Context())
	if err != nil || !strings.HasPrefix(link, "/setup#token=") {
		t.Fatalf("FirstAdminLink = %q, %v", link, err)
	}
	token := strings.TrimPrefix(link, "/setup#token=")
	setup := func(token, password string) (*http.Response, map[string]any) {
		return call(t, "POST", m.URL()+"/auth/setup", map[string]string{"token": token, "email": "first@example.org", "password": password}, nil)
	}
	for _, tc := range []struct {
		name, token, password string
		want                  int
		says                  string
	}{
		{"wrong link", "forged", adminPassword, http.StatusUnauthorized, "wrong setup link"},
		{"weak password keeps the link", token, "short", http.StatusBadRequest, "too weak"},
		{"the link", token, adminPassword, http.StatusCreated, ""},
		{"the link again", token, adminPassword, http.StatusGone, "already used"},
	} {
		resp, body := setup(tc.token, tc.password)
		if resp.StatusCode != tc.want || !strings.Contains(errMessage(body), tc.says) {
			t.Fatalf("%s: %d %v, want %d saying %q", tc.name, resp.StatusCode, body, tc.want, tc.says)
		}
		if tc.want == http.StatusCreated && len(resp.Cookies()) == 0 {
			t.Fatalf("%s: not signed in", tc.name)
		}
	}
	signIn(t, m.URL(), "first@example.org", adminPassword)
	if link, err := m.api.FirstAdminLink(t.Context()); link != "" || err != nil {
		t.Fatalf("FirstAdminLink with an admin = %q, %v; want none", link, err)
	}
}

func TestExpiredFirstStartLinkSaysSo(t *testing.T) {
	t.Parallel()
	clk := &clock{}
	m := MustRunMainWith(t, t.TempDir(), func(m *Main) { m.Config.API.Now = clk.Now })
	defer m.Close()
	link, err := m.api.FirstAdminLink(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	clk.Advance(time.Hour)
	resp, body := call(t, "POST", m.URL()+"/auth/setup", map[string]string{"token": strings.TrimPrefix(link, "/setup#token="), "email": "first@example.org", "password": adminPassword}, nil)
	if resp.StatusCode != http.StatusGone || !strings.Contains(errMessage(body), "expired") {
		t.Fatalf("%d %v, want 410 saying the link expired", resp.StatusCode, body)
	}
}

// TestSignedInListenersWaitAheadOfAnonymousOnes: in a full space, a
// signed-in newcomer is placed ahead of anonymous waiters (the tier policy),
// and still behind nobody inside: nobody is evicted.
func TestSignedInListenersWaitAheadOfAnonymousOnes(t *testing.T) {
	t.Parallel()
	m, _ := startWithAdmin(t, func(m *Main) {
		m.Config.API.Gate.Node.MaxListeners = 1
		oneSourceTest(m)
	})
	c := client.New(m.URL())
	sp, err := c.Create(t.Context(), "Members first", nil)
	if err != nil {
		t.Fatal(err)
	}
	inside, err := c.Join(t.Context(), sp.ID, nil)
	if err != nil || inside.Ticket == "" {
		t.Fatalf("first listener: %+v %v", inside, err)
	}
	join := func(hdr map[string]string, body any) map[string]any {
		_, out := call(t, "POST", m.URL()+"/spaces/"+sp.ID+"/join", body, hdr)
		return out
	}
	anon := join(nil, nil)
	if anon["status"] != "waiting" || anon["position"] != 1.0 {
		t.Fatalf("anonymous newcomer: %v, want waiting at 1", anon)
	}
	member := signIn(t, m.URL(), "admin@example.org", adminPassword)
	if out := join(member.headers(false), nil); out["status"] != "waiting" || out["position"] != 1.0 {
		t.Errorf("signed-in newcomer: %v, want waiting at 1, ahead of the anonymous one", out)
	}
	if out := join(nil, map[string]string{"listener": anon["listener"].(string)}); out["position"] != 2.0 {
		t.Errorf("anonymous waiter after a member came: %v, want position 2", out)
	}
}
