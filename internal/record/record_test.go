package record

import (
	"bytes"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/amphi-audio/amphi"
	"github.com/amphi-audio/amphi/internal/ogg"
	"github.com/amphi-audio/amphi/internal/program"
)

const serial = 0x7ec0

func testConfig() Config {
	cfg := DefaultConfig()
	cfg.Logger = slog.New(slog.DiscardHandler)
	return cfg
}

// chunks packs frames 20 ms frames into chunks, finishing the program if end.
func chunks(t testing.TB, frames int, end bool) []*program.Chunk {
	t.Helper()
	return chunksOf(t, bytes.Repeat([]byte{0x42}, 60), frames, end)
}

// chunksOf is chunks with every frame the Opus packet frame.
func chunksOf(t testing.TB, frame []byte, frames int, end bool) []*program.Chunk {
	t.Helper()
	p := program.NewPacker(serial)
	var out []*program.Chunk
	for range frames {
		c, err := p.Add(frame)
		if err != nil {
			t.Fatal(err)
		}
		if c != nil {
			out = append(out, c)
		}
	}
	if end {
		c, err := p.Finish()
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, c)
	}
	return out
}

// record writes cs to a new recording and closes it.
func record(t *testing.T, cs []*program.Chunk) (string, *Recorder) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "space.opus")
	r, err := Create(path, program.Headers(serial), testConfig())
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range cs {
		r.Write(c)
	}
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}
	return path, r
}

// audio is the playable duration of n 20 ms frames after the pre-skip.
func audio(frames int) time.Duration {
	return time.Duration(frames*960-program.PreSkip) * time.Second / amphi.SampleRate
}

func TestRecordingIsWholeValidOggOpus(t *testing.T) {
	cs := chunks(t, 52, true)
	path, r := record(t, cs)
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	n, granule, pages, err := ogg.ValidPrefix(bytes.NewReader(data))
	if err != nil {
		t.Fatal(err)
	}
	if n != int64(len(data)) || pages != 2+len(cs) || granule != 52*960 {
		t.Errorf("ValidPrefix = %d bytes, %d pages, granule %d; file %d bytes, want %d pages", n, pages, granule, len(data), 2+len(cs))
	}
	if !bytes.HasPrefix(data, program.Headers(serial)) {
		t.Error("file does not start with the header pages")
	}
	if r.Bytes() != int64(len(data)) {
		t.Errorf("Bytes %d, file %d", r.Bytes(), len(data))
	}
	if r.Duration() != audio(52) {
		t.Errorf("Duration %v, want %v", r.Duration(), audio(52))
	}
	if r.Dropped() != 0 || r.Err() != nil {
		t.Errorf("Dropped %d Err %v", r.Dropped(), r.Err())
	}
	if err := r.Close(); err != nil { // a second Close must not panic
		t.Logf("second Close: %v", err)
	}
}

func TestCreateRefusesExistingFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "taken.opus")
	if err := os.WriteFile(path, []byte("mine"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := Create(path, program.Headers(serial), testConfig()); !errors.Is(err, os.ErrExist) {
		t.Fatalf("err = %v, want ErrExist", err)
	}
	if b, _ := os.ReadFile(path); string(b) != "mine" {
		t.Error("Create overwrote an existing file")
	}
}

func TestRecoverCutsToLastCompletePageAndEndsTheFile(t *testing.T) {
	cs := chunks(t, 50, false) // 10 chunks, no end: a crash
	path, _ := record(t, cs)
	whole, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	headers := len(program.Headers(serial))
	withoutLast := len(whole) - len(cs[len(cs)-1].Page)

	tests := []struct {
		name   string
		data   []byte
		keep   int // bytes of the recording kept before the EOS page
		frames int
	}{
		{"intact", whole, len(whole), 50},
		{"torn last page", whole[:len(whole)-3], withoutLast, 45},
		{"torn in the last header", whole[:20], headers, 0},
		{"garbage appended", append(bytes.Clone(whole), "\x00\x01garbage after a crash"...), len(whole), 50},
		{"torn page then garbage", append(bytes.Clone(whole[:len(whole)-10]), bytes.Repeat([]byte{0xee}, 100)...), withoutLast, 45},
		{"empty", nil, headers, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := filepath.Join(t.TempDir(), "crashed.opus")
			if err := os.WriteFile(p, tt.data, 0o644); err != nil {
				t.Fatal(err)
			}
			size, d, err := Recover(p, program.Headers(serial))
			if err != nil {
				t.Fatal(err)
			}
			got, err := os.ReadFile(p)
			if err != nil {
				t.Fatal(err)
			}
			wantDur := granuleDuration(int64(tt.frames * amphi.FrameSamples))
			if size != int64(len(got)) || d != wantDur {
				t.Errorf("Recover = %d bytes %v; the file holds %d, want %v", size, d, len(got), wantDur)
			}
			if !bytes.Equal(got[:tt.keep], whole[:tt.keep]) || len(got) != tt.keep+ogg.HeaderSize {
				t.Errorf("file is %d bytes after Recover, want the first %d of the recording and an empty page", len(got), tt.keep)
			}
			if s := checkStream(t, got); !s.eos || s.frames != tt.frames {
				t.Errorf("file holds %d frames, EOS %v; want %d and EOS", s.frames, s.eos, tt.frames)
			}
			// Recovering twice changes nothing.
			if size2, d2, err := Recover(p, program.Headers(serial)); err != nil || size2 != size || d2 != d {
				t.Errorf("second Recover = %d %v %v", size2, d2, err)
			}
		})
	}
}

func TestRecoverReportsMissingFile(t *testing.T) {
	if _, _, err := Recover(filepath.Join(t.TempDir(), "none.opus"), program.Headers(serial)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("err = %v, want ErrNotExist", err)
	}
}

func TestWriteAfterDiskFailureIsCounted(t *testing.T) {
	path := filepath.Join(t.TempDir(), "space.opus")
	r, err := Create(path, program.Headers(serial), testConfig())
	if err != nil {
		t.Fatal(err)
	}
	// Closing the file under the writer makes every later write fail, as a
	// dead disk would.
	r.f.Close()
	cs := chunks(t, 25, false)
	for _, c := range cs {
		r.Write(c)
	}
	err = r.Close()
	if err == nil || r.Err() == nil {
		t.Fatalf("Close = %v, Err = %v; want the write error", err, r.Err())
	}
	if !errors.Is(r.Err(), os.ErrClosed) {
		t.Errorf("Err = %v, want it to wrap os.ErrClosed", r.Err())
	}
	// The first chunk's write failed; the others were dropped unwritten.
	if r.Dropped() != int64(len(cs)-1) {
		t.Errorf("Dropped %d, want %d", r.Dropped(), len(cs)-1)
	}
	if r.Duration() != 0 || r.Bytes() != int64(len(program.Headers(serial))) {
		t.Errorf("Duration %v Bytes %d after a failed write", r.Duration(), r.Bytes())
	}
}

func TestWriteDropsWhenQueueIsFull(t *testing.T) {
	path := filepath.Join(t.TempDir(), "space.opus")
	cfg := testConfig()
	cfg.Queue = 1
	// The writer reads the clock after each chunk; holding it there is a
	// disk that stalls after the first chunk.
	parked, release := make(chan struct{}), make(chan struct{})
	calls := 0 // only the writer goroutine calls Now
	cfg.Now = func() time.Time {
		if calls++; calls == 2 {
			close(parked)
			<-release
		}
		return time.Now()
	}
	r, err := Create(path, program.Headers(serial), cfg)
	if err != nil {
		t.Fatal(err)
	}
	cs := chunks(t, 50, false)
	r.Write(cs[0])
	<-parked
	for _, c := range cs[1:] {
		r.Write(c) // never blocks: one fits the queue, the rest drop
	}
	if r.Dropped() != int64(len(cs)-2) {
		t.Errorf("Dropped %d, want %d", r.Dropped(), len(cs)-2)
	}
	close(release)
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	want := append(program.Headers(serial), cs[0].Page...)
	want = append(want, cs[1].Page...)
	if !bytes.Equal(data, want) {
		t.Errorf("file holds %d bytes, want the headers and the first two chunks (%d)", len(data), len(want))
	}
	if r.Duration() != audio(10) {
		t.Errorf("Duration %v, want %v", r.Duration(), audio(10))
	}
}

// BenchmarkRecorderWrite measures what recording costs the mixer: a Write
// that hands a chunk to the writer goroutine, or drops it when the disk is
// behind (reported as dropped/op), or discards it while paused.
func BenchmarkRecorderWrite(b *testing.B) {
	for _, bb := range []struct {
		name string
		// before readies the recorder; cs[0] is written there, so the
		// measured writes run after the pause when there is one.
		before func(r *Recorder, first *program.Chunk)
	}{
		{"recording", func(*Recorder, *program.Chunk) {}},
		{"resumed", func(r *Recorder, first *program.Chunk) {
			// Every later page is renumbered and moved back on the
			// writer goroutine; Write itself does the same work.
			r.Pause()
			r.Write(first)
			r.Resume()
		}},
		{"paused", func(r *Recorder, _ *program.Chunk) { r.Pause() }},
	} {
		b.Run(bb.name, func(b *testing.B) {
			r, err := Create(filepath.Join(b.TempDir(), "bench.opus"), program.Headers(serial), testConfig())
			if err != nil {
				b.Fatal(err)
			}
			cs := chunks(b, 5*64, false)
			bb.before(r, cs[0])
			b.ReportAllocs()
			for i := 0; b.Loop(); i++ {
				r.Write(cs[i%len(cs)])
			}
			b.StopTimer()
			if err := r.Close(); err != nil {
				b.Fatal(err)
			}
			b.ReportMetric(float64(r.Dropped())/float64(b.N), "dropped/op")
		})
	}
}
