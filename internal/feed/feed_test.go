package feed

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"gopkg.in/hraban/opus.v2"

	"github.com/amphi-audio/amphi"
	"github.com/amphi-audio/amphi/internal/ogg"
	"github.com/amphi-audio/amphi/internal/opuspkt"
	"github.com/amphi-audio/amphi/internal/tone"
	"github.com/amphi-audio/amphi/internal/wav"
)

// writeWAV writes d of a freq Hz tone, the same in every channel.
func writeWAV(t *testing.T, rate, channels int, freq float64, d time.Duration) string {
	t.Helper()
	frames := int(d * time.Duration(rate) / time.Second)
	mono, _ := tone.Sine(make([]int16, frames), freq, 0.5, rate, 0)
	a := &wav.Audio{SampleRate: rate, Channels: channels, Samples: make([]int16, 0, frames*channels)}
	for _, s := range mono {
		for range channels {
			a.Samples = append(a.Samples, s)
		}
	}
	path := filepath.Join(t.TempDir(), "tone.wav")
	if err := os.WriteFile(path, wav.Append(nil, a), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// decode decodes packets with libopus into 48 kHz mono.
func decode(t *testing.T, pkts []Packet, channels int) []int16 {
	t.Helper()
	dec, err := opus.NewDecoder(amphi.SampleRate, channels)
	if err != nil {
		t.Fatal(err)
	}
	var out []int16
	buf := make([]int16, 5760*channels)
	for i, p := range pkts {
		n, err := dec.Decode(p.Data, buf)
		if err != nil {
			t.Fatalf("packet %d: %v", i, err)
		}
		out = append(out, Downmix(buf[:n*channels], channels)...)
	}
	return out
}

func TestLoadWAVGivesTwentyMillisecondPacketsOfTheTone(t *testing.T) {
	tests := []struct {
		rate, channels int
		d              time.Duration
		wantPackets    int
	}{
		{44100, 2, time.Second, 50},
		{44100, 2, 510 * time.Millisecond, 26}, // the last frame padded
		{48000, 1, 200 * time.Millisecond, 10},
		{16000, 1, 300 * time.Millisecond, 15},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprintf("%dHz_%dch_%v", tt.rate, tt.channels, tt.d), func(t *testing.T) {
			pkts, err := Load(writeWAV(t, tt.rate, tt.channels, 1000, tt.d), 0)
			if err != nil {
				t.Fatal(err)
			}
			if len(pkts) != tt.wantPackets {
				t.Fatalf("%d packets, want %d", len(pkts), tt.wantPackets)
			}
			for i, p := range pkts {
				if p.Duration != 20*time.Millisecond {
					t.Fatalf("packet %d lasts %v", i, p.Duration)
				}
				if n, ok := opuspkt.Samples(p.Data); !ok || n != amphi.FrameSamples {
					t.Fatalf("packet %d holds %d samples (valid %v)", i, n, ok)
				}
			}
			pcm := decode(t, pkts, 1)
			// Skip the encoder's start-up; look at the steady tone.
			steady := pcm[2*amphi.FrameSamples : len(pcm)-amphi.FrameSamples]
			if !tone.Present(steady, amphi.SampleRate, 1000, 440, 2000) {
				t.Errorf("1000 Hz tone not found in the decoded audio (power %.3f)", tone.Goertzel(steady, amphi.SampleRate, 1000))
			}
		})
	}
}

func TestLoadOggOpusFromFFmpegGivesItsPackets(t *testing.T) {
	ffmpeg, err := exec.LookPath("ffmpeg")
	if err != nil {
		t.Skip("ffmpeg not on PATH")
	}
	path := filepath.Join(t.TempDir(), "sine.opus")
	out, err := exec.CommandContext(t.Context(), ffmpeg, "-nostdin", "-v", "error",
		"-f", "lavfi", "-i", "sine=f=440:d=1", "-ac", "1", "-c:a", "libopus", "-f", "ogg", path).CombinedOutput()
	if err != nil {
		t.Fatalf("ffmpeg: %v\n%s", err, out)
	}
	pkts, err := Load(path, 0)
	if err != nil {
		t.Fatal(err)
	}
	var total time.Duration
	for _, p := range pkts {
		total += p.Duration
	}
	// One second plus the encoder's pre-skip, in whole 20 ms packets.
	if total < time.Second || total > time.Second+40*time.Millisecond || pkts[0].Duration != 20*time.Millisecond {
		t.Errorf("%d packets lasting %v in all", len(pkts), total)
	}
	pcm := decode(t, pkts, 1)
	if !tone.Present(pcm[2*amphi.FrameSamples:], amphi.SampleRate, 440, 1000) {
		t.Error("440 Hz tone not found in ffmpeg's packets")
	}
}

func TestLoadRefusesBadFiles(t *testing.T) {
	dir := t.TempDir()
	write := func(name string, b []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, b, 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	page := func(seq uint32, flags byte, pkt []byte) []byte {
		b, err := ogg.AppendPage(nil, &ogg.Page{Flags: flags, Serial: 7, Seq: seq, Packets: [][]byte{pkt}})
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	opusHeaders := append(page(0, ogg.FlagBOS, ogg.AppendOpusHead(nil, 1, 312, 48000)), page(1, 0, ogg.AppendOpusTags(nil, "test"))...)
	silentWAV := wav.Append(nil, &wav.Audio{SampleRate: 48000, Channels: 1})
	lowRateWAV := wav.Append(nil, &wav.Audio{SampleRate: 4000, Channels: 1, Samples: make([]int16, 4000)})

	tests := []struct {
		name    string
		path    string
		wantIs  error
		wantMsg string
	}{
		{"missing", filepath.Join(dir, "none.wav"), os.ErrNotExist, ""},
		{"empty", write("empty", nil), nil, "EOF"},
		{"text", write("text.txt", []byte("hello, world")), nil, "neither WAV nor Ogg"},
		{"broken WAV", write("broken.wav", []byte("RIFF\x04\x00\x00\x00JUNK")), wav.ErrNotWAV, ""},
		{"WAV without samples", write("silent.wav", silentWAV), nil, "no audio"},
		{"WAV below 8 kHz", write("low.wav", lowRateWAV), nil, "unsupported WAV"},
		{"Ogg Vorbis", write("vorbis.ogg", page(0, ogg.FlagBOS, []byte("\x01vorbis\x00\x00\x00\x00\x01"))), ogg.ErrNotOpusHead, ""},
		{"Ogg Opus without audio", write("headers.opus", opusHeaders), nil, "no audio packets"},
		{"Ogg Opus with an empty packet", write("empty-packet.opus", append(bytes(opusHeaders), page(2, 0, nil)...)), nil, "is not Opus"},
		{"Ogg Opus torn", write("torn.opus", append(bytes(opusHeaders), page(2, 0, []byte{0xf8, 1, 2})[:20]...)), nil, "unexpected EOF"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			pkts, err := Load(tt.path, 0)
			if err == nil {
				t.Fatalf("Load succeeded with %d packets", len(pkts))
			}
			if tt.wantIs != nil && !errors.Is(err, tt.wantIs) {
				t.Errorf("err = %v, want it to wrap %v", err, tt.wantIs)
			}
			if !strings.Contains(err.Error(), tt.wantMsg) || !strings.HasPrefix(err.Error(), "feed: ") {
				t.Errorf("err = %q, want a feed error saying %q", err, tt.wantMsg)
			}
		})
	}
}

func bytes(b []byte) []byte { return slices.Clone(b) }

func TestDownmixAveragesChannels(t *testing.T) {
	tests := []struct {
		name     string
		in       []int16
		channels int
		want     []int16
	}{
		{"mono is unchanged", []int16{1, -2, 3}, 1, []int16{1, -2, 3}},
		{"stereo", []int16{1, 3, -2, -4, 32767, 32767}, 2, []int16{2, -3, 32767}},
		{"opposite phases cancel", []int16{1000, -1000}, 2, []int16{0}},
		{"three channels", []int16{3, 6, 9}, 3, []int16{6}},
		{"empty", nil, 2, []int16{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := Downmix(tt.in, tt.channels); !slices.Equal(got, tt.want) {
				t.Errorf("Downmix = %v, want %v", got, tt.want)
			}
		})
	}
}

func TestResampleInterpolatesLinearly(t *testing.T) {
	tests := []struct {
		name     string
		in       []int16
		from, to int
		want     []int16
	}{
		{"same rate", []int16{1, 2, 3}, 48000, 48000, []int16{1, 2, 3}},
		{"up by two", []int16{0, 100}, 24000, 48000, []int16{0, 50, 100, 100}},
		{"down by two", []int16{0, 1, 2, 3}, 96000, 48000, []int16{0, 2}},
		{"empty", nil, 44100, 48000, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := Resample(tt.in, tt.from, tt.to); !slices.Equal(got, tt.want) {
				t.Errorf("Resample = %v, want %v", got, tt.want)
			}
		})
	}
	if n := len(Resample(make([]int16, 44100), 44100, 48000)); n != 48000 {
		t.Errorf("a second at 44.1 kHz resampled to %d samples", n)
	}
}

func packets(n int) []Packet {
	pkts := make([]Packet, n)
	for i := range pkts {
		pkts[i] = Packet{Data: []byte{byte(i)}, Duration: 20 * time.Millisecond}
	}
	return pkts
}

func TestPlaySendsEachPacketWhenDue(t *testing.T) {
	pkts := packets(50)
	start := time.Now()
	var at []time.Duration
	var order []byte
	err := Play(t.Context(), pkts, false, func(p Packet) error {
		at = append(at, time.Since(start))
		order = append(order, p.Data[0])
		return nil
	})
	elapsed := time.Since(start)
	if err != nil {
		t.Fatal(err)
	}
	if len(at) != 50 {
		t.Fatalf("send called %d times, want 50", len(at))
	}
	for i := range at {
		if order[i] != byte(i) {
			t.Fatalf("packet %d sent in place %d", order[i], i)
		}
		// A timer never fires early, so no packet may go before its time.
		if due := time.Duration(i) * 20 * time.Millisecond; at[i] < due {
			t.Errorf("packet %d sent at %v, due at %v", i, at[i], due)
		}
	}
	// The last packet is due at 980 ms; the bound is loose so a busy
	// machine does not fail it, but a schedule that drifts or races ahead
	// does.
	if elapsed < 900*time.Millisecond || elapsed > 2*time.Second {
		t.Errorf("50 packets of 20 ms took %v, want about 1 s", elapsed)
	}
}

func TestPlayLoopsUntilCanceled(t *testing.T) {
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	var order []byte
	done := make(chan error, 1)
	go func() {
		done <- Play(ctx, packets(3), true, func(p Packet) error {
			order = append(order, p.Data[0])
			if len(order) == 7 {
				cancel()
			}
			return nil
		})
	}()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Play after cancel = %v, want nil", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Play did not return after cancel")
	}
	if want := []byte{0, 1, 2, 0, 1, 2, 0}; !slices.Equal(order, want) {
		t.Errorf("sent %v, want %v", order, want)
	}
}

func TestPlayReturnsPromptlyOnCancelWhileWaiting(t *testing.T) {
	ctx, cancel := context.WithCancel(t.Context())
	long := []Packet{{Data: []byte{0}, Duration: time.Hour}, {Data: []byte{1}, Duration: time.Hour}}
	done := make(chan error, 1)
	sent := make(chan struct{}, 2)
	go func() {
		done <- Play(ctx, long, false, func(Packet) error { sent <- struct{}{}; return nil })
	}()
	<-sent // the first packet went; the second is an hour away
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Play = %v, want nil", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Play did not return after cancel")
	}
	if len(sent) != 0 {
		t.Error("the second packet was sent after cancel")
	}
}

func TestPlayStopsOnSendError(t *testing.T) {
	boom := errors.New("peer gone")
	calls := 0
	err := Play(t.Context(), packets(5), false, func(Packet) error {
		calls++
		if calls == 2 {
			return boom
		}
		return nil
	})
	if !errors.Is(err, boom) || calls != 2 {
		t.Errorf("Play = %v after %d sends, want the send error after 2", err, calls)
	}
	if err := Play(t.Context(), nil, false, func(Packet) error { return nil }); err == nil {
		t.Error("Play of no packets succeeded")
	}
}

func BenchmarkEncodeSecond(b *testing.B) {
	a := &wav.Audio{SampleRate: 44100, Channels: 2, Samples: make([]int16, 2*44100)}
	mono, _ := tone.Sine(make([]int16, 44100), 440, 0.5, 44100, 0)
	for i, s := range mono {
		a.Samples[2*i], a.Samples[2*i+1] = s, s
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Encode(a, 0); err != nil {
			b.Fatal(err)
		}
	}
}
