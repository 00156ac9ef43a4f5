package load

import (
	"bytes"
	"errors"
	"slices"
	"testing"

	"github.com/amphi-audio/amphi"
	"github.com/amphi-audio/amphi/internal/ogg"
	"github.com/amphi-audio/amphi/internal/program"
)

// programStream returns a program as a listener receives it: the header
// pages, then chunks of frames of varied sizes (one over 255 bytes, so it
// takes two lacing values), then the EOS page.
func programStream(t testing.TB, chunks int) []byte {
	t.Helper()
	stream := program.Headers(7)
	p := program.NewPacker(7)
	for i := range chunks * amphi.FramesPerChunk {
		frame := bytes.Repeat([]byte{byte(i)}, 40+i%7*60) // 40..400 bytes
		c, err := p.Add(frame)
		if err != nil {
			t.Fatal(err)
		}
		if c != nil {
			stream = append(stream, c.Page...)
		}
	}
	c, err := p.Finish()
	if err != nil {
		t.Fatal(err)
	}
	return append(stream, c.Page...)
}

// scanAll feeds stream to a scanner in pieces cut at the offsets cuts.
func scanAll(t *testing.T, stream []byte, cuts []int) ([]pageInfo, error) {
	t.Helper()
	var s pageScanner
	var pages []pageInfo
	prev := 0
	for _, cut := range append(cuts, len(stream)) {
		b := stream[prev:cut]
		prev = cut
		for len(b) > 0 {
			n, p, ok, err := s.Next(b)
			if err != nil {
				return pages, err
			}
			if n == 0 && !ok {
				t.Fatalf("Next consumed nothing of %d bytes", len(b))
			}
			b = b[n:]
			if ok {
				pages = append(pages, p)
			}
		}
	}
	return pages, nil
}

func TestPageScannerFindsEveryPageWhereverReadsAreCut(t *testing.T) {
	stream := programStream(t, 4)
	want := []pageInfo{
		{Flags: ogg.FlagBOS, Packets: 1},
		{Seq: 1, Packets: 1},
	}
	for i := range 4 {
		want = append(want, pageInfo{Granule: int64(i+1) * 5 * amphi.FrameSamples, Seq: uint32(i + 2), Packets: 5})
	}
	want = append(want, pageInfo{Flags: ogg.FlagEOS, Granule: 4 * 5 * amphi.FrameSamples, Seq: 6})
	off := 0
	for i := range want {
		want[i].Size = pageLen(stream[off:])
		off += want[i].Size
	}
	if off != len(stream) {
		t.Fatalf("pages cover %d of %d bytes", off, len(stream))
	}

	for _, tc := range []struct {
		name string
		cuts []int
	}{
		{"one read", nil},
		{"inside the capture pattern", []int{2}},
		{"inside the fixed header", []int{20, 47}},
		{"just before the lacing values", []int{26, 27}},
		{"inside the lacing values", []int{len(program.Headers(7)) + 28}},
		{"at a page boundary", []int{len(program.Headers(7))}},
		{"a byte at a time", seq(1, len(stream)-1, 1)},
		{"every 7 bytes", seq(7, len(stream)-1, 7)},
		{"every 300 bytes", seq(300, len(stream)-1, 300)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := scanAll(t, stream, tc.cuts)
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(got, want) {
				t.Errorf("pages\n got %+v\nwant %+v", got, want)
			}
		})
	}
}

func TestPageScannerRefusesWhatIsNotOgg(t *testing.T) {
	stream := programStream(t, 1)
	stream[len(program.Headers(7))] = 'X' // the first chunk's capture pattern
	got, err := scanAll(t, stream, nil)
	if !errors.Is(err, ogg.ErrCapture) || len(got) != 2 {
		t.Fatalf("got %d pages and %v, want the 2 header pages and ogg.ErrCapture", len(got), err)
	}
}

// pageLen returns the length of the page at the start of b.
func pageLen(b []byte) int {
	h, _ := ogg.ParseHeader(b)
	body, _ := ogg.Lacing(b[ogg.HeaderSize:h.Len()])
	return h.Len() + body
}

func seq(from, to, step int) []int {
	var s []int
	for i := from; i <= to; i += step {
		s = append(s, i)
	}
	return s
}

// FuzzPageScanner checks the scanner against the reference reader: on the
// stream's valid prefix it finds the same pages, whatever the cut, and on
// any input it neither panics nor stalls.
func FuzzPageScanner(f *testing.F) {
	f.Add(programStream(f, 2), uint16(13))
	f.Add([]byte("OggS\x00\x00"), uint16(3))
	f.Add(programStream(f, 1)[:100], uint16(1))
	f.Fuzz(func(t *testing.T, data []byte, cut uint16) {
		c := int(cut) % (len(data) + 1)
		split, err1 := scanAll(t, data, []int{c})
		whole, err2 := scanAll(t, data, nil)
		if !slices.Equal(split, whole) || (err1 == nil) != (err2 == nil) {
			t.Fatalf("cut at %d: %d pages (%v), whole: %d pages (%v)", c, len(split), err1, len(whole), err2)
		}
		n, _, pages, _ := ogg.ValidPrefix(bytes.NewReader(data))
		if len(whole) < pages {
			t.Fatalf("scanner found %d pages, the reader %d valid ones", len(whole), pages)
		}
		rd := ogg.NewReader(bytes.NewReader(data[:n]))
		size := 0
		for i := range pages {
			p, err := rd.ReadPage()
			if err != nil {
				t.Fatal(err)
			}
			packets := len(p.Packets)
			if p.LastContinues {
				packets--
			}
			if g := whole[i]; g.Granule != p.Granule || g.Packets != packets || g.Flags != p.Flags {
				t.Fatalf("page %d: scanner %+v, reader %+v", i, g, p)
			}
			size += whole[i].Size
		}
		if int64(size) != n {
			t.Fatalf("scanner's first %d pages are %d bytes, the valid prefix %d", pages, size, n)
		}
	})
}

// BenchmarkPageScanner measures a listener's cost per byte of stream,
// read 1 KiB at a time as the edge's ~200 ms writes arrive.
func BenchmarkPageScanner(b *testing.B) {
	stream := programStream(b, 50)
	b.SetBytes(int64(len(stream)))
	b.ReportAllocs()
	for b.Loop() {
		var s pageScanner
		pages := 0
		for off := 0; off < len(stream); off += 1024 {
			d := stream[off:min(off+1024, len(stream))]
			for len(d) > 0 {
				n, _, ok, err := s.Next(d)
				if err != nil {
					b.Fatal(err)
				}
				d = d[n:]
				if ok {
					pages++
				}
			}
		}
		if pages != 53 {
			b.Fatalf("%d pages", pages)
		}
	}
}
