package opuspkt

import "testing"

func TestSamplesChecksRFC6716Framing(t *testing.T) {
	tests := []struct {
		name   string
		p      []byte
		want   int
		wantOK bool
	}{
		{"empty", nil, 0, false},
		{"celt 20ms code 0", []byte{0xf8, 1, 2}, 960, true},
		{"celt 2.5ms code 0 empty frame", []byte{0x80}, 120, true},
		{"silk nb 60ms", []byte{0x18, 1}, 2880, true},
		{"hybrid fb 10ms", []byte{0x70, 1}, 480, true},
		{"code 0 frame too long", append([]byte{0xf8}, make([]byte, 1276)...), 0, false},
		{"code 1 two frames", []byte{0xf9, 1, 2}, 1920, true},
		{"code 1 odd length", []byte{0xf9, 1, 2, 3}, 0, false},
		{"code 2 two frames", []byte{0xfa, 2, 1, 2, 3}, 1920, true},
		{"code 2 first frame overruns", []byte{0xfa, 5, 1, 2}, 0, false},
		{"code 2 missing length", []byte{0xfa}, 0, false},
		{"code 2 two-byte length cut", []byte{0xfa, 253}, 0, false},
		{"code 3 cbr 3 frames", []byte{0xfb, 3, 1, 2, 3}, 2880, true},
		{"code 3 no count byte", []byte{0xfb}, 0, false},
		{"code 3 zero frames", []byte{0xfb, 0}, 0, false},
		{"code 3 over 120ms", []byte{0xfb, 7}, 0, false},
		{"code 3 cbr uneven", []byte{0xfb, 2, 1, 2, 3}, 0, false},
		{"code 3 vbr", []byte{0xfb, 0x82, 1, 9, 8, 7}, 1920, true},
		{"code 3 vbr lengths overrun", []byte{0xfb, 0x82, 9, 1}, 0, false},
		{"code 3 padding", []byte{0xfb, 0x41, 2, 1, 0, 0}, 960, true},
		{"code 3 padding overruns", []byte{0xfb, 0x41, 9, 1}, 0, false},
		{"code 3 padding bytes missing", []byte{0xfb, 0x41}, 0, false},
		{"code 3 long padding", append([]byte{0xfb, 0x41, 255, 0}, make([]byte, 254)...), 960, true},
	}
	for _, tt := range tests {
		got, ok := Samples(tt.p)
		if got != tt.want || ok != tt.wantOK {
			t.Errorf("%s: Samples(% x) = %d, %v; want %d, %v", tt.name, tt.p, got, ok, tt.want, tt.wantOK)
		}
	}
}
