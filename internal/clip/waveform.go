package clip

import (
	"bytes"
	"errors"
	"fmt"
	"image"
	"image/color"
	"image/png"
	"io"

	"gopkg.in/hraban/opus.v2"

	"github.com/amphi-audio/amphi/internal/ogg"
	"github.com/amphi-audio/amphi/internal/opuspkt"
)

// Waveform draws the Ogg Opus stream in r as a PNG of width by height: a
// bar per column, as tall as the loudest sample it covers. Link previews
// show it (og:image); it is drawn once per clip and kept.
func Waveform(r io.Reader, width, height int) ([]byte, error) {
	rd := ogg.NewReader(r)
	head, err := readHead(rd)
	if err != nil {
		return nil, err
	}
	dec, err := opus.NewDecoder(rate, head.Channels)
	if err != nil {
		return nil, fmt.Errorf("clip: waveform: %w", err)
	}
	// Peaks of every 20 ms, gathered first: the columns spread them over
	// the width whatever the length.
	var peaks []int16
	pcm := make([]int16, opuspkt.MaxSamples*head.Channels)
	for {
		pkt, _, err := rd.ReadPacket()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("clip: waveform: %w", err)
		}
		n, err := dec.Decode(pkt, pcm)
		if err != nil {
			continue // a packet libopus refuses draws nothing
		}
		peak := int16(0)
		for _, v := range pcm[:n*head.Channels] {
			peak = max(peak, v, -max(v, -32767))
		}
		peaks = append(peaks, peak)
	}
	img := image.NewPaletted(image.Rect(0, 0, width, height), color.Palette{
		color.RGBA{0xf4, 0xf1, 0xea, 0xff}, color.RGBA{0x2b, 0x4a, 0x6f, 0xff},
	})
	for x := range width {
		lo, hi := x*len(peaks)/width, (x+1)*len(peaks)/width
		peak := int16(0)
		for _, p := range peaks[lo:max(hi, min(lo+1, len(peaks)))] {
			peak = max(peak, p)
		}
		bar := max(1, int(peak)*height/32768)
		for y := (height - bar) / 2; y < (height+bar)/2; y++ {
			img.SetColorIndex(x, y, 1)
		}
	}
	var out bytes.Buffer
	if err := png.Encode(&out, img); err != nil {
		return nil, err
	}
	return out.Bytes(), nil
}

// readHead reads the identification and comment headers.
func readHead(rd *ogg.Reader) (ogg.OpusHead, error) {
	pkt, _, err := rd.ReadPacket()
	if err != nil {
		return ogg.OpusHead{}, ErrNotOpus
	}
	head, err := ogg.ParseOpusHead(pkt)
	if err != nil {
		return ogg.OpusHead{}, fmt.Errorf("%w: %v", ErrNotOpus, err)
	}
	if _, _, err := rd.ReadPacket(); err != nil {
		return ogg.OpusHead{}, fmt.Errorf("%w: no comment header", ErrNotOpus)
	}
	return head, nil
}
