package space

import (
	"testing"
	"time"

	"github.com/amphi-audio/amphi"
)

func TestBiggerCrowdsPollLessOften(t *testing.T) {
	for _, tc := range []struct {
		state amphi.State
		crowd int
		want  time.Duration
	}{
		{amphi.StateLive, 0, 2 * time.Second},
		{amphi.StateLive, 4999, 2 * time.Second},
		{amphi.StateLive, 10000, 4 * time.Second},
		{amphi.StateLive, 20000, 8 * time.Second},
		{amphi.StateLive, 1000000, 15 * time.Second},
		{amphi.StateScheduled, 50000, 15 * time.Second},
		{amphi.StateEnded, 0, 15 * time.Second},
	} {
		if got := pollAfter(tc.state, tc.crowd); got != tc.want {
			t.Errorf("pollAfter(%s, %d) = %v, want %v", tc.state, tc.crowd, got, tc.want)
		}
	}
}

func TestAStateEncodedWhileAChangeCameIsNotKept(t *testing.T) {
	var c stateCache
	gen := c.generation()
	c.forget("s1") // a request to speak, say, while the state was encoded
	c.put("s1", &State{}, gen)
	if c.get("s1") != nil {
		t.Error("a state that may predate a change was cached")
	}
	gen = c.generation()
	st := &State{}
	c.put("s1", st, gen)
	if c.get("s1") != st {
		t.Error("a state encoded with nothing changing was not cached")
	}
}
