package ogg

import (
	"bytes"
	"errors"
	"io"
	"slices"
	"testing"
)

// FuzzReader feeds arbitrary bytes to the reader. Besides not panicking, it
// checks that ReadPage, ReadPacket and ValidPrefix agree: the pages
// ReadPage returns before its first error make up exactly the prefix
// ValidPrefix measures, and each re-encodes to its original bytes.
func FuzzReader(f *testing.F) {
	var stream []byte
	for _, p := range goldenPages() {
		stream, _ = AppendPage(stream, p)
	}
	f.Add(stream)
	f.Add(stream[:len(stream)-2])
	f.Add(slices.Concat(rawPage(0, NoGranule, 1, 0, []byte{255}, fill(255, 1)),
		rawPage(FlagContinued, 9, 1, 1, []byte{1, 0}, []byte{2})))
	f.Add([]byte("OggS"))
	f.Fuzz(func(t *testing.T, data []byte) {
		n, granule, pages, err := ValidPrefix(bytes.NewReader(data))
		if err != nil {
			t.Fatalf("ValidPrefix on a bytes.Reader: %v", err)
		}
		if n < 0 || n > int64(len(data)) {
			t.Fatalf("ValidPrefix n = %d for %d bytes", n, len(data))
		}

		r := NewReader(bytes.NewReader(data))
		var rewritten []byte
		got, lastGranule := 0, NoGranule
		for {
			p, err := r.ReadPage()
			if err != nil {
				if err != io.EOF && !errors.Is(err, io.ErrUnexpectedEOF) && !errors.Is(err, ErrCapture) &&
					!errors.Is(err, ErrVersion) && !errors.Is(err, ErrChecksum) {
					t.Fatalf("unexpected error kind: %v", err)
				}
				break
			}
			got++
			if p.Granule != NoGranule {
				lastGranule = p.Granule
			}
			if rewritten, err = AppendPage(rewritten, p); err != nil {
				t.Fatalf("re-encoding page %d: %v", got, err)
			}
		}
		if got != pages || lastGranule != granule || !bytes.Equal(rewritten, data[:n]) {
			t.Fatalf("ReadPage saw %d pages (granule %d, %d bytes), ValidPrefix %d pages (granule %d, %d bytes)",
				got, lastGranule, len(rewritten), pages, granule, n)
		}

		r = NewReader(bytes.NewReader(data))
		total := 0
		for {
			pkt, _, err := r.ReadPacket()
			if err != nil {
				break
			}
			if len(pkt) > MaxPacketSize {
				t.Fatalf("packet of %d bytes", len(pkt))
			}
			total += len(pkt)
		}
		if total > len(data) {
			t.Fatalf("packets hold %d bytes from %d of input", total, len(data))
		}
	})
}
