// Package feed turns an audio file into what a speaker sends: a sequence of
// Opus packets played out in real time. WAV files are resampled to 48 kHz
// and encoded with libopus in 20 ms frames; Ogg Opus files are sent as they
// are. `amphi speak` and the load tool's speaker bots use it.
package feed

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"time"

	"gopkg.in/hraban/opus.v2"

	"github.com/amphi-audio/amphi"
	"github.com/amphi-audio/amphi/internal/ogg"
	"github.com/amphi-audio/amphi/internal/opuspkt"
	"github.com/amphi-audio/amphi/internal/wav"
)

// maxPackets bounds a file held in memory: an hour of 20 ms packets.
const maxPackets = 180000

// Packet is one Opus packet and how much audio it holds.
type Packet struct {
	Data     []byte
	Duration time.Duration
}

// Load reads a WAV or Ogg Opus file into packets. WAV audio is encoded at
// bitrate bit/s (zero means 32000).
func Load(path string, bitrate int) ([]Packet, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("feed: %w", err)
	}
	defer f.Close()
	br := bufio.NewReader(f)
	magic, err := br.Peek(4)
	if err != nil {
		return nil, fmt.Errorf("feed: %s: %w", path, err)
	}
	switch string(magic) {
	case "RIFF":
		a, err := wav.Read(br)
		if err != nil {
			return nil, fmt.Errorf("feed: %s: %w", path, err)
		}
		return Encode(a, bitrate)
	case "OggS":
		pkts, err := readOggOpus(br)
		if err != nil {
			return nil, fmt.Errorf("feed: %s: %w", path, err)
		}
		return pkts, nil
	default:
		return nil, fmt.Errorf("feed: %s is neither WAV nor Ogg", path)
	}
}

func readOggOpus(r io.Reader) ([]Packet, error) {
	rd := ogg.NewReader(r)
	var out []Packet
	for i := 0; ; i++ {
		pkt, _, err := rd.ReadPacket()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, err
		}
		switch {
		case i == 0:
			if _, err := ogg.ParseOpusHead(pkt); err != nil {
				return nil, fmt.Errorf("not Ogg Opus: %w", err)
			}
			continue
		case i == 1: // OpusTags
			continue
		case len(out) >= maxPackets:
			return nil, fmt.Errorf("longer than %d packets", maxPackets)
		}
		n, ok := opuspkt.Samples(pkt)
		if !ok {
			return nil, fmt.Errorf("packet %d is not Opus", len(out))
		}
		out = append(out, Packet{Data: pkt, Duration: time.Duration(n) * time.Second / amphi.SampleRate})
	}
	if len(out) == 0 {
		return nil, errors.New("no audio packets")
	}
	return out, nil
}

// Encode encodes PCM audio as 20 ms mono Opus packets at 48 kHz.
func Encode(a *wav.Audio, bitrate int) ([]Packet, error) {
	if bitrate == 0 {
		bitrate = 32000
	}
	if a.Channels < 1 || a.SampleRate < 8000 || a.SampleRate > 192000 {
		return nil, fmt.Errorf("feed: unsupported WAV: %d channels at %d Hz", a.Channels, a.SampleRate)
	}
	mono := Resample(Downmix(a.Samples, a.Channels), a.SampleRate, amphi.SampleRate)
	if len(mono)/amphi.FrameSamples > maxPackets {
		return nil, fmt.Errorf("feed: longer than %d packets", maxPackets)
	}
	enc, err := opus.NewEncoder(amphi.SampleRate, 1, opus.AppAudio)
	if err != nil {
		return nil, fmt.Errorf("feed: encoder: %w", err)
	}
	if err := enc.SetBitrate(bitrate); err != nil {
		return nil, fmt.Errorf("feed: bitrate %d: %w", bitrate, err)
	}
	frame := make([]int16, amphi.FrameSamples)
	buf := make([]byte, 1500)
	var out []Packet
	for off := 0; off < len(mono); off += amphi.FrameSamples {
		n := copy(frame, mono[off:])
		clear(frame[n:]) // pad the last frame with silence
		m, err := enc.Encode(frame, buf)
		if err != nil {
			return nil, fmt.Errorf("feed: encode: %w", err)
		}
		out = append(out, Packet{Data: append([]byte(nil), buf[:m]...), Duration: amphi.FrameDuration})
	}
	if len(out) == 0 {
		return nil, errors.New("feed: no audio")
	}
	return out, nil
}

// Downmix averages interleaved channels into one.
func Downmix(samples []int16, channels int) []int16 {
	if channels == 1 {
		return samples
	}
	out := make([]int16, len(samples)/channels)
	for i := range out {
		var sum int
		for c := range channels {
			sum += int(samples[i*channels+c])
		}
		out[i] = int16(sum / channels)
	}
	return out
}

// Resample converts mono audio between rates by linear interpolation: enough
// for speech and test tones, which is what files fed to a stage are.
func Resample(in []int16, from, to int) []int16 {
	if from == to || len(in) == 0 {
		return in
	}
	n := int(int64(len(in)) * int64(to) / int64(from))
	out := make([]int16, n)
	for i := range out {
		pos := float64(i) * float64(from) / float64(to)
		j := int(pos)
		frac := pos - float64(j)
		a := float64(in[j])
		b := a
		if j+1 < len(in) {
			b = float64(in[j+1])
		}
		out[i] = int16(a + (b-a)*frac)
	}
	return out
}

// Play calls send with each packet at the moment it is due, against an
// absolute schedule so delays never accumulate, looping if asked, until the
// packets run out, ctx is done (not an error) or send fails.
func Play(ctx context.Context, pkts []Packet, loop bool, send func(Packet) error) error {
	if len(pkts) == 0 {
		return errors.New("feed: nothing to play")
	}
	sch := NewSchedule()
	defer sch.Stop()
	for {
		for _, p := range pkts {
			if !sch.Wait(ctx) {
				return nil
			}
			if err := send(p); err != nil {
				return err
			}
			sch.Advance(p.Duration)
		}
		if !loop {
			return nil
		}
	}
}

// Schedule paces a real-time sender against an absolute clock, so a late
// wake-up is made up by the next one and delays never accumulate.
type Schedule struct {
	timer *time.Timer
	due   time.Time
}

// NewSchedule returns a schedule whose first slot is due now. Stop it when
// done.
func NewSchedule() *Schedule {
	return &Schedule{timer: time.NewTimer(time.Hour), due: time.Now()}
}

// Wait blocks until the current slot is due. It reports false, at once,
// when ctx is done.
func (s *Schedule) Wait(ctx context.Context) bool {
	if wait := time.Until(s.due); wait > 0 {
		s.timer.Reset(wait)
		select {
		case <-ctx.Done():
			return false
		case <-s.timer.C:
			return true
		}
	}
	return ctx.Err() == nil
}

// Advance makes the next slot due d after the current one.
func (s *Schedule) Advance(d time.Duration) { s.due = s.due.Add(d) }

// Stop releases the schedule's timer.
func (s *Schedule) Stop() { s.timer.Stop() }
