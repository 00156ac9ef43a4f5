package load

import (
	"testing"
	"time"
)

func TestPlayerCountsOnlyStarvationsLongerThanASecond(t *testing.T) {
	const ms = time.Millisecond
	type arrival struct{ at, audio time.Duration }
	// steady is 200 ms of audio every 200 ms from first on, for n arrivals.
	steady := func(first time.Duration, n int) []arrival {
		var a []arrival
		for i := range n {
			a = append(a, arrival{first + time.Duration(i)*200*ms, 200 * ms})
		}
		return a
	}
	cat := func(parts ...[]arrival) []arrival {
		var a []arrival
		for _, p := range parts {
			a = append(a, p...)
		}
		return a
	}
	for _, tc := range []struct {
		name     string
		buffer   time.Duration
		arrivals []arrival
		end      time.Duration
		clean    bool
		stalls   int
		longest  time.Duration
	}{
		{
			name: "steady stream", buffer: time.Second,
			arrivals: cat([]arrival{{100 * ms, 500 * ms}}, steady(300*ms, 50)),
			end:      10 * time.Second, stalls: 0,
		},
		{
			// 1.2 s of audio, then nothing until the catch-up 2.5 s
			// later: dry from 1.2 s to 2.7 s.
			name: "a 2.5 s pause behind a 1 s buffer", buffer: time.Second,
			arrivals: cat(
				[]arrival{{0, time.Second}},       // plays at once, dry at 1 s
				[]arrival{{200 * ms, 200 * ms}},   // dry at 1.2 s
				[]arrival{{2700 * ms, 2500 * ms}}, // back 1.5 s later, rebuffered at once
				steady(2900*ms, 10),
			),
			end: 5 * time.Second, stalls: 1, longest: 1500 * ms,
		},
		{
			name: "a 0.8 s gap passes for jitter", buffer: 0,
			arrivals: cat(
				[]arrival{{0, 200 * ms}},
				[]arrival{{1000 * ms, 200 * ms}},
			),
			end: 1200 * ms, stalls: 0, longest: 800 * ms,
		},
		{
			// Rebuffering counts as starved: the gap is short but the
			// buffer fills slowly, 200 ms a second.
			name: "slow rebuffer after running dry", buffer: 600 * ms,
			arrivals: cat(
				[]arrival{{0, 600 * ms}},
				[]arrival{{700 * ms, 200 * ms}},
				[]arrival{{1700 * ms, 200 * ms}},
				[]arrival{{2700 * ms, 200 * ms}},
			),
			end: 3 * time.Second, stalls: 1, longest: 2100 * ms,
		},
		{
			name: "dry at the end of the run", buffer: 0,
			arrivals: []arrival{{0, time.Second}},
			end:      3 * time.Second, stalls: 1, longest: 2 * time.Second,
		},
		{
			name: "dry after the program ended cleanly", buffer: 0,
			arrivals: []arrival{{0, time.Second}},
			end:      3 * time.Second, clean: true, stalls: 0,
		},
		{
			name: "never played: still buffering is no stall", buffer: 5 * time.Second,
			arrivals: steady(0, 10),
			end:      4 * time.Second, stalls: 0,
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := newPlayer(tc.buffer)
			for _, a := range tc.arrivals {
				p.arrive(a.at, a.audio)
			}
			p.finish(tc.end, tc.clean)
			if p.stalls != tc.stalls {
				t.Errorf("stalls = %d, want %d", p.stalls, tc.stalls)
			}
			if tc.longest != 0 && p.longestStarve != tc.longest {
				t.Errorf("longest starvation = %v, want %v", p.longestStarve, tc.longest)
			}
		})
	}
}
