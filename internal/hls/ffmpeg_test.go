package hls

import (
	"bytes"
	"context"
	"encoding/binary"
	"os/exec"
	"sync"
	"testing"
	"time"

	"gopkg.in/hraban/opus.v2"

	"github.com/amphi-audio/amphi"
	"github.com/amphi-audio/amphi/internal/ogg"
	"github.com/amphi-audio/amphi/internal/program"
	"github.com/amphi-audio/amphi/internal/tone"
)

// toneProgram makes the live program of a 440 Hz tone as the mixer and the
// program do: libopus at 32 kbit/s, 20 ms frames, packed five to an Ogg
// page.
func toneProgram(t testing.TB, seconds int) []*program.Chunk {
	t.Helper()
	enc, err := opus.NewEncoder(amphi.SampleRate, 1, opus.AppAudio)
	if err == nil {
		err = enc.SetBitrate(32000)
	}
	if err != nil {
		t.Fatal(err)
	}
	packer := program.NewPacker(0x5eed)
	pcm := make([]int16, amphi.FrameSamples)
	out := make([]byte, 1500)
	var phase float64
	var chunks []*program.Chunk
	for range seconds * amphi.SampleRate / amphi.FrameSamples {
		pcm, phase = tone.Sine(pcm, 440, 0.3, amphi.SampleRate, phase)
		n, err := enc.Encode(pcm, out)
		if err != nil {
			t.Fatal(err)
		}
		c, err := packer.Add(bytes.Clone(out[:n]))
		if err != nil {
			t.Fatal(err)
		}
		if c != nil {
			chunks = append(chunks, c)
		}
	}
	return chunks
}

// addChunk feeds one program chunk to seg as an edge would: the packets of
// its page and the page's granule position.
func addChunk(seg *Segmenter, c *program.Chunk) error {
	h, err := ogg.ParseHeader(c.Page)
	if err != nil {
		return err
	}
	packets, err := ogg.AppendPackets(nil, c.Page)
	if err != nil {
		return err
	}
	return seg.Add(h.Granule, packets)
}

// TestFFmpegPlaysTheLiveStream serves a tone's program over loopback, one
// segment of it at once and the rest in real time, and has ffmpeg play 3 s
// of the stream from its playlist: the second segment it gets live, by
// reloading the playlist.
func TestFFmpegPlaysTheLiveStream(t *testing.T) {
	ffmpeg, err := exec.LookPath("ffmpeg")
	if err != nil {
		t.Skip("ffmpeg not on PATH")
	}
	chunks := toneProgram(t, 30)
	cfg := DefaultConfig()
	cfg.PreSkip = program.PreSkip
	seg, err := NewSegmenter(cfg)
	if err != nil {
		t.Fatal(err)
	}
	const ahead = 20 // chunks fed before ffmpeg starts: 2 s
	for _, c := range chunks[:ahead] {
		if err := addChunk(seg, c); err != nil {
			t.Fatal(err)
		}
	}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		tick := time.NewTicker(amphi.ChunkDuration)
		defer tick.Stop()
		for _, c := range chunks[ahead:] {
			select {
			case <-stop:
				return
			case <-tick.C:
			}
			if err := addChunk(seg, c); err != nil {
				t.Error(err)
				return
			}
		}
	})
	defer wg.Wait()
	defer close(stop)
	srv := serve(t, seg, &Handler{})

	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, ffmpeg, "-nostdin", "-v", "error",
		"-i", srv.URL+"/hls/x/index.m3u8", "-t", "3", "-f", "s16le", "-ac", "1", "-ar", "48000", "-")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	raw, err := cmd.Output()
	if err != nil {
		t.Fatalf("ffmpeg: %v\n%s", err, stderr.Bytes())
	}
	if stderr.Len() > 0 {
		t.Logf("ffmpeg said:\n%s", stderr.Bytes())
	}
	pcm := make([]int16, len(raw)/2)
	if _, err := binary.Decode(raw, binary.LittleEndian, pcm); err != nil {
		t.Fatal(err)
	}
	if got := float64(len(pcm)) / amphi.SampleRate; got < 2.9 {
		t.Fatalf("ffmpeg decoded %.2f s, want 3 s", got)
	}
	if !tone.Present(pcm, amphi.SampleRate, 440, 660, 880) {
		t.Errorf("the 440 Hz tone is not in what ffmpeg played (power %.4g, 660 Hz %.4g)",
			tone.Goertzel(pcm, amphi.SampleRate, 440), tone.Goertzel(pcm, amphi.SampleRate, 660))
	}
}
