package ogg

import (
	"bytes"
	"errors"
	"flag"
	"io"
	"os"
	"path/filepath"
	"slices"
	"testing"
)

var update = flag.Bool("update", false, "rewrite testdata/*.golden files")

// mustPage returns the encoding of p, failing the test on error.
func mustPage(t testing.TB, p *Page) []byte {
	t.Helper()
	b, err := AppendPage(nil, p)
	if err != nil {
		t.Fatalf("AppendPage: %v", err)
	}
	return b
}

func TestChecksumMatchesCRC32WithoutFinalXor(t *testing.T) {
	// CRC-32/CKSUM (poly 0x04c11db7, init 0, not reflected) has check value
	// 0x765e7680 for "123456789" with its final xor of 0xffffffff; Ogg's
	// CRC is the same without that xor.
	if got, want := Checksum([]byte("123456789")), uint32(0x765e7680^0xffffffff); got != want {
		t.Fatalf("Checksum = %#08x, want %#08x", got, want)
	}
	if got := Checksum(nil); got != 0 {
		t.Fatalf("Checksum(nil) = %#x, want 0", got)
	}
}

func TestAppendPageLacingValues(t *testing.T) {
	tests := []struct {
		name          string
		sizes         []int
		lastContinues bool
		want          []byte
	}{
		{"no packets", nil, false, []byte{}},
		{"empty packet", []int{0}, false, []byte{0}},
		{"small packet", []int{3}, false, []byte{3}},
		{"254 bytes", []int{254}, false, []byte{254}},
		{"255 bytes needs a terminating zero", []int{255}, false, []byte{255, 0}},
		{"256 bytes", []int{256}, false, []byte{255, 1}},
		{"several packets", []int{10, 300, 0, 510}, false, []byte{10, 255, 45, 0, 255, 255, 0}},
		{"last continues", []int{10, 510}, true, []byte{10, 255, 255}},
		{"largest single packet", []int{254*255 + 254}, false, append(bytes.Repeat([]byte{255}, 254), 254)},
		{"full page continued", []int{255 * 255}, true, bytes.Repeat([]byte{255}, 255)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := &Page{Granule: 7, Serial: 1, LastContinues: tt.lastContinues}
			total := 0
			for i, n := range tt.sizes {
				p.Packets = append(p.Packets, bytes.Repeat([]byte{byte(i + 1)}, n))
				total += n
			}
			b := mustPage(t, p)
			if got := b[26]; int(got) != len(tt.want) {
				t.Fatalf("segment count = %d, want %d", got, len(tt.want))
			}
			if got := b[HeaderSize : HeaderSize+len(tt.want)]; !bytes.Equal(got, tt.want) {
				t.Fatalf("lacing = %v, want %v", got, tt.want)
			}
			if got, want := len(b), HeaderSize+len(tt.want)+total; got != want {
				t.Fatalf("page length = %d, want %d", got, want)
			}
		})
	}
}

func TestAppendPageRefusesWhatAPageCannotHold(t *testing.T) {
	tests := []struct {
		name          string
		sizes         []int
		lastContinues bool
		want          error
	}{
		{"packet needing 256 segments", []int{255 * 255}, false, ErrTooManySegments},
		{"256 empty packets", slices.Repeat([]int{0}, 256), false, ErrTooManySegments},
		{"continued piece not a multiple of 255", []int{300}, true, ErrBadContinuation},
		{"empty continued piece", []int{0}, true, ErrBadContinuation},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := &Page{LastContinues: tt.lastContinues}
			for _, n := range tt.sizes {
				p.Packets = append(p.Packets, make([]byte, n))
			}
			dst := []byte("keep")
			got, err := AppendPage(dst, p)
			if !errors.Is(err, tt.want) {
				t.Fatalf("err = %v, want %v", err, tt.want)
			}
			if string(got) != "keep" {
				t.Fatalf("dst changed on error: %q", got)
			}
		})
	}
}

func TestAppendPageAppendsAfterExistingBytes(t *testing.T) {
	p := &Page{Flags: FlagBOS, Serial: 9, Packets: [][]byte{[]byte("abc")}}
	alone := mustPage(t, p)
	both, err := AppendPage([]byte("prefix"), p)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(both, append([]byte("prefix"), alone...)) {
		t.Fatalf("appending after a prefix changed the page: %x", both)
	}
}

// goldenPages are the pages kept in testdata/pages.golden: the headers and
// first audio page of a mono Ogg Opus stream, as an independent decoder
// must read them.
func goldenPages() []*Page {
	return []*Page{
		{Flags: FlagBOS, Granule: 0, Serial: 0x12345678, Seq: 0,
			Packets: [][]byte{AppendOpusHead(nil, 1, 312, 48000)}},
		{Granule: 0, Serial: 0x12345678, Seq: 1,
			Packets: [][]byte{AppendOpusTags(nil, "amphi", "TITLE=golden")}},
		{Flags: FlagEOS, Granule: 312 + 3*960, Serial: 0x12345678, Seq: 2,
			Packets: [][]byte{silence, silence, silence}},
	}
}

// silence is a 20 ms CELT-only mono Opus packet that decodes to silence.
var silence = []byte{0xf8, 0xff, 0xfe}

func TestAppendPageMatchesGoldenFile(t *testing.T) {
	var got []byte
	for _, p := range goldenPages() {
		var err error
		if got, err = AppendPage(got, p); err != nil {
			t.Fatal(err)
		}
	}
	path := filepath.Join("testdata", "pages.golden")
	if *update {
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test -update to create it)", err)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("pages differ from %s:\ngot  %x\nwant %x", path, got, want)
	}
}

func TestReaderReadsBackWhatAppendPageWrote(t *testing.T) {
	pages := []*Page{
		{Flags: FlagBOS, Granule: 0, Serial: 42, Seq: 0, Packets: [][]byte{AppendOpusHead(nil, 2, 312, 44100)}},
		{Granule: 0, Serial: 42, Seq: 1, Packets: [][]byte{AppendOpusTags(nil, "v", "A=1", "B=2")}},
		{Granule: 1272, Serial: 42, Seq: 2, Packets: [][]byte{silence, {}, bytes.Repeat([]byte{7}, 255), bytes.Repeat([]byte{8}, 1000)}},
		{Flags: FlagEOS, Granule: 2232, Serial: 42, Seq: 3, Packets: [][]byte{silence}},
	}
	var stream []byte
	for _, p := range pages {
		var err error
		if stream, err = AppendPage(stream, p); err != nil {
			t.Fatal(err)
		}
	}

	r := NewReader(bytes.NewReader(stream))
	for i, want := range pages {
		got, err := r.ReadPage()
		if err != nil {
			t.Fatalf("page %d: %v", i, err)
		}
		if !pagesEqual(got, want) {
			t.Fatalf("page %d = %+v, want %+v", i, got, want)
		}
	}
	if _, err := r.ReadPage(); err != io.EOF {
		t.Fatalf("after last page: err = %v, want io.EOF", err)
	}

	r = NewReader(bytes.NewReader(stream))
	for _, p := range pages {
		for _, want := range p.Packets {
			got, granule, err := r.ReadPacket()
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, want) || granule != p.Granule {
				t.Fatalf("packet %x granule %d, want %x granule %d", got, granule, want, p.Granule)
			}
		}
	}
	if _, _, err := r.ReadPacket(); err != io.EOF {
		t.Fatalf("after last packet: err = %v, want io.EOF", err)
	}
}

func pagesEqual(a, b *Page) bool {
	return a.Flags == b.Flags && a.Granule == b.Granule && a.Serial == b.Serial &&
		a.Seq == b.Seq && a.LastContinues == b.LastContinues &&
		slices.EqualFunc(a.Packets, b.Packets, bytes.Equal)
}

// rawPage builds a page byte by byte, without AppendPage, from its lacing
// values and data, so the reader is tested against an independent encoder.
func rawPage(flags byte, granule int64, serial, seq uint32, lacing []byte, data []byte) []byte {
	b := []byte{'O', 'g', 'g', 'S', 0, flags}
	for i := range 8 {
		b = append(b, byte(uint64(granule)>>(8*i)))
	}
	for i := range 4 {
		b = append(b, byte(serial>>(8*i)))
	}
	for i := range 4 {
		b = append(b, byte(seq>>(8*i)))
	}
	b = append(b, 0, 0, 0, 0, byte(len(lacing)))
	b = append(b, lacing...)
	b = append(b, data...)
	crc := Checksum(b)
	b[22], b[23], b[24], b[25] = byte(crc), byte(crc>>8), byte(crc>>16), byte(crc>>24)
	return b
}

func fill(n int, v byte) []byte { return bytes.Repeat([]byte{v}, n) }

func TestReadPacketReassemblesPacketsAcrossPages(t *testing.T) {
	big := append(fill(510, 'a'), fill(90, 'b')...)                // 600 bytes over 2 pages
	huge := append(append(fill(255, 'x'), fill(255, 'y')...), 'z') // 511 bytes over 3 pages
	var stream []byte
	// Page 0: a 5-byte packet, then the first 510 bytes of big.
	stream = append(stream, rawPage(FlagBOS, 100, 1, 0,
		[]byte{5, 255, 255}, append(fill(5, 'p'), big[:510]...))...)
	// Page 1: the last 90 bytes of big, then a 2-byte packet.
	stream = append(stream, rawPage(FlagContinued, 200, 1, 1,
		[]byte{90, 2}, append(slices.Clone(big[510:]), 'q', 'q'))...)
	// Page 2: only the start of huge; no packet ends here.
	stream = append(stream, rawPage(0, NoGranule, 1, 2, []byte{255}, huge[:255])...)
	// Page 3: the middle of huge, continued and continuing.
	stream = append(stream, rawPage(FlagContinued, NoGranule, 1, 3, []byte{255}, huge[255:510])...)
	// Page 4: the last byte of huge.
	stream = append(stream, rawPage(FlagContinued|FlagEOS, 300, 1, 4, []byte{1}, huge[510:])...)

	want := []struct {
		pkt     []byte
		granule int64
	}{
		{fill(5, 'p'), 100},
		{big, 200},
		{[]byte("qq"), 200},
		{huge, 300},
	}
	r := NewReader(bytes.NewReader(stream))
	for i, w := range want {
		pkt, granule, err := r.ReadPacket()
		if err != nil {
			t.Fatalf("packet %d: %v", i, err)
		}
		if !bytes.Equal(pkt, w.pkt) || granule != w.granule {
			t.Fatalf("packet %d: %d bytes granule %d, want %d bytes granule %d", i, len(pkt), granule, len(w.pkt), w.granule)
		}
	}
	if _, _, err := r.ReadPacket(); err != io.EOF {
		t.Fatalf("err = %v, want io.EOF", err)
	}

	// The same pages read one by one show the pieces.
	r = NewReader(bytes.NewReader(stream))
	p, err := r.ReadPage()
	if err != nil {
		t.Fatal(err)
	}
	if !p.LastContinues || len(p.Packets) != 2 || len(p.Packets[1]) != 510 {
		t.Fatalf("page 0: LastContinues %v, %d pieces", p.LastContinues, len(p.Packets))
	}
	// And AppendPage writes them back byte for byte.
	if b := mustPage(t, p); !bytes.Equal(b, stream[:len(b)]) {
		t.Fatalf("re-encoded page 0 differs")
	}
}

func TestReadPacketDropsPiecesWithoutTheirOtherHalf(t *testing.T) {
	var stream []byte
	// A stream joined mid-packet: the page starts with a tail whose head
	// was never seen.
	stream = append(stream, rawPage(FlagContinued, 10, 1, 7, []byte{3, 1}, []byte("tttA"))...)
	// A packet begun here...
	stream = append(stream, rawPage(0, 20, 1, 8, []byte{1, 255}, append([]byte("B"), fill(255, 'h')...))...)
	// ...but the next page does not continue it (a page was lost).
	stream = append(stream, rawPage(0, 30, 1, 9, []byte{1}, []byte("C"))...)

	r := NewReader(bytes.NewReader(stream))
	var got []string
	for {
		pkt, _, err := r.ReadPacket()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, string(pkt))
	}
	if want := []string{"A", "B", "C"}; !slices.Equal(got, want) {
		t.Fatalf("packets = %q, want %q", got, want)
	}
}

func TestReadPacketRefusesPacketsOverTheCap(t *testing.T) {
	var stream []byte
	piece := fill(255*255, 0)
	for seq := uint32(0); int(seq)*len(piece) <= MaxPacketSize; seq++ {
		flags := byte(FlagContinued)
		if seq == 0 {
			flags = FlagBOS
		}
		stream = append(stream, rawPage(flags, NoGranule, 1, seq, fill(255, 255), piece)...)
	}
	r := NewReader(bytes.NewReader(stream))
	if _, _, err := r.ReadPacket(); !errors.Is(err, ErrPacketTooLarge) {
		t.Fatalf("err = %v, want ErrPacketTooLarge", err)
	}
}

func TestReadPageReportsMalformedInput(t *testing.T) {
	good := rawPage(FlagBOS, 0, 1, 0, []byte{3}, []byte("abc"))
	with := func(i int, v byte) []byte {
		b := slices.Clone(good)
		b[i] = v
		return b
	}
	tests := []struct {
		name  string
		input []byte
		want  error
	}{
		{"empty input", nil, io.EOF},
		{"partial header", good[:10], io.ErrUnexpectedEOF},
		{"missing lacing values", good[:HeaderSize], io.ErrUnexpectedEOF},
		{"partial data", good[:len(good)-1], io.ErrUnexpectedEOF},
		{"wrong capture pattern", with(0, 'o'), ErrCapture},
		{"version 1", with(4, 1), ErrVersion},
		{"corrupt checksum", with(22, good[22]^1), ErrChecksum},
		{"corrupt data", with(len(good)-1, 'X'), ErrChecksum},
		{"corrupt granule", with(6, 1), ErrChecksum},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := NewReader(bytes.NewReader(tt.input))
			_, err := r.ReadPage()
			if !errors.Is(err, tt.want) {
				t.Fatalf("err = %v, want %v", err, tt.want)
			}
			if _, again := r.ReadPage(); again != err {
				t.Fatalf("second call: err = %v, want the same %v", again, err)
			}
			_, _, perr := NewReader(bytes.NewReader(tt.input)).ReadPacket()
			if !errors.Is(perr, tt.want) {
				t.Fatalf("ReadPacket err = %v, want %v", perr, tt.want)
			}
		})
	}
}

func TestValidPrefixStopsAtTheFirstIncompletePage(t *testing.T) {
	p0 := rawPage(FlagBOS, 0, 1, 0, []byte{19}, AppendOpusHead(nil, 1, 312, 48000))
	p1 := rawPage(0, 1272, 1, 1, []byte{3, 3}, []byte("abcdef"))
	p2 := rawPage(0, NoGranule, 1, 2, []byte{255}, fill(255, 1))
	p3 := rawPage(FlagContinued, 2232, 1, 3, []byte{4}, []byte("wxyz"))
	all := slices.Concat(p0, p1, p2, p3)
	corrupt := slices.Clone(all)
	corrupt[len(p0)+len(p1)+30] ^= 0xff

	tests := []struct {
		name        string
		input       []byte
		wantN       int
		wantGranule int64
		wantPages   int
		wantLast    Header // ScanPrefix's last page
	}{
		{"empty", nil, 0, NoGranule, 0, Header{}},
		{"whole stream", all, len(all), 2232, 4, Header{Flags: FlagContinued, Granule: 2232, Serial: 1, Seq: 3, Segments: 1}},
		{"torn in the last page's data", all[:len(all)-1], len(all) - len(p3), 1272, 3, Header{Granule: NoGranule, Serial: 1, Seq: 2, Segments: 1}},
		{"torn in the last page's header", all[:len(all)-len(p3)+5], len(all) - len(p3), 1272, 3, Header{Granule: NoGranule, Serial: 1, Seq: 2, Segments: 1}},
		{"ends on a page without granule", slices.Concat(p0, p1, p2), len(p0) + len(p1) + len(p2), 1272, 3, Header{Granule: NoGranule, Serial: 1, Seq: 2, Segments: 1}},
		{"only a torn first page", p0[:len(p0)-1], 0, NoGranule, 0, Header{}},
		{"corrupt page in the middle", corrupt, len(p0) + len(p1), 1272, 2, Header{Granule: 1272, Serial: 1, Seq: 1, Segments: 2}},
		{"garbage after the pages", slices.Concat(p0, p1, []byte("not a page at all, just junk")), len(p0) + len(p1), 1272, 2, Header{Granule: 1272, Serial: 1, Seq: 1, Segments: 2}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			n, g, pages, err := ValidPrefix(bytes.NewReader(tt.input))
			if err != nil {
				t.Fatal(err)
			}
			if n != int64(tt.wantN) || g != tt.wantGranule || pages != tt.wantPages {
				t.Fatalf("ValidPrefix = %d, %d, %d; want %d, %d, %d", n, g, pages, tt.wantN, tt.wantGranule, tt.wantPages)
			}
			p, err := ScanPrefix(bytes.NewReader(tt.input))
			if err != nil || p.Len != n || p.Granule != g || p.Pages != pages || p.Last != tt.wantLast {
				t.Fatalf("ScanPrefix = %+v, %v; want the same as ValidPrefix, last page %+v", p, err, tt.wantLast)
			}
		})
	}
}

type failingReader struct {
	data []byte
	err  error
}

func (f *failingReader) Read(b []byte) (int, error) {
	if len(f.data) == 0 {
		return 0, f.err
	}
	n := copy(b, f.data)
	f.data = f.data[n:]
	return n, nil
}

func TestValidPrefixReturnsReadErrors(t *testing.T) {
	boom := errors.New("disk on fire")
	page := rawPage(FlagBOS, 5, 1, 0, []byte{1}, []byte("a"))
	n, g, pages, err := ValidPrefix(&failingReader{data: page, err: boom})
	if !errors.Is(err, boom) {
		t.Fatalf("err = %v, want %v", err, boom)
	}
	if n != int64(len(page)) || g != 5 || pages != 1 {
		t.Fatalf("ValidPrefix = %d, %d, %d; want %d, 5, 1", n, g, pages, len(page))
	}
}

func TestParseOpusHead(t *testing.T) {
	head := AppendOpusHead(nil, 2, 312, 44100)
	withGain := slices.Clone(head)
	withGain[16], withGain[17] = 0x00, 0xff // -256 in Q7.8: -1 dB
	family1 := append(slices.Clone(head[:18]), 1, 1, 1, 0, 1)
	family1[9] = 2
	tests := []struct {
		name    string
		pkt     []byte
		want    OpusHead
		wantErr error
	}{
		{"written by AppendOpusHead", head, OpusHead{Channels: 2, PreSkip: 312, InputRate: 44100}, nil},
		{"negative gain", withGain, OpusHead{Channels: 2, PreSkip: 312, InputRate: 44100, Gain: -256}, nil},
		{"family 1 with its table", family1, OpusHead{Channels: 2, PreSkip: 312, InputRate: 44100, MappingFamily: 1}, nil},
		{"version 15 is compatible", withByte(head, 8, 15), OpusHead{Channels: 2, PreSkip: 312, InputRate: 44100}, nil},
		{"version 16 is not", withByte(head, 8, 16), OpusHead{}, ErrOpusHeadVersion},
		{"tags, not head", AppendOpusTags(nil, "x"), OpusHead{}, ErrNotOpusHead},
		{"empty", nil, OpusHead{}, ErrNotOpusHead},
		{"truncated", head[:18], OpusHead{}, ErrBadOpusHead},
		{"zero channels", withByte(head, 9, 0), OpusHead{}, ErrBadOpusHead},
		{"three channels in family 0", withByte(head, 9, 3), OpusHead{}, ErrBadOpusHead},
		{"family 1 without its table", withByte(head, 18, 1), OpusHead{}, ErrBadOpusHead},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseOpusHead(tt.pkt)
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("err = %v, want %v", err, tt.wantErr)
			}
			if got != tt.want {
				t.Fatalf("head = %+v, want %+v", got, tt.want)
			}
		})
	}
}

func withByte(b []byte, i int, v byte) []byte {
	b = slices.Clone(b)
	b[i] = v
	return b
}

func TestAppendOpusHeadLayout(t *testing.T) {
	// RFC 7845 §5.1, figure 2, field by field.
	want := []byte{'O', 'p', 'u', 's', 'H', 'e', 'a', 'd', 1, 1, 0x38, 0x01, 0x80, 0xbb, 0, 0, 0, 0, 0}
	if got := AppendOpusHead(nil, 1, 312, 48000); !bytes.Equal(got, want) {
		t.Fatalf("got %x, want %x", got, want)
	}
}

func TestAppendOpusTagsLayout(t *testing.T) {
	// RFC 7845 §5.2: lengths are 32-bit little-endian.
	want := slices.Concat([]byte("OpusTags"), []byte{2, 0, 0, 0}, []byte("ab"),
		[]byte{2, 0, 0, 0}, []byte{3, 0, 0, 0}, []byte("A=1"), []byte{0, 0, 0, 0})
	if got := AppendOpusTags(nil, "ab", "A=1", ""); !bytes.Equal(got, want) {
		t.Fatalf("got %x, want %x", got, want)
	}
}

func TestChecksumAgreesWithBytewiseDefinition(t *testing.T) {
	// The bit-by-bit definition, slow and obviously right.
	bitwise := func(b []byte) uint32 {
		var crc uint32
		for _, v := range b {
			crc ^= uint32(v) << 24
			for range 8 {
				if crc&0x80000000 != 0 {
					crc = crc<<1 ^ 0x04c11db7
				} else {
					crc <<= 1
				}
			}
		}
		return crc
	}
	data := make([]byte, 100)
	for i := range data {
		data[i] = byte(i*37 + 11)
	}
	for n := range len(data) + 1 {
		if got, want := Checksum(data[:n]), bitwise(data[:n]); got != want {
			t.Fatalf("Checksum of %d bytes = %#08x, want %#08x", n, got, want)
		}
	}
}
