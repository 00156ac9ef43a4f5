package latency_test

import (
	"fmt"
	"time"

	"github.com/amphi-audio/amphi"
	"github.com/amphi-audio/amphi/internal/latency"
)

// A bot and a listener in one process: the bot records each mark's send
// time, the listener feeds what it decodes (here the bot's own frames,
// delivered 250 ms later) to a Detector, and Match turns both into
// latencies.
func Example() {
	cfg := latency.MarkerConfig{} // the defaults: a mark a second
	bot := latency.NewMarker(cfg)
	listener := latency.NewDetector(cfg)
	start := time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC)

	var sent []time.Time
	var dets []latency.Detection
	var pcm []int16
	for i := range 500 { // 10 s
		handed := start.Add(time.Duration(i) * amphi.FrameDuration)
		var ok bool
		pcm, _, ok = bot.Frame(pcm, i)
		if ok {
			sent = append(sent, handed) // mouth: the frame goes to the WHIP track
		}
		arrived := handed.Add(250 * time.Millisecond) // ear: the packet reaches the listener
		if d, ok := listener.Add(pcm, arrived); ok {
			dets = append(dets, d)
		}
	}
	// Mark 0 starts on the listener's very first frame, so the listener
	// never heard its frequency quiet before: it is not counted. Listeners
	// that join before the bot starts see every mark.
	s := latency.Summarize(latency.Match(sent, dets, cfg))
	fmt.Printf("sent %d, matched %d, p50 %v, p99 %v\n", len(sent), s.N, s.P50.Round(time.Millisecond), s.P99.Round(time.Millisecond))
	// Output: sent 10, matched 9, p50 250ms, p99 250ms
}
