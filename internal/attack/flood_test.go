package attack

import (
	"bytes"
	"testing"
)

func TestParseStatusLine(t *testing.T) {
	for _, tc := range []struct {
		in   string
		code int
		err  error
	}{
		{"HTTP/1.1 404 Not Found\r\n", 404, nil},
		{"HTTP/1.0 200 OK\r\n", 200, nil},
		{"HTTP/1.1 204\r\n", 204, nil},
		{"HTTP/1.1 503\n", 503, nil},
		{"HTTP/1.1 999 ", 999, nil},
		{"", 0, errShort},
		{"HT", 0, errShort},
		{"HTTP/1.1 40", 0, errShort},
		{"HTTP/1.1 404", 0, errShort},
		{"http/1.1 404 ", 0, errMalformed},
		{"SSH-2.0-OpenSSH", 0, errMalformed},
		{"HTTP/2 200 ", 0, errMalformed},
		{"HTTP/1.1 4040 ", 0, errMalformed},
		{"HTTP/1.1 099 ", 0, errMalformed},
		{"HTTP/1.1 4x4 ", 0, errMalformed},
		{"\x00\x00\x00", 0, errMalformed},
	} {
		code, err := parseStatusLine([]byte(tc.in))
		if code != tc.code || err != tc.err {
			t.Errorf("parseStatusLine(%q) = %d, %v; want %d, %v", tc.in, code, err, tc.code, tc.err)
		}
	}
}

// FuzzParseStatusLine checks the parser of what a server sends back: it
// never panics, accepts only status lines, and a prefix it calls short is
// never longer than a status line needs.
func FuzzParseStatusLine(f *testing.F) {
	for _, s := range []string{"HTTP/1.1 404 Not Found\r\n", "HTTP/1.0 200 OK\r\n", "HTTP/1.1 40", "SSH-2.0-x\r\n", ""} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		code, err := parseStatusLine(b)
		switch err {
		case nil:
			if code < 100 || code > 999 || !bytes.HasPrefix(b, []byte("HTTP/")) || len(b) < statusLineMin {
				t.Fatalf("%q: accepted as %d", b, code)
			}
			// More bytes never change the verdict.
			if c, err := parseStatusLine(append(b[:len(b):len(b)], "xyz"...)); c != code || err != nil {
				t.Fatalf("%q: %d, then %d, %v with more bytes", b, code, c, err)
			}
		case errShort:
			if len(b) >= statusLineMin {
				t.Fatalf("%q: short at %d bytes", b, len(b))
			}
		case errMalformed:
		default:
			t.Fatalf("%q: unexpected error %v", b, err)
		}
	})
}

func TestFloodRequestsAreCompleteHTTP(t *testing.T) {
	for _, k := range []Kind{JoinFlood, ListenFlood} {
		cfg, err := Config{Kind: k, Target: "http://127.0.0.1:8080/base/"}.withDefaults()
		if err != nil {
			t.Fatal(err)
		}
		tg, err := parseTarget(cfg)
		if err != nil {
			t.Fatal(err)
		}
		r := &runner{cfg: cfg, target: tg}
		sc := scratchPool.Get().(*scratch)
		for i := range 10 {
			req := string(r.appendFloodRequest(nil, sc, i))
			head, body, ok := bytes.Cut([]byte(req), []byte("\r\n\r\n"))
			if !ok || !bytes.HasPrefix(head, []byte("GET /base/spaces/")) && !bytes.HasPrefix(head, []byte("POST /base/spaces/")) ||
				!bytes.Contains(head, []byte("Host: 127.0.0.1:8080\r\n")) {
				t.Fatalf("%s #%d: %q", k, i, req)
			}
			if k == ListenFlood && len(body) != 0 {
				t.Errorf("%s #%d: body %q", k, i, body)
			}
		}
		scratchPool.Put(sc)
	}
}
