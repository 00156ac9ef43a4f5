package fmp4

import (
	"bytes"
	"encoding/binary"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"testing"
)

var update = flag.Bool("update", false, "rewrite testdata/*.golden files")

// containers are the box types whose payload is a sequence of boxes (after
// a fixed header for stsd and dref, and the sample entry's fields).
var containers = map[string]int{
	"moov": 0, "trak": 0, "edts": 0, "mdia": 0, "minf": 0, "dinf": 0, "stbl": 0,
	"mvex": 0, "moof": 0, "traf": 0, "stsd": 8, "dref": 8, "Opus": 28, "mp4a": 28,
}

// node is a parsed box: its type, its payload (after the 8-byte header)
// and, for containers, its children.
type node struct {
	typ      string
	payload  []byte
	at       int // offset of the box in the parsed buffer
	children []*node
}

// parseBoxes reads b as a sequence of boxes that exactly fill it, and the
// boxes inside every container, checking that every size adds up.
func parseBoxes(b []byte, base int) ([]*node, error) {
	var out []*node
	for off := 0; off < len(b); {
		if len(b)-off < 8 {
			return nil, fmt.Errorf("%d bytes at %d: too few for a box header", len(b)-off, base+off)
		}
		size := int(binary.BigEndian.Uint32(b[off:]))
		typ := string(b[off+4 : off+8])
		if size < 8 || size > len(b)-off {
			return nil, fmt.Errorf("box %q at %d: size %d in %d bytes", typ, base+off, size, len(b)-off)
		}
		n := &node{typ: typ, payload: b[off+8 : off+size], at: base + off}
		if skip, ok := containers[typ]; ok {
			if len(n.payload) < skip {
				return nil, fmt.Errorf("box %q at %d: %d bytes, want at least %d", typ, n.at, len(n.payload), skip)
			}
			kids, err := parseBoxes(n.payload[skip:], n.at+8+skip)
			if err != nil {
				return nil, err
			}
			n.children = kids
		}
		out = append(out, n)
		off += size
	}
	return out, nil
}

// find returns the first box along path (types, one per level) under ns.
func find(ns []*node, path ...string) *node {
	for _, n := range ns {
		if n.typ != path[0] {
			continue
		}
		if len(path) == 1 {
			return n
		}
		if f := find(n.children, path[1:]...); f != nil {
			return f
		}
	}
	return nil
}

func mustInit(t testing.TB, channels int, preSkip uint16) []byte {
	t.Helper()
	b, err := AppendInit(nil, channels, preSkip, 48000)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestInitHoldsAnOpusTrackWithPreSkipAsEditList(t *testing.T) {
	init := mustInit(t, 2, 312)
	boxes, err := parseBoxes(init, 0)
	if err != nil {
		t.Fatal(err)
	}
	if len(boxes) != 2 || boxes[0].typ != "ftyp" || boxes[1].typ != "moov" {
		t.Fatalf("top-level boxes %v, want ftyp, moov", types(boxes))
	}
	for _, path := range [][]string{
		{"moov", "mvhd"}, {"moov", "trak", "tkhd"}, {"moov", "trak", "mdia", "mdhd"},
		{"moov", "trak", "mdia", "minf", "smhd"}, {"moov", "trak", "mdia", "minf", "dinf", "dref", "url "},
		{"moov", "trak", "mdia", "minf", "stbl", "stts"}, {"moov", "trak", "mdia", "minf", "stbl", "stsc"},
		{"moov", "trak", "mdia", "minf", "stbl", "stsz"}, {"moov", "trak", "mdia", "minf", "stbl", "stco"},
		{"moov", "mvex", "trex"},
	} {
		if find(boxes, path...) == nil {
			t.Errorf("no %v", path)
		}
	}
	hdlr := find(boxes, "moov", "trak", "mdia", "hdlr")
	if hdlr == nil || string(hdlr.payload[8:12]) != "soun" {
		t.Errorf("hdlr %v, want handler soun", hdlr)
	}
	mdhd := find(boxes, "moov", "trak", "mdia", "mdhd")
	if ts := binary.BigEndian.Uint32(mdhd.payload[12:]); ts != Timescale {
		t.Errorf("mdhd timescale %d, want %d", ts, Timescale)
	}
	dops := find(boxes, "moov", "trak", "mdia", "minf", "stbl", "stsd", "Opus", "dOps")
	want := []byte{0, 2, 0x01, 0x38, 0, 0, 0xbb, 0x80, 0, 0, 0} // version 0, 2 ch, 312, 48000, gain 0, family 0
	if dops == nil || !bytes.Equal(dops.payload, want) {
		t.Errorf("dOps %x, want %x", dops.payload, want)
	}
	entry := find(boxes, "moov", "trak", "mdia", "minf", "stbl", "stsd", "Opus")
	if ch, rate := binary.BigEndian.Uint16(entry.payload[16:]), binary.BigEndian.Uint32(entry.payload[24:]); ch != 2 || rate != 48000<<16 {
		t.Errorf("sample entry: %d channels at %#x, want 2 at %#x", ch, rate, 48000<<16)
	}
	elst := find(boxes, "moov", "trak", "edts", "elst")
	if elst == nil {
		t.Fatal("no edit list")
	}
	// version/flags, count 1, duration 0 (to the end), media time 312, rate 1.0
	wantElst := []byte{0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0x01, 0x38, 0, 1, 0, 0}
	if !bytes.Equal(elst.payload, wantElst) {
		t.Errorf("elst %x, want %x", elst.payload, wantElst)
	}
}

// aacConfig is the AudioSpecificConfig of mono AAC-LC at 48 kHz.
var aacConfig = []byte{0x11, 0x88}

func mustAACInit(t testing.TB) []byte {
	t.Helper()
	b, err := AppendAACInit(nil, 1, 1024+312, 64000, aacConfig)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestAACInitHoldsAnESDSWithTheConfigAndPrimingAsEditList(t *testing.T) {
	boxes, err := parseBoxes(mustAACInit(t), 0)
	if err != nil {
		t.Fatal(err)
	}
	entry := find(boxes, "moov", "trak", "mdia", "minf", "stbl", "stsd", "mp4a")
	if entry == nil {
		t.Fatal("no mp4a sample entry")
	}
	if ch, rate := binary.BigEndian.Uint16(entry.payload[16:]), binary.BigEndian.Uint32(entry.payload[24:]); ch != 1 || rate != 48000<<16 {
		t.Errorf("sample entry: %d channels at %#x, want 1 at %#x", ch, rate, 48000<<16)
	}
	esds := find(boxes, "moov", "trak", "mdia", "minf", "stbl", "stsd", "mp4a", "esds")
	want := []byte{
		0, 0, 0, 0, // version, flags
		0x03, 25, 0, 0, 0, // ES_Descriptor: ES_ID 0, no flags
		0x04, 17, 0x40, 0x15, 0, 3, 0, 0, 0, 0xfa, 0, 0, 0, 0xfa, 0, // MPEG-4 audio, 768-byte buffer, 64 kbit/s
		0x05, 2, 0x11, 0x88, // DecSpecificInfo: the AudioSpecificConfig
		0x06, 1, 2, // SLConfigDescriptor: MP4
	}
	if esds == nil || !bytes.Equal(esds.payload, want) {
		t.Errorf("esds % x\nwant % x", esds.payload, want)
	}
	elst := find(boxes, "moov", "trak", "edts", "elst")
	if elst == nil || binary.BigEndian.Uint32(elst.payload[12:]) != 1336 {
		t.Errorf("edit list %x, want media time 1336", elst.payload)
	}
	if _, err := AppendAACInit(nil, 1, 0, 0, make([]byte, maxConfig+1)); !errors.Is(err, ErrConfig) {
		t.Errorf("a config of %d bytes: %v, want ErrConfig", maxConfig+1, err)
	}
}

func TestInitRefusesMoreThanTwoChannels(t *testing.T) {
	for _, ch := range []int{0, 3, 8} {
		if _, err := AppendInit(nil, ch, 312, 0); !errors.Is(err, ErrChannels) {
			t.Errorf("%d channels: %v, want ErrChannels", ch, err)
		}
	}
}

func types(ns []*node) []string {
	var s []string
	for _, n := range ns {
		s = append(s, n.typ)
	}
	return s
}

// fragmentInfo is what a test reads back from a fragment.
type fragmentInfo struct {
	seq       uint32
	baseTime  uint64
	durations []uint32
	packets   [][]byte
}

// readFragment parses one moof + mdat and checks the invariants a player
// relies on: one track, base at moof, the data offset pointing at the
// first payload byte, and sample sizes that fill mdat exactly.
func readFragment(b []byte) (fragmentInfo, error) {
	var fi fragmentInfo
	boxes, err := parseBoxes(b, 0)
	if err != nil {
		return fi, err
	}
	if len(boxes) != 2 || boxes[0].typ != "moof" || boxes[1].typ != "mdat" {
		return fi, fmt.Errorf("boxes %v, want moof, mdat", types(boxes))
	}
	mfhd, tfhd, tfdt, trun := find(boxes, "moof", "mfhd"), find(boxes, "moof", "traf", "tfhd"), find(boxes, "moof", "traf", "tfdt"), find(boxes, "moof", "traf", "trun")
	if mfhd == nil || tfhd == nil || tfdt == nil || trun == nil {
		return fi, errors.New("moof lacks mfhd, tfhd, tfdt or trun")
	}
	fi.seq = binary.BigEndian.Uint32(mfhd.payload[4:])
	tfhdFlags := binary.BigEndian.Uint32(tfhd.payload) & 0xffffff
	if tfhdFlags&tfhdBaseIsMoof == 0 || binary.BigEndian.Uint32(tfhd.payload[4:]) != trackID {
		return fi, fmt.Errorf("tfhd %x: want default-base-is-moof and track %d", tfhd.payload, trackID)
	}
	var defaultDuration uint32
	if tfhdFlags&tfhdDefaultDuration != 0 {
		defaultDuration = binary.BigEndian.Uint32(tfhd.payload[8:])
	}
	if tfdt.payload[0] != 1 || len(tfdt.payload) != 12 {
		return fi, fmt.Errorf("tfdt %x: want version 1, 64 bits", tfdt.payload)
	}
	fi.baseTime = binary.BigEndian.Uint64(tfdt.payload[4:])
	flags := binary.BigEndian.Uint32(trun.payload) & 0xffffff
	count := int(binary.BigEndian.Uint32(trun.payload[4:]))
	offset := int(binary.BigEndian.Uint32(trun.payload[8:]))
	perSample := 4
	if flags&trunSampleDuration != 0 {
		perSample = 8
	}
	if flags&trunDataOffset == 0 || flags&trunSampleSize == 0 || len(trun.payload) != 12+perSample*count {
		return fi, fmt.Errorf("trun flags %#x with %d samples in %d bytes", flags, count, len(trun.payload))
	}
	mdat := boxes[1]
	if offset != mdat.at+8 {
		return fi, fmt.Errorf("data offset %d, mdat payload at %d", offset, mdat.at+8)
	}
	data := mdat.payload
	for i := range count {
		e := trun.payload[12+perSample*i:]
		d := defaultDuration
		if perSample == 8 {
			d, e = binary.BigEndian.Uint32(e), e[4:]
		}
		size := int(binary.BigEndian.Uint32(e))
		if size > len(data) {
			return fi, fmt.Errorf("sample %d of %d bytes, %d left in mdat", i, size, len(data))
		}
		fi.durations = append(fi.durations, d)
		fi.packets = append(fi.packets, data[:size])
		data = data[size:]
	}
	if len(data) != 0 {
		return fi, fmt.Errorf("%d bytes of mdat not in any sample", len(data))
	}
	return fi, nil
}

// goldenSamples are three 20 ms packets and a 10 ms one: the fragment then
// carries per-sample durations.
func goldenSamples() []Sample {
	return []Sample{
		{Data: []byte{0xfc, 1, 2, 3}, Duration: 960},
		{Data: []byte{0xfc, 4, 5}, Duration: 960},
		{Data: []byte{0xfc}, Duration: 960},
		{Data: []byte{0xf4, 6, 7, 8, 9}, Duration: 480},
	}
}

func TestInitAndFragmentMatchGoldenFiles(t *testing.T) {
	uniform := goldenSamples()[:3]
	for name, got := range map[string][]byte{
		"init.golden":             mustInit(t, 1, 312),
		"init-aac.golden":         mustAACInit(t),
		"fragment.golden":         AppendFragment(nil, 7, 48000*3600*30, goldenSamples()),
		"fragment-uniform.golden": AppendFragment(nil, 1, 0, uniform),
	} {
		path := filepath.Join("testdata", name)
		if *update {
			if err := os.WriteFile(path, got, 0o644); err != nil {
				t.Fatal(err)
			}
			continue
		}
		want, err := os.ReadFile(path)
		if err != nil {
			t.Fatalf("%v (run go test -update to create it)", err)
		}
		if !bytes.Equal(got, want) {
			t.Errorf("%s differs:\n got %x\nwant %x", name, got, want)
		}
	}
}

func TestFragmentReadsBackWithDurationsAndPackets(t *testing.T) {
	for _, samples := range [][]Sample{goldenSamples(), goldenSamples()[:3], nil} {
		b := AppendFragment([]byte("prefix"), 42, 1<<40, samples)[len("prefix"):]
		if len(b) != FragmentSize(samples) {
			t.Errorf("fragment of %d bytes, FragmentSize says %d", len(b), FragmentSize(samples))
		}
		fi, err := readFragment(b)
		if err != nil {
			t.Fatal(err)
		}
		if fi.seq != 42 || fi.baseTime != 1<<40 || len(fi.packets) != len(samples) {
			t.Fatalf("read seq %d, base %d, %d samples; want 42, %d, %d", fi.seq, fi.baseTime, len(fi.packets), uint64(1)<<40, len(samples))
		}
		for i, s := range samples {
			if fi.durations[i] != s.Duration || !bytes.Equal(fi.packets[i], s.Data) {
				t.Errorf("sample %d: %d %x, want %d %x", i, fi.durations[i], fi.packets[i], s.Duration, s.Data)
			}
		}
	}
}

func TestAppendFragmentAllocatesNothingWithRoom(t *testing.T) {
	samples := goldenSamples()
	buf := make([]byte, 0, FragmentSize(samples))
	if n := testing.AllocsPerRun(100, func() { AppendFragment(buf[:0], 1, 0, samples) }); n != 0 {
		t.Errorf("%v allocations per fragment, want 0", n)
	}
}

// FuzzFragment writes fragments of arbitrary packet sets and reads them
// back with the test's own box reader.
func FuzzFragment(f *testing.F) {
	f.Add(uint32(1), uint64(0), []byte{3, 0xfc, 1, 2, 0, 1, 0xf4}, false)
	f.Add(uint32(9), uint64(1)<<33, []byte{}, true)
	f.Fuzz(func(t *testing.T, seq uint32, base uint64, spec []byte, vary bool) {
		// spec is a list of packets, each a length byte then that many bytes.
		var samples []Sample
		for len(spec) > 0 {
			n := min(int(spec[0]), len(spec)-1)
			d := uint32(960)
			if vary {
				d = uint32(120 * (1 + n%8))
			}
			samples = append(samples, Sample{Data: spec[1 : 1+n], Duration: d})
			spec = spec[1+n:]
		}
		b := AppendFragment(nil, seq, base, samples)
		if len(b) != FragmentSize(samples) {
			t.Fatalf("%d bytes, FragmentSize %d", len(b), FragmentSize(samples))
		}
		fi, err := readFragment(b)
		if err != nil {
			t.Fatal(err)
		}
		if fi.seq != seq || fi.baseTime != base || len(fi.packets) != len(samples) {
			t.Fatalf("read %d, %d, %d samples; wrote %d, %d, %d", fi.seq, fi.baseTime, len(fi.packets), seq, base, len(samples))
		}
		for i, s := range samples {
			if fi.durations[i] != s.Duration || !bytes.Equal(fi.packets[i], s.Data) {
				t.Fatalf("sample %d differs", i)
			}
		}
	})
}
