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
