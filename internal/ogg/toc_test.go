package ogg

import "testing"

func TestPacketSamplesReadsTheTOC(t *testing.T) {
	for _, tc := range []struct {
		name string
		pkt  []byte
		want int
		ok   bool
	}{
		{"CELT 20 ms silence", []byte{0xF8, 0xFF, 0xFE}, 960, true},
		{"SILK 60 ms", []byte{3 << 3}, 2880, true},
		{"hybrid 10 ms two frames", []byte{12<<3 | 1}, 960, true},
		{"CELT 2.5 ms code 3 with 6 frames", []byte{16<<3 | 3, 6}, 720, true},
		{"code 3 over 120 ms", []byte{3<<3 | 3, 3}, 0, false},
		{"code 3 without count", []byte{16<<3 | 3}, 0, false},
		{"empty", nil, 0, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := PacketSamples(tc.pkt)
			if (err == nil) != tc.ok || got != tc.want {
				t.Fatalf("PacketSamples(%x) = %d, %v; want %d, ok=%v", tc.pkt, got, err, tc.want, tc.ok)
			}
		})
	}
}
