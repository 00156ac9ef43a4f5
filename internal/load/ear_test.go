package load

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"

	"github.com/amphi-audio/amphi"
	"github.com/amphi-audio/amphi/internal/latency"
	"github.com/amphi-audio/amphi/internal/program"
	"gopkg.in/hraban/opus.v2"
)

// earStream is a marker stream as the program would carry it: the marker's
// frames encoded as the bot does, packed into pages as the mixer does, and
// each page's publication time, the instant its last frame's audio ends.
type earStream struct {
	pages [][]byte
	at    []time.Time // when pages[i] exists
	sent  []time.Time // mark k's send time
}

// lead is the silence before the bot's first frame: the listener has
// heard the mark frequencies quiet before the first mark.
const earLead = 10

func makeEarStream(t testing.TB, cfg latency.MarkerConfig, frames int, t0 time.Time) earStream {
	t.Helper()
	enc, err := opus.NewEncoder(amphi.SampleRate, 1, opus.AppAudio)
	if err != nil {
		t.Fatal(err)
	}
	if err := enc.SetBitrate(speakBitrate); err != nil {
		t.Fatal(err)
	}
	m := latency.NewMarker(cfg)
	p := program.NewPacker(1)
	var s earStream
	var pcm []int16
	buf := make([]byte, maxOpusPacket)
	for i := -earLead; i < frames; i++ {
		var ok bool
		pcm, _, ok = m.Frame(pcm, i)
		if ok {
			s.sent = append(s.sent, t0.Add(time.Duration(i)*amphi.FrameDuration))
		}
		n, err := enc.Encode(pcm, buf)
		if err != nil {
			t.Fatal(err)
		}
		c, err := p.Add(append([]byte(nil), buf[:n]...))
		if err != nil {
			t.Fatal(err)
		}
		if c != nil {
			s.pages = append(s.pages, bytes.Clone(c.Page))
			s.at = append(s.at, t0.Add(time.Duration(i+1)*amphi.FrameDuration))
		}
	}
	return s
}

// listenTo feeds pages to a sampled listener as listen does, through the
// page scanner, page i arriving at arrive(i); skip leaves pages out.
func listenTo(t *testing.T, e *ear, s earStream, arrive func(i int) time.Time, skip func(i int) bool) {
	t.Helper()
	var sc pageScanner
	started := false
	for i, pg := range s.pages {
		if skip != nil && skip(i) {
			continue
		}
		now := arrive(i)
		for data := pg; len(data) > 0; {
			// Cut each page in two reads, as the network may.
			c, p, ok, err := sc.Next(data[:min(len(data), 37)])
			if err != nil {
				t.Fatal(err)
			}
			e.gather(data[:c])
			data = data[c:]
			if !ok {
				continue
			}
			if !started {
				e.start(now)
				started = true
			}
			e.hear(p, now)
		}
	}
}

func TestEarMeasuresTheDelayOfEachMark(t *testing.T) {
	t0 := time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC)
	const delay = 150 * time.Millisecond
	// Encoding and decoding delay the audio by 312 samples (6.5 ms); a
	// page exists once its fifth frame has been played.
	const codec = 312 * time.Second / amphi.SampleRate
	for _, tc := range []struct {
		name     string
		interval time.Duration
		skip     func(i int) bool
		min, max time.Duration // of every latency
	}{
		// Every mark starts a page: it waits for the page's 5 frames.
		{"marks at a page's start", time.Second, nil, delay + 100*time.Millisecond + codec, delay + 100*time.Millisecond + codec},
		// Marks walk through the page's 5 positions.
		{"marks walking through the pages", DefaultLatencyInterval, nil, delay + 20*time.Millisecond + codec, delay + 100*time.Millisecond + codec},
		// Lost pages are concealed and the marks after them still found.
		{"a page lost now and then", time.Second, func(i int) bool { return i%17 == 16 }, delay + 100*time.Millisecond + codec, delay + 100*time.Millisecond + codec},
	} {
		t.Run(tc.name, func(t *testing.T) {
			sc := DefaultScenario()
			sc.LatencyInterval = Duration(tc.interval)
			e, err := newEar(&sc)
			if err != nil {
				t.Fatal(err)
			}
			e.warmup = 0
			s := makeEarStream(t, markerConfig(&sc), 1000, t0)
			listenTo(t, e, s, func(i int) time.Time { return s.at[i].Add(delay) }, tc.skip)
			lats := latency.Match(s.sent, e.dets, markerConfig(&sc))
			// Mark 0 starts at once; a lost page takes at most the mark in it.
			lost := 0
			if tc.skip != nil {
				lost = 3
			}
			if len(lats) < len(s.sent)-lost || len(lats) != len(e.dets) {
				t.Errorf("%d latencies of %d detections of %d marks", len(lats), len(e.dets), len(s.sent))
			}
			for k, l := range lats {
				if l < tc.min-time.Millisecond || l > tc.max+time.Millisecond {
					t.Errorf("latency %d is %v, want %v to %v", k, l, tc.min, tc.max)
				}
			}
		})
	}
}

func TestEarIgnoresTheMarksOfTheBurst(t *testing.T) {
	t0 := time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC)
	sc := DefaultScenario()
	sc.LatencyInterval = Duration(time.Second)
	e, err := newEar(&sc)
	if err != nil {
		t.Fatal(err)
	}
	s := makeEarStream(t, markerConfig(&sc), 500, t0)
	// The listener joins 3 s in: the 3 s before arrive at once, as a
	// burst would, then the rest as published.
	join := t0.Add(3 * time.Second)
	listenTo(t, e, s, func(i int) time.Time {
		if s.at[i].Before(join) {
			return join
		}
		return s.at[i]
	}, nil)
	lats := latency.Match(s.sent, e.dets, markerConfig(&sc))
	if len(lats) == 0 {
		t.Fatal("no marks found")
	}
	for k, l := range lats {
		if l > 200*time.Millisecond {
			t.Errorf("latency %d is %v: a mark of the burst, measured against its arrival", k, l)
		}
	}
}

func TestReportMatchesDetectionsWithTheMarksSent(t *testing.T) {
	start := time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC)
	sc := DefaultScenario()
	sc.LatencyInterval = Duration(time.Second)
	var sent []time.Time
	for k := range 5 {
		sent = append(sent, start.Add(time.Duration(k)*time.Second+100*time.Millisecond))
	}
	// Two listeners hear each mark, 200 and 300 ms after it was sent, the
	// second one's detections merged from another share after the first's.
	var dets []latency.Detection
	for _, after := range []time.Duration{200 * time.Millisecond, 300 * time.Millisecond} {
		for k := range sent {
			dets = append(dets, latency.Detection{Slot: k, Arrived: sent[k].Add(after)})
		}
	}
	// A detection matching nothing sent: dropped.
	dets = append(dets, latency.Detection{Slot: 7, Arrived: start.Add(2 * time.Second)})
	r := &Report{Timeline: []Sample{{T: 1}, {T: 2}, {T: 3}, {T: 4}, {T: 5}, {T: 6}}, LatencyListeners: 2, Detections: dets}
	r.measureLatency(&sc, sent, start)
	l := r.Latency
	if l == nil || r.Detections != nil {
		t.Fatalf("latency %+v, %d detections left", l, len(r.Detections))
	}
	want := Latency{N: 10, P50: Duration(200 * time.Millisecond), P99: Duration(300 * time.Millisecond), Max: Duration(300 * time.Millisecond),
		Sent: 5, Listeners: 2, Interval: Duration(time.Second)}
	if *l != want {
		t.Errorf("latency %+v, want %+v", *l, want)
	}
	var page, text strings.Builder
	if err := WriteChart(&page, r); err != nil || !strings.Contains(page.String(), "Mouth-to-ear latency") {
		t.Errorf("chart without latency: %v", err)
	}
	r.WriteText(&text)
	if !strings.Contains(text.String(), "latency    p50 200ms, p99 300ms, max 300ms (10 marks, 2 listeners)\n") {
		t.Errorf("text report:\n%s", text.String())
	}
	// Mark k arrives in second k+1; each second's median of 200 and 300 ms
	// is the lower (nearest rank).
	for _, s := range r.Timeline {
		want := Duration(200 * time.Millisecond)
		if s.T == 6 {
			want = 0
		}
		if s.Latency != want {
			t.Errorf("second %d: latency %v, want %v", s.T, s.Latency, want)
		}
	}
}

func TestRunRefusesLatencyWithoutASpeakerBot(t *testing.T) {
	sc := DefaultScenario()
	sc.Server, sc.SpaceID, sc.Listeners, sc.Duration = "http://127.0.0.1:1", "abc", 1, Duration(time.Second)
	sc.LatencySample = 1
	_, err := Run(context.Background(), sc, Config{})
	if err == nil || !strings.Contains(err.Error(), "speaker bot") || amphi.ErrorCode(err) != amphi.EInvalid {
		t.Fatalf("err = %v, want an invalid error: no bot to send marks", err)
	}
}

// BenchmarkEarPage is a sampled listener's added cost per page (100 ms of
// the program): gathering it, parsing its packets, decoding them and
// looking for marks. Steady state allocates nothing.
func BenchmarkEarPage(b *testing.B) {
	sc := DefaultScenario()
	sc.LatencyInterval = Duration(DefaultLatencyInterval)
	s := makeEarStream(b, markerConfig(&sc), 500, time.Unix(0, 0))
	e, err := newEar(&sc)
	if err != nil {
		b.Fatal(err)
	}
	var scan pageScanner
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		pg := s.pages[i%len(s.pages)]
		_, p, _, _ := scan.Next(pg)
		e.gather(pg)
		e.hear(p, s.at[i%len(s.at)])
		i++
	}
}
