package main

import (
	"bytes"
	"context"
	"encoding/binary"
	"io"
	"log/slog"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/pion/rtp"
	"gopkg.in/hraban/opus.v2"

	"github.com/amphi-audio/amphi"
	"github.com/amphi-audio/amphi/internal/client"
	"github.com/amphi-audio/amphi/internal/ogg"
	"github.com/amphi-audio/amphi/internal/tone"
	"github.com/amphi-audio/amphi/internal/whip"
)

// toneLevel is the amplitude of test tones, of full scale.
const toneLevel = 0.3

// MustRunMain starts the real server in-process on a free loopback port
// (and /ops on another) with a temporary data directory and an embedded
// NATS on a free port.
func MustRunMain(t testing.TB, dataDir string) *Main {
	t.Helper()
	m := NewMain()
	m.Config.Addr, m.Config.OpsAddr = "127.0.0.1:0", "127.0.0.1:0"
	m.Config.DataDir = dataDir
	manySpaces(m)
	m.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	if testing.Verbose() {
		m.Logger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	if err := m.Run(context.Background()); err != nil {
		m.Close()
		t.Fatal(err)
	}
	return m
}

// toneSpeaker joins a space over WHIP and plays freq during [on, off) of its
// own timeline and silence otherwise, for total, encoding in real time as a
// browser would.
type toneSpeaker struct {
	sess *whip.Session

	mu       sync.Mutex
	heard    map[int][]*rtp.Packet // by slot: what the other speakers sent
	toneFrom time.Time
	toneTo   time.Time
}

// freshSpeaker mints another speaker token for the space: each token is one
// place on the stage.
func freshSpeaker(t *testing.T, c *client.Client, sp *client.Created) string {
	t.Helper()
	tok, err := c.MintSpeakerToken(t.Context(), sp.ID, sp.HostToken)
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

func dialSpeaker(t testing.TB, ctx context.Context, c *client.Client, spaceID, token string) *toneSpeaker {
	t.Helper()
	sess, err := whip.Dial(ctx, c.WHIPURL(spaceID), token, whip.Config{})
	if err != nil {
		t.Fatalf("whip dial: %v", err)
	}
	s := &toneSpeaker{sess: sess, heard: map[int][]*rtp.Packet{}}
	sess.OnPacket(func(slot int, p *rtp.Packet) {
		s.mu.Lock()
		defer s.mu.Unlock()
		s.heard[slot] = append(s.heard[slot], p.Clone())
	})
	select {
	case <-sess.Connected():
	case <-time.After(10 * time.Second):
		t.Fatal("speaker did not connect")
	}
	t.Cleanup(func() { sess.Close(context.Background()) })
	return s
}

func (s *toneSpeaker) play(ctx context.Context, freq float64, on, off, total time.Duration) error {
	enc, err := opus.NewEncoder(amphi.SampleRate, 1, opus.AppAudio)
	if err != nil {
		return err
	}
	pcm := make([]int16, amphi.FrameSamples)
	buf := make([]byte, 1500)
	var phase float64
	start := time.Now()
	for i := 0; time.Duration(i)*20*time.Millisecond < total; i++ {
		at := time.Duration(i) * 20 * time.Millisecond
		if wait := time.Until(start.Add(at)); wait > 0 {
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-time.After(wait):
			}
		}
		if at >= on && at < off {
			if at == on {
				s.mu.Lock()
				s.toneFrom = time.Now()
				s.mu.Unlock()
			}
			pcm, phase = tone.Sine(pcm, freq, toneLevel, amphi.SampleRate, phase)
		} else {
			if at == off {
				s.mu.Lock()
				s.toneTo = time.Now()
				s.mu.Unlock()
			}
			clear(pcm)
		}
		n, err := enc.Encode(pcm, buf)
		if err != nil {
			return err
		}
		if err := s.sess.WriteOpus(buf[:n], 20*time.Millisecond); err != nil {
			return err
		}
	}
	return nil
}

// heardPCM decodes what the speaker received from the others, slot by slot
// in sequence order, and returns the slot with the most audio.
// playUntilStopped plays freq on its own goroutine, for a minute at most,
// until the returned function is called.
func (s *toneSpeaker) playUntilStopped(t *testing.T, ctx context.Context, freq float64) (stop func()) {
	return inBackground(t, ctx, "speaker", func(ctx context.Context) error {
		return s.play(ctx, freq, 0, time.Hour, time.Minute)
	})
}

func (s *toneSpeaker) heardPCM(t *testing.T) []int16 {
	s.mu.Lock()
	defer s.mu.Unlock()
	var best []int16
	for _, pkts := range s.heard {
		sort.Slice(pkts, func(i, j int) bool { return int16(pkts[i].SequenceNumber-pkts[j].SequenceNumber) < 0 })
		payloads := make([][]byte, 0, len(pkts))
		for _, p := range pkts {
			payloads = append(payloads, p.Payload)
		}
		if pcm := decode(t, payloads); len(pcm) > len(best) {
			best = pcm
		}
	}
	return best
}

func decode(t *testing.T, packets [][]byte) []int16 {
	t.Helper()
	dec, err := opus.NewDecoder(amphi.SampleRate, 1)
	if err != nil {
		t.Fatal(err)
	}
	out := make([]int16, 0, len(packets)*amphi.FrameSamples)
	frame := make([]int16, 5760)
	for _, p := range packets {
		n, err := dec.Decode(p, frame)
		if err != nil {
			t.Fatalf("decode: %v", err)
		}
		out = append(out, frame[:n]...)
	}
	return out
}

// packet is one packet a listener received, placed on the program timeline.
type packet struct {
	data []byte
	end  int64 // granule position at the packet's end
}

// timeline decodes a listener's packets into PCM indexed by program sample:
// pcm[i] is program sample first+i.
func timeline(t *testing.T, pkts []packet) (pcm []int16, first int64) {
	t.Helper()
	datas := make([][]byte, len(pkts))
	for i, p := range pkts {
		datas[i] = p.data
		if i > 0 && p.end != pkts[i-1].end+amphi.FrameSamples {
			t.Fatalf("packet %d ends at granule %d, after %d: the timeline jumps", i, p.end, pkts[i-1].end)
		}
	}
	return decode(t, datas), pkts[0].end - amphi.FrameSamples
}

// assertTone checks freq is present, and other absent, in every 100 ms of
// [from, to) program time, and that no 20 ms frame in it is silent: a
// dropout there would be a gap in the program.
func assertTone(t *testing.T, name string, pcm []int16, first int64, from, to time.Duration, freq, other float64) {
	t.Helper()
	idx := func(d time.Duration) int { return int(int64(d)*amphi.SampleRate/int64(time.Second) - first) }
	lo, hi := idx(from), idx(to)
	if lo < 0 || hi > len(pcm) || hi-lo < 4800 {
		t.Fatalf("%s: window [%v, %v) is outside the %d samples received from %d", name, from, to, len(pcm), first)
	}
	// On a busy machine a speaker's packets may come late and be
	// concealed: a few missing blocks are the network's, not a gap in the
	// program (whose continuity the listener's timeline proves). A tenth
	// of the blocks, or a quarter of the frames, is not.
	at := func(i int) time.Duration { return time.Duration(int64(i)+first) * time.Second / amphi.SampleRate }
	var blocks int
	var missing []int
	for i := lo; i+4800 <= hi; i += 4800 {
		blocks++
		if !tone.Present(pcm[i:i+4800], amphi.SampleRate, freq, other) {
			missing = append(missing, i)
		}
	}
	if len(missing) > blocks/10 {
		t.Errorf("%s: %v Hz not found (or %v Hz too) in %d of %d blocks of 100 ms, the first at program time %v", name, freq, other, len(missing), blocks, at(missing[0]))
	}
	var frames int
	var silent []int
	for i := lo; i+amphi.FrameSamples <= hi; i += amphi.FrameSamples {
		frames++
		if lvl := tone.Level(pcm[i : i+amphi.FrameSamples]); lvl < toneLevel/10 {
			silent = append(silent, i)
		}
	}
	if len(silent) > frames/4 {
		t.Errorf("%s: %d of %d frames of 20 ms are silent, the first at program time %v: gaps in the program", name, len(silent), frames, at(silent[0]))
	} else if len(silent) > 0 {
		t.Logf("%s: %d of %d frames of 20 ms silent (concealed late packets), the first at %v", name, len(silent), frames, at(silent[0]))
	}
}

// TestTwoSpeakersReachListenersAndRecording is the backbone end to end: two
// real WHIP speakers with different tones, a listener on the progressive
// stream, the recording, and ffmpeg as an independent decoder of both.
func TestTwoSpeakersReachListenersAndRecording(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	m := MustRunMain(t, t.TempDir())
	defer m.Close()
	c := client.New(m.URL())
	sp, err := c.Create(ctx, "Two tones", nil)
	if err != nil {
		t.Fatal(err)
	}

	// The listener joins first so it receives the whole conversation.
	var (
		mu      sync.Mutex
		pkts    []packet
		stream  bytes.Buffer
		listenc = make(chan *client.ListenStats, 1)
	)
	go func() {
		st, err := c.Listen(ctx, sp.ID, client.ListenOptions{
			Out: &lockedWriter{mu: &mu, w: &stream},
			OnPacket: func(p []byte, granule int64) {
				mu.Lock()
				defer mu.Unlock()
				pkts = append(pkts, packet{data: append([]byte(nil), p...)})
				// Packets of one page share its granule: fix them up below.
				pkts[len(pkts)-1].end = granule
			},
		})
		if err != nil {
			t.Errorf("listen: %v", err)
		}
		listenc <- st
	}()

	a := dialSpeaker(t, ctx, c, sp.ID, sp.SpeakerToken)
	b := dialSpeaker(t, ctx, c, sp.ID, freshSpeaker(t, c, sp))
	var wg sync.WaitGroup
	const total = 5 * time.Second
	for _, p := range []struct {
		s       *toneSpeaker
		freq    float64
		on, off time.Duration
	}{{a, 440, 500 * time.Millisecond, 2500 * time.Millisecond}, {b, 1000, 2500 * time.Millisecond, 4500 * time.Millisecond}} {
		wg.Go(func() {
			if err := p.s.play(ctx, p.freq, p.on, p.off, total); err != nil {
				t.Errorf("speaker %v Hz: %v", p.freq, err)
			}
		})
	}
	wg.Wait()
	ended, err := c.End(ctx, sp.ID, sp.HostToken)
	if err != nil {
		t.Fatal(err)
	}
	var st *client.ListenStats
	select {
	case st = <-listenc:
	case <-ctx.Done():
		t.Fatal("the listener's stream did not end with the space")
	}
	if !st.Ended || st.Holes != 0 {
		t.Errorf("listener: ended=%v holes=%d, want a clean end and no holes", st.Ended, st.Holes)
	}

	// Place each packet on the program timeline: a page's granule is the
	// end of its last packet.
	mu.Lock()
	for i := len(pkts) - 1; i > 0; i-- {
		if pkts[i-1].end == pkts[i].end || pkts[i-1].end > pkts[i].end-amphi.FrameSamples {
			pkts[i-1].end = pkts[i].end - amphi.FrameSamples
		}
	}
	pcm, first := timeline(t, pkts)
	mu.Unlock()

	// Speaker wall times on the program's timeline: it starts when the space
	// does. The stage and mixer add well under 300 ms.
	const margin = 300 * time.Millisecond
	start := *ended.StartedAt
	for _, w := range []struct {
		name        string
		s           *toneSpeaker
		freq, other float64
	}{{"speaker A", a, 440, 1000}, {"speaker B", b, 1000, 440}} {
		from, to := w.s.toneFrom.Sub(start)+margin, w.s.toneTo.Sub(start)-margin
		assertTone(t, w.name, pcm, first, from, to, w.freq, w.other)
	}

	// Each speaker heard the other through the SFU.
	for _, h := range []struct {
		name string
		s    *toneSpeaker
		freq float64
	}{{"A hears B", a, 1000}, {"B hears A", b, 440}} {
		heard := h.s.heardPCM(t)
		found := 0
		for i := 0; i+4800 <= len(heard); i += 4800 {
			if tone.Present(heard[i:i+4800], amphi.SampleRate, h.freq) {
				found++
			}
		}
		if found < 10 { // the other's tone lasts 2 s: 20 blocks of 100 ms
			t.Errorf("%s: %v Hz in %d blocks of 100 ms, want at least 10", h.name, h.freq, found)
		}
	}

	// The recording: served after the end, as long as the space was live.
	rec := fetch(t, ctx, sp.RecordingURL)
	live := ended.EndedAt.Sub(*ended.StartedAt)
	got := recordingDuration(t, rec)
	// The API's start and end stamps and the mixer's clock are read at
	// different moments: a busy machine puts up to a scheduling delay
	// between them.
	if diff := (got - live).Abs(); diff > live/100+250*time.Millisecond {
		t.Errorf("recording holds %v, the space was live %v: off by %v, more than 1%% + 250 ms", got, live, diff)
	}

	// Players seek in the recording with Range requests.
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, sp.RecordingURL, nil)
	req.Header.Set("Range", "bytes=100-199")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	part, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusPartialContent || !bytes.Equal(part, rec[100:200]) {
		t.Errorf("Range bytes=100-199: %d with %d bytes, want 206 with the file's bytes 100-199", resp.StatusCode, len(part))
	}

	// An independent decoder takes both.
	mu.Lock()
	streamBytes := stream.Bytes()
	mu.Unlock()
	ffmpegDecodes(t, "live stream", streamBytes)
	ffmpegDecodes(t, "recording", rec)
}

type lockedWriter struct {
	mu *sync.Mutex
	w  io.Writer
}

func (l *lockedWriter) Write(b []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(b)
}

func fetch(t *testing.T, ctx context.Context, url string) []byte {
	t.Helper()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %d %v", url, resp.StatusCode, err)
	}
	return b
}

// recordingDuration reads an Ogg Opus file's playable length from its last
// granule position, less the pre-skip.
func recordingDuration(t *testing.T, b []byte) time.Duration {
	t.Helper()
	n, granule, pages, err := ogg.ValidPrefix(bytes.NewReader(b))
	if err != nil || n != int64(len(b)) || pages < 3 {
		t.Fatalf("recording: %d of %d bytes valid in %d pages: %v", n, len(b), pages, err)
	}
	rd := ogg.NewReader(bytes.NewReader(b))
	pkt, _, err := rd.ReadPacket()
	if err != nil {
		t.Fatal(err)
	}
	head, err := ogg.ParseOpusHead(pkt)
	if err != nil {
		t.Fatal(err)
	}
	return time.Duration(granule-int64(head.PreSkip)) * time.Second / amphi.SampleRate
}

// ffmpegDecodes checks ffmpeg decodes the Ogg Opus bytes without an error,
// and returns how much audio it decoded.
func ffmpegDecodes(t *testing.T, what string, b []byte) time.Duration {
	t.Helper()
	return time.Duration(len(ffmpegPCM(t, what, b))) * time.Second / amphi.SampleRate
}

// ffmpegPCM returns what ffmpeg decodes from an Ogg Opus file, 48 kHz
// mono, failing the test on any complaint of ffmpeg's.
func ffmpegPCM(t *testing.T, what string, b []byte) []int16 {
	t.Helper()
	path, err := exec.LookPath("ffmpeg")
	if err != nil {
		t.Skip("ffmpeg is not installed: the README's test command installs it")
	}
	f := filepath.Join(t.TempDir(), "in.opus")
	if err := os.WriteFile(f, b, 0o644); err != nil {
		t.Fatal(err)
	}
	var pcm, msgs bytes.Buffer
	cmd := exec.Command(path, "-nostdin", "-v", "error", "-i", f, "-f", "s16le", "-ac", "1", "-ar", "48000", "-")
	cmd.Stdout, cmd.Stderr = &pcm, &msgs
	if err := cmd.Run(); err != nil || len(bytes.TrimSpace(msgs.Bytes())) > 0 {
		t.Errorf("ffmpeg decoding the %s: %v\n%s", what, err, msgs.Bytes())
	}
	out := make([]int16, pcm.Len()/2)
	for i := range out {
		out[i] = int16(binary.LittleEndian.Uint16(pcm.Bytes()[2*i:]))
	}
	return out
}
