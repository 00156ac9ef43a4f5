package live

import (
	"fmt"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
	"time"

	"gopkg.in/hraban/opus.v2"

	"github.com/amphi-audio/amphi"
	"github.com/amphi-audio/amphi/internal/mix"
	"github.com/amphi-audio/amphi/internal/program"
	"github.com/amphi-audio/amphi/internal/tone"
)

// discard is a Publisher that drops every chunk.
type discard struct{}

func (discard) PublishChunk(string, *program.Chunk) error { return nil }

// processCPU returns the CPU time the process has used, user and system.
func processCPU(b *testing.B) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// talk returns a second of 20 ms Opus packets of a tone, as a speaker's
// encoder makes them.
func talk(b *testing.B, freq float64) [][]byte {
	enc, err := opus.NewEncoder(amphi.SampleRate, 1, opus.AppVoIP)
	if err != nil {
		b.Fatal(err)
	}
	pcm := make([]int16, amphi.FrameSamples)
	var phase float64
	var out [][]byte
	for range 50 {
		pcm, phase = tone.Sine(pcm, freq, 0.3, amphi.SampleRate, phase)
		buf := make([]byte, 1500)
		n, err := enc.Encode(pcm, buf)
		if err != nil {
			b.Fatal(err)
		}
		out = append(out, buf[:n])
	}
	return out
}

// BenchmarkSpaceOnAirCPU measures what a space on air costs in CPU, in
// real time: the mixer's clock, a decode per speaker, the mix and encode,
// packing, the recorder's writes and syncs, and the stage's hand-over of
// each speaker's packets (pushed here straight into the mixer, as the
// stage's RTP readers do; forwarding to the other speakers is
// BenchmarkDeliver in internal/stage). One op is one second of several
// spaces on air; cores/space is the process's CPU time over wall time, per
// space.
func BenchmarkSpaceOnAirCPU(b *testing.B) {
	const spaces = 4
	for _, speakers := range []int{0, amphi.MaxSpeakers} {
		b.Run(fmt.Sprintf("speakers=%d", speakers), func(b *testing.B) {
			dir := b.TempDir()
			cfg := DefaultConfig()
			cfg.IdleEnd = 0
			var (
				sessions []*Session
				sources  [][]*mix.Source
			)
			for i := range spaces {
				sp := &amphi.Space{ID: fmt.Sprint("s", i), Serial: uint32(i)}
				s, err := Start(sp, filepath.Join(dir, sp.ID+".opus"), discard{}, cfg)
				if err != nil {
					b.Fatal(err)
				}
				defer s.Stop()
				sessions = append(sessions, s)
				var srcs []*mix.Source
				for k := range speakers {
					src, err := s.Mixer().AddSource(fmt.Sprint("k", k))
					if err != nil {
						b.Fatal(err)
					}
					srcs = append(srcs, src)
				}
				sources = append(sources, srcs)
			}
			packets := talk(b, 440)
			stop := make(chan struct{})
			var wg sync.WaitGroup
			for _, srcs := range sources {
				if len(srcs) == 0 {
					continue
				}
				// One pusher per space, every 20 ms, like its speakers'
				// packets arriving.
				wg.Go(func() {
					tick := time.NewTicker(amphi.FrameDuration)
					defer tick.Stop()
					for i := 0; ; i++ {
						select {
						case <-stop:
							return
						case <-tick.C:
						}
						for _, src := range srcs {
							src.Push(uint16(i), uint32(i*amphi.FrameSamples), packets[i%len(packets)])
						}
					}
				})
			}
			time.Sleep(500 * time.Millisecond) // past the start's allocations
			cpu0, wall0 := processCPU(b), time.Now()
			for b.Loop() {
				time.Sleep(time.Second)
			}
			cpu, wall := processCPU(b)-cpu0, time.Since(wall0)
			close(stop)
			wg.Wait()
			var stalls uint64
			for _, s := range sessions {
				stalls += s.Mixer().Stats().Stalls
			}
			b.ReportMetric(cpu.Seconds()/wall.Seconds()/spaces, "cores/space")
			b.ReportMetric(float64(stalls), "stalls")
		})
	}
}
