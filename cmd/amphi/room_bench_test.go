package main

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/amphi-audio/amphi/internal/client"
	"github.com/amphi-audio/amphi/internal/gate"
)

// What one listener's page costs the server while it is open: a poll of the
// live state every 2 s (served from the once-a-second encoding, or 304 when
// nothing changed) and, now and then, a batch of reactions. Run with
// go test -run '^$' -bench 'StatePoll|Reaction' -benchmem ./cmd/amphi/

func BenchmarkStatePoll(b *testing.B) {
	m := MustRunMain(b, b.TempDir())
	defer m.Close()
	sp, err := client.New(m.URL()).Create(b.Context(), "Polled", nil)
	if err != nil {
		b.Fatal(err)
	}
	url := "/spaces/" + sp.ID + "/state"
	first := httptest.NewRecorder()
	m.api.ServeHTTP(first, httptest.NewRequest("GET", url, nil))
	etag := first.Header().Get("ETag")
	for _, bc := range []struct {
		name, etag string
		want       int
	}{{"full", "", http.StatusOK}, {"not-modified", etag, http.StatusNotModified}} {
		b.Run(bc.name, func(b *testing.B) {
			req := httptest.NewRequest("GET", url, nil)
			if bc.etag != "" {
				req.Header.Set("If-None-Match", bc.etag)
			}
			b.ReportAllocs()
			for b.Loop() {
				rec := httptest.NewRecorder()
				m.api.ServeHTTP(rec, req)
				if rec.Code != bc.want && rec.Code != http.StatusOK {
					b.Fatalf("state: %d", rec.Code)
				}
			}
		})
	}
}

func BenchmarkReaction(b *testing.B) {
	m := MustRunMainWith(b, b.TempDir(), func(m *Main) { m.Config.API.ReactionLimit = gate.LimiterConfig{} })
	defer m.Close()
	sp, err := client.New(m.URL()).Create(b.Context(), "Cheered", nil)
	if err != nil {
		b.Fatal(err)
	}
	url := "/spaces/" + sp.ID + "/reactions"
	b.ReportAllocs()
	for b.Loop() {
		req := httptest.NewRequest("POST", url, strings.NewReader(`{"kind":"clap","count":3}`))
		req.Header.Set("Content-Type", "application/json")
		rec := httptest.NewRecorder()
		m.api.ServeHTTP(rec, req)
		if rec.Code != http.StatusNoContent {
			b.Fatalf("reaction: %d %s", rec.Code, rec.Body)
		}
	}
}
