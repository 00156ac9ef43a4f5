// Package opuspkt reads the framing of Opus packets (RFC 6716 §3): how much
// audio a packet holds and whether it breaks the rules libopus enforces. It
// uses only the standard library.
package opuspkt

// MaxSamples is the longest an Opus packet may be: 120 ms at 48 kHz.
const MaxSamples = 5760

// maxFrameBytes is the largest single Opus frame RFC 6716 allows (R2).
const maxFrameBytes = 1275

// Samples returns how many 48 kHz samples an Opus packet holds, and false
// when the packet breaks the framing rules R1-R7 of RFC 6716 section 3.4.
// libopus refuses exactly those packets, so the mixer checks here to drop
// garbage before it takes a jitter buffer slot, and Ogg readers and writers
// use the count for granule positions.
func Samples(p []byte) (int, bool) {
	if len(p) < 1 { // R1
		return 0, false
	}
	toc := p[0]
	fs := frameSamples(toc >> 3)
	body := p[1:]
	switch toc & 3 {
	case 0: // one frame
		if len(body) > maxFrameBytes {
			return 0, false
		}
		return fs, true
	case 1: // two frames of equal size
		if len(body)%2 != 0 || len(body)/2 > maxFrameBytes { // R3
			return 0, false
		}
		return 2 * fs, true
	case 2: // two frames, the first one's length coded
		l, k, ok := frameLen(body)
		if !ok || l > len(body)-k { // R4
			return 0, false
		}
		if len(body)-k-l > maxFrameBytes {
			return 0, false
		}
		return 2 * fs, true
	default: // code 3: M frames, CBR or VBR, optional padding
		if len(body) < 1 {
			return 0, false
		}
		h := body[0]
		body = body[1:]
		m := int(h & 0x3f)
		if m == 0 || m*fs > MaxSamples { // R5
			return 0, false
		}
		if h&0x40 != 0 {
			pad := 0
			for {
				if len(body) == 0 {
					return 0, false
				}
				b := body[0]
				body = body[1:]
				if b != 255 {
					pad += int(b)
					break
				}
				pad += 254
			}
			if pad > len(body) {
				return 0, false
			}
			body = body[:len(body)-pad]
		}
		if h&0x80 != 0 { // VBR: M-1 coded lengths, the last frame takes the rest (R7)
			sum := 0
			for range m - 1 {
				l, k, ok := frameLen(body)
				if !ok || l > len(body)-k {
					return 0, false
				}
				body = body[k:]
				sum += l
			}
			if sum > len(body) || len(body)-sum > maxFrameBytes {
				return 0, false
			}
		} else if len(body)%m != 0 || len(body)/m > maxFrameBytes { // R6
			return 0, false
		}
		return m * fs, true
	}
}

// frameLen reads a one- or two-byte frame length (RFC 6716 section 3.2.1)
// and returns it with the number of bytes it took.
func frameLen(b []byte) (length, n int, ok bool) {
	switch {
	case len(b) < 1:
		return 0, 0, false
	case b[0] < 252:
		return int(b[0]), 1, true
	case len(b) < 2:
		return 0, 0, false
	default:
		return 4*int(b[1]) + int(b[0]), 2, true
	}
}

// frameSamples is the duration of one frame, in 48 kHz samples, for a TOC
// configuration number (RFC 6716 table 2).
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
