package record

import (
	"bytes"
	"io"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/amphi-audio/amphi"
	"github.com/amphi-audio/amphi/internal/ogg"
	"github.com/amphi-audio/amphi/internal/program"
)

// silence is a 20 ms CELT-only mono Opus packet that decodes to silence:
// a frame ffmpeg decodes without complaint.
var silence = []byte{0xf8, 0xff, 0xfe}

// span is a half-open range of chunk indexes.
type span struct{ from, to int }

// recordPaused writes cs to a new recording, paused before each chunk whose
// index is in one of paused and resumed before the others, and closes it.
// Every Pause is made twice and every Resume is also made when not paused,
// which must change nothing.
func recordPaused(t *testing.T, cs []*program.Chunk, paused []span) (string, *Recorder) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "space.opus")
	r, err := Create(path, program.Headers(serial), testConfig())
	if err != nil {
		t.Fatal(err)
	}
	for i, c := range cs {
		if inSpans(i, paused) {
			r.Pause()
			r.Pause()
		} else {
			r.Resume()
		}
		if got, want := r.Recording(), !inSpans(i, paused); got != want {
			t.Fatalf("chunk %d: Recording() = %v, want %v", i, got, want)
		}
		r.Write(c)
	}
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}
	return path, r
}

func inSpans(i int, spans []span) bool {
	for _, s := range spans {
		if i >= s.from && i < s.to {
			return true
		}
	}
	return false
}

// stream is what checkStream found in a recording.
type stream struct {
	frames  int   // Opus packets after the headers
	granule int64 // of the last page
	pages   int
	eos     bool // the last page has EOS
}

// checkStream reads a recording page by page with ogg.Reader, which checks
// every CRC, and fails t unless it is one continuous Ogg Opus stream: page
// sequence numbers 0, 1, 2, … with no hole, one serial, BOS on the first
// page only, EOS on the last only, and each audio page's granule exactly
// the previous one plus its 20 ms packets, so granules strictly increase
// with no gap or jump (an empty page, the EOS one, keeps the last granule).
func checkStream(t *testing.T, data []byte) stream {
	t.Helper()
	if !bytes.HasPrefix(data, program.Headers(serial)) {
		t.Fatal("recording does not start with the header pages")
	}
	rd := ogg.NewReader(bytes.NewReader(data))
	var s stream
	for {
		p, err := rd.ReadPage()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("page %d: %v", s.pages, err)
		}
		if s.eos {
			t.Fatalf("page %d follows the EOS page", s.pages)
		}
		if p.Seq != uint32(s.pages) || p.Serial != serial {
			t.Fatalf("page %d has sequence number %d serial %#x", s.pages, p.Seq, p.Serial)
		}
		if bos := p.Flags&ogg.FlagBOS != 0; bos != (s.pages == 0) {
			t.Fatalf("page %d: BOS %v", s.pages, bos)
		}
		s.eos = p.Flags&ogg.FlagEOS != 0
		if s.pages >= 2 {
			want := s.granule + int64(len(p.Packets)*amphi.FrameSamples)
			if p.Granule != want {
				t.Fatalf("page %d (%d packets) has granule %d after %d, want %d", s.pages, len(p.Packets), p.Granule, s.granule, want)
			}
			s.frames += len(p.Packets)
			s.granule = p.Granule
		}
		s.pages++
	}
	n, granule, pages, err := ogg.ValidPrefix(bytes.NewReader(data))
	if err != nil || n != int64(len(data)) || pages != s.pages || (pages > 2 && granule != s.granule) {
		t.Fatalf("ValidPrefix = %d bytes, %d pages, granule %d, %v; want %d, %d, %d", n, pages, granule, err, len(data), s.pages, s.granule)
	}
	return s
}

// checkFFmpeg fails t unless ffprobe and ffmpeg read the recording at path
// without a message and find frames 20 ms frames in it, less the pre-skip,
// to within one frame.
func checkFFmpeg(t *testing.T, path string, frames int) {
	t.Helper()
	ffprobe, ffmpeg := lookTool(t, "ffprobe"), lookTool(t, "ffmpeg")
	want := time.Duration(frames)*amphi.FrameDuration - program.PreSkip*time.Second/amphi.SampleRate

	cmd := exec.CommandContext(t.Context(), ffprobe, "-v", "error",
		"-show_entries", "format=duration", "-of", "default=noprint_wrappers=1:nokey=1", path)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil || stderr.Len() > 0 {
		t.Fatalf("ffprobe: %v\n%s", err, stderr.Bytes())
	}
	secs, err := strconv.ParseFloat(strings.TrimSpace(string(out)), 64)
	if err != nil {
		t.Fatalf("ffprobe duration %q: %v", out, err)
	}
	if got := time.Duration(secs * float64(time.Second)); (got - want).Abs() > amphi.FrameDuration {
		t.Errorf("ffprobe duration %v, want %v within a frame", got, want)
	}

	cmd = exec.CommandContext(t.Context(), ffmpeg, "-nostdin", "-v", "error", "-i", path, "-f", "s16le", "-")
	stderr.Reset()
	cmd.Stderr = &stderr
	pcm, err := cmd.Output()
	if err != nil || stderr.Len() > 0 {
		t.Fatalf("ffmpeg decode: %v\n%s", err, stderr.Bytes())
	}
	wantSamples := frames*amphi.FrameSamples - program.PreSkip
	if got := len(pcm) / 2; math.Abs(float64(got-wantSamples)) > amphi.FrameSamples {
		t.Errorf("ffmpeg decoded %d samples, want %d within a frame", got, wantSamples)
	}
}

// lookTool returns the path of an external tool or skips the test.
func lookTool(t *testing.T, name string) string {
	t.Helper()
	path, err := exec.LookPath(name)
	if err != nil {
		t.Skipf("%s not on PATH", name)
	}
	return path
}

func TestPausedRecordingIsOneContinuousStream(t *testing.T) {
	// 52 frames make chunks 0 to 9 of five frames and the End chunk 10 of
	// two; 50 make an End chunk 10 with none.
	tests := []struct {
		name       string
		frames     int
		end        bool
		paused     []span
		wantFrames int
	}{
		{"never paused", 52, true, nil, 52},
		{"paused in the middle", 52, true, []span{{3, 6}}, 52 - 15},
		{"paused from the start", 52, true, []span{{0, 4}}, 52 - 20},
		{"paused twice", 52, true, []span{{1, 3}, {5, 8}}, 52 - 25},
		{"paused for one chunk", 52, true, []span{{9, 10}}, 52 - 5},
		{"paused at close", 52, true, []span{{8, 11}}, 52 - 12},
		{"paused for the end chunk only", 52, true, []span{{10, 11}}, 50},
		{"paused at close, empty end chunk", 50, true, []span{{7, 11}}, 50 - 15},
		{"paused throughout", 52, true, []span{{0, 11}}, 0},
		{"paused, then cut off without an end", 50, false, []span{{2, 5}}, 50 - 15},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cs := chunksOf(t, silence, tt.frames, tt.end)
			path, r := recordPaused(t, cs, tt.paused)
			data, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			s := checkStream(t, data)
			if s.frames != tt.wantFrames || s.granule != int64(tt.wantFrames*amphi.FrameSamples) {
				t.Errorf("file holds %d frames to granule %d, want %d frames", s.frames, s.granule, tt.wantFrames)
			}
			if s.eos != tt.end {
				t.Errorf("last page EOS %v, want %v", s.eos, tt.end)
			}
			wantDur := granuleDuration(int64(tt.wantFrames * amphi.FrameSamples))
			if r.Duration() != wantDur {
				t.Errorf("Duration %v, want %v", r.Duration(), wantDur)
			}
			if r.Bytes() != int64(len(data)) {
				t.Errorf("Bytes %d, file %d", r.Bytes(), len(data))
			}
			if r.Dropped() != 0 || r.Err() != nil {
				t.Errorf("Dropped %d Err %v; paused chunks are not drops", r.Dropped(), r.Err())
			}
			// Recover ends a file cut without its end with an empty EOS page.
			wantSize := int64(len(data))
			if !tt.end {
				wantSize += ogg.HeaderSize
			}
			if size, d, err := Recover(path, program.Headers(serial)); err != nil || size != wantSize || d != wantDur {
				t.Errorf("Recover = %d bytes %v %v, want %d bytes %v", size, d, err, wantSize, wantDur)
			}
			if tt.wantFrames > 0 {
				checkFFmpeg(t, path, tt.wantFrames)
			}
		})
	}
}

func TestPauseAtCloseStillEndsTheFile(t *testing.T) {
	cs := chunksOf(t, silence, 52, true)
	path := filepath.Join(t.TempDir(), "space.opus")
	r, err := Create(path, program.Headers(serial), testConfig())
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range cs[:len(cs)-1] {
		r.Write(c)
	}
	// The host pauses as the space ends: the End chunk's two frames are
	// left out, but its page still ends the stream.
	r.Pause()
	r.Write(cs[len(cs)-1])
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}
	if r.Recording() {
		t.Error("Recording() after Pause")
	}
	r.Resume() // after Close: harmless
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	s := checkStream(t, data)
	if !s.eos || s.frames != 50 || s.pages != 2+len(cs) {
		t.Fatalf("file has %d pages, %d frames, EOS %v; want %d pages, 50 frames and EOS", s.pages, s.frames, s.eos, 2+len(cs))
	}
	// The EOS page is empty and keeps the last granule.
	last, err := ogg.NewReader(bytes.NewReader(data[len(data)-ogg.HeaderSize:])).ReadPage()
	if err != nil {
		t.Fatalf("last %d bytes are not the empty EOS page: %v", ogg.HeaderSize, err)
	}
	if len(last.Packets) != 0 || last.Flags != ogg.FlagEOS || last.Granule != 50*amphi.FrameSamples {
		t.Errorf("last page %+v, want an empty EOS page at granule %d", last, 50*amphi.FrameSamples)
	}
	if r.Duration() != audio(50) {
		t.Errorf("Duration %v, want %v", r.Duration(), audio(50))
	}
	checkFFmpeg(t, path, 50)
}

func TestRecoverKeepsPausedRecordingContinuous(t *testing.T) {
	cs := chunksOf(t, silence, 50, false)          // a crash: no End chunk
	path, _ := recordPaused(t, cs, []span{{1, 4}}) // 35 frames written
	whole, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name       string
		cut        int // bytes torn off the end
		wantFrames int
	}{
		{"intact", 0, 35},
		{"torn last page", 3, 30},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := filepath.Join(t.TempDir(), "crashed.opus")
			if err := os.WriteFile(p, whole[:len(whole)-tt.cut], 0o644); err != nil {
				t.Fatal(err)
			}
			_, d, err := Recover(p, program.Headers(serial))
			if err != nil {
				t.Fatal(err)
			}
			if want := audio(tt.wantFrames); d != want {
				t.Errorf("Recover duration %v, want %v", d, want)
			}
			data, err := os.ReadFile(p)
			if err != nil {
				t.Fatal(err)
			}
			if s := checkStream(t, data); s.frames != tt.wantFrames {
				t.Errorf("recovered file holds %d frames, want %d", s.frames, tt.wantFrames)
			}
			checkFFmpeg(t, p, tt.wantFrames)
		})
	}
}

// TestPauseAndResumeRaceWithWrite toggles the pause from other goroutines
// while the mixer's goroutine writes and closes; run with -race. Whatever
// chunks the pause happened to catch, the file is one continuous stream and
// Duration is the audio in it.
func TestPauseAndResumeRaceWithWrite(t *testing.T) {
	cs := chunksOf(t, silence, 5*300+3, true)
	path := filepath.Join(t.TempDir(), "space.opus")
	r, err := Create(path, program.Headers(serial), testConfig()) // the queue holds them all
	if err != nil {
		t.Fatal(err)
	}
	stop := make(chan struct{})
	var wg, started sync.WaitGroup
	for range 2 {
		started.Add(1)
		wg.Go(func() {
			for i := 0; ; i++ {
				if i == 1 {
					started.Done()
				}
				select {
				case <-stop:
					return
				default:
				}
				if i%2 == 0 {
					r.Pause()
				} else {
					r.Resume()
				}
				_ = r.Recording()
				_ = r.Duration()
			}
		})
	}
	started.Wait()
	for _, c := range cs {
		r.Write(c)
		runtime.Gosched() // let the togglers in between chunks
	}
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}
	close(stop)
	wg.Wait()

	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	s := checkStream(t, data)
	t.Logf("%d of %d frames recorded", s.frames, 5*300+3)
	if !s.eos {
		t.Error("last page is not EOS")
	}
	if r.Duration() != granuleDuration(s.granule) || r.Bytes() != int64(len(data)) || r.Dropped() != 0 {
		t.Errorf("Duration %v Bytes %d Dropped %d; file has granule %d, %d bytes", r.Duration(), r.Bytes(), r.Dropped(), s.granule, len(data))
	}
}
