package api

import (
	"testing"
	"time"

	"github.com/amphi-audio/amphi/internal/gate"
)

// TestSpeakerLimitForgetsRefilledSpeakersFirst: when the table is full, a
// speaker whose bucket has refilled is forgotten (it lost nothing), not one
// that is still held back.
func TestSpeakerLimitForgetsRefilledSpeakersFirst(t *testing.T) {
	l := keyLimiter{rate: 1, burst: 2, max: 2, buckets: make(map[string]*gate.Bucket)}
	t0 := time.Unix(1000, 0)
	for range 2 {
		l.allow("flood", t0)
		l.allow("quiet", t0)
	}
	// Three seconds on, quiet has refilled; flood keeps spending.
	t1 := t0.Add(3 * time.Second)
	for l.allow("flood", t1) {
	}
	if !l.allow("new", t1) {
		t.Fatal("a new speaker was refused")
	}
	if _, ok := l.buckets["quiet"]; ok || len(l.buckets) != 2 {
		t.Errorf("remembered %d speakers (quiet kept: %v), want flood and new", len(l.buckets), ok)
	}
	if l.allow("flood", t1) {
		t.Error("flood got a fresh burst when the table made room")
	}
}
