package main

import (
	"fmt"
	"sync"
	"testing"
	"time"
)

// BenchmarkFleetLimits measures how closely a space's listener cap and
// join rate hold across an origin and two edges: a crowd joins at both
// edges at twice the space's join rate for 10 s, and the line moves on
// until the cap binds. It reports the most places ever held over the
// cap (held/cap, 1 at most is no overshoot) and, while the cap did not
// bind, the admissions made over those the rounds granted
// (admitted/granted, after the first round): every announcement of the
// space is one round of grants. One run is one measurement; b.N is ignored.
//
//	go test ./cmd/amphi -run '^$' -bench FleetLimits -benchtime 1x
func BenchmarkFleetLimits(b *testing.B) {
	const (
		limit = 600
		rate  = 50 // admissions a second, across the fleet
		joins = 10 * time.Second
		run   = 20 * time.Second
	)
	origin, edges, id := capFleet(b, func(m *Main) {
		m.Config.API.Gate.Room.MaxListeners = limit
		m.Config.API.Gate.Room.JoinRate = rate
	})
	var mu sync.Mutex
	var rounds []time.Time
	sub, err := origin.bus.Subscribe("amphi.space."+id, func([]byte) {
		mu.Lock()
		rounds = append(rounds, time.Now())
		mu.Unlock()
	})
	if err != nil {
		b.Fatal(err)
	}
	defer sub.Close()
	fleet := func() (held int, admitted uint64) {
		held, _, admitted = fleetRoom(append([]*Main{origin}, edges...), id)
		return held, admitted
	}

	// Samples of the admissions after each round, and of the places held.
	type sample struct {
		at       time.Time
		admitted uint64
	}
	var samples []sample
	maxHeld := 0
	var binds time.Time // when the cap might first bind a round
	start := time.Now()
	var joiners sync.WaitGroup
	defer joiners.Wait()
	joiners.Go(func() {
		tick := time.NewTicker(100 * time.Millisecond)
		defer tick.Stop()
		for i := 0; time.Since(start) < joins; i++ {
			for j := range 2 * rate / 10 { // 2x the rate, every 100 ms
				n := i*2*rate/10 + j
				joiners.Go(func() {
					joinAs(b, fromAddr(fmt.Sprintf("127.1.%d.%d", n/250, 1+n%250)), edges[n%2].URL(), id, nil)
				})
			}
			<-tick.C
		}
	})
	b.ResetTimer()
	for time.Since(start) < run {
		time.Sleep(20 * time.Millisecond)
		held, admitted := fleet()
		maxHeld = max(maxHeld, held)
		samples = append(samples, sample{time.Now(), admitted})
		if held > limit-rate && binds.IsZero() {
			binds = time.Now()
		}
	}
	b.StopTimer()

	// Admissions from the second round to the last before the cap might
	// bind, against what those rounds granted: rate a round. The first
	// round splits its admissions evenly over the three nodes, knowing
	// no line or rate yet, and the origin has no joiners: its part of it
	// is not used.
	mu.Lock()
	first, last := rounds[1], rounds[1]
	for _, r := range rounds {
		if r.Before(binds) {
			last = r
		}
	}
	granted := uint64(rate * int(last.Sub(first).Round(time.Second)/time.Second))
	mu.Unlock()
	var from, to uint64
	for _, s := range samples {
		if !s.at.After(first) {
			from = s.admitted
		}
		if !s.at.After(last) {
			to = s.admitted
		}
	}
	b.ReportMetric(float64(maxHeld)/limit, "held/cap")
	b.ReportMetric(float64(to-from)/float64(granted), "admitted/granted")
	b.Logf("cap %d, rate %d/s: at most %d held; %d admitted in %v of rounds (%d granted) before the cap bound",
		limit, rate, maxHeld, to-from, last.Sub(first).Round(time.Millisecond), granted)
}
