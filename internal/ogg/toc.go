package ogg

import "errors"

// PacketSamples returns the number of 48 kHz samples an Opus packet holds,
// from its TOC byte and frame count (RFC 6716 §3.1): what a granule position
// advances by.
func PacketSamples(pkt []byte) (int, error) {
	if len(pkt) == 0 {
		return 0, errors.New("ogg: empty Opus packet")
	}
	toc := pkt[0]
	var frames int
	switch toc & 3 {
	case 0:
		frames = 1
	case 1, 2:
		frames = 2
	default:
		if len(pkt) < 2 {
			return 0, errors.New("ogg: Opus code 3 packet without a frame count")
		}
		frames = int(pkt[1] & 0x3f)
	}
	n := frames * frameSamples(toc>>3)
	if n > 5760 { // 120 ms, the most a packet may hold
		return 0, errors.New("ogg: Opus packet longer than 120 ms")
	}
	return n, nil
}

// frameSamples is the length at 48 kHz of one frame of a TOC configuration.
func frameSamples(config byte) int {
	switch {
	case config < 12: // SILK: 10, 20, 40, 60 ms
		return [4]int{480, 960, 1920, 2880}[config&3]
	case config < 16: // hybrid: 10, 20 ms
		return [2]int{480, 960}[config&1]
	default: // CELT: 2.5, 5, 10, 20 ms
		return [4]int{120, 240, 480, 960}[config&3]
	}
}
