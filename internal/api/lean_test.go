package api

import (
	"strings"
	"testing"
)

func TestLeanListenRequestTakesOnlyPlainTicketedGets(t *testing.T) {
	const ok = "GET /spaces/abc/live.opus?burst=1s&ticket=T0k-en_ HTTP/1.1\r\nHost: a\r\nUser-Agent: x\r\n\r\n"
	for _, tc := range []struct {
		name, head string
		want       bool
	}{
		{"plain", ok, true},
		{"no host", "GET /spaces/abc/live.opus?ticket=T HTTP/1.1\r\n\r\n", false},
		{"HTTP/1.0", strings.Replace(ok, "HTTP/1.1", "HTTP/1.0", 1), false},
		{"HEAD", strings.Replace(ok, "GET", "HEAD", 1), false},
		{"join", "POST /spaces/abc/join HTTP/1.1\r\nHost: a\r\n\r\n", false},
		{"no ticket", "GET /spaces/abc/live.opus?burst=1s HTTP/1.1\r\nHost: a\r\n\r\n", false},
		{"empty ticket", "GET /spaces/abc/live.opus?ticket= HTTP/1.1\r\nHost: a\r\n\r\n", false},
		{"two tickets", "GET /spaces/abc/live.opus?ticket=a&ticket=b HTTP/1.1\r\nHost: a\r\n\r\n", false},
		{"escaped ticket", "GET /spaces/abc/live.opus?ticket=a%41 HTTP/1.1\r\nHost: a\r\n\r\n", false},
		{"nested path", "GET /spaces/a/b/live.opus?ticket=a HTTP/1.1\r\nHost: a\r\n\r\n", false},
		{"a body", strings.Replace(ok, "Host: a", "Host: a\r\nContent-Length: 3", 1), false},
		{"a cookie", strings.Replace(ok, "Host: a", "Host: a\r\ncookie: amphi_ticket=x", 1), false},
		{"connection close", strings.Replace(ok, "Host: a", "Host: a\r\nConnection: close", 1), false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			id, tok, got := leanListenRequest([]byte(tc.head))
			if got != tc.want {
				t.Fatalf("lean = %v, want %v", got, tc.want)
			}
			if got && (id != "abc" || tok != "T0k-en_") {
				t.Errorf("id %q ticket %q", id, tok)
			}
		})
	}
}

func FuzzLeanListenRequest(f *testing.F) {
	f.Add([]byte("GET /spaces/abc/live.opus?ticket=T HTTP/1.1\r\nHost: a\r\n\r\n"))
	f.Add([]byte("GET /spaces//live.opus? HTTP/1.1\r\n\r\n"))
	f.Fuzz(func(t *testing.T, head []byte) {
		id, tok, ok := leanListenRequest(head)
		if ok && (id == "" || tok == "" || strings.ContainsAny(id, "/%?# ") || strings.ContainsAny(tok, "%+ &")) {
			t.Errorf("accepted %q: id %q ticket %q", head, id, tok)
		}
	})
}
