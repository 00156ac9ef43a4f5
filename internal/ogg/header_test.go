package ogg

import (
	"bytes"
	"errors"
	"io"
	"testing"
)

func TestParseHeaderReadsTheFixedHeader(t *testing.T) {
	page := rawPage(FlagBOS|FlagEOS, 0x0102030405060708, 0xa1b2c3d4, 77, []byte{3, 255, 0}, fill(258, 1))
	h, err := ParseHeader(page)
	if err != nil {
		t.Fatal(err)
	}
	want := Header{Flags: FlagBOS | FlagEOS, Granule: 0x0102030405060708, Serial: 0xa1b2c3d4, Seq: 77, Segments: 3}
	if h != want || h.Len() != HeaderSize+3 {
		t.Fatalf("ParseHeader = %+v (len %d), want %+v (len %d)", h, h.Len(), want, HeaderSize+3)
	}
	if body, packets := Lacing(page[HeaderSize:h.Len()]); body != 258 || packets != 2 {
		t.Fatalf("Lacing = %d bytes, %d packets; want 258, 2", body, packets)
	}
	for _, tc := range []struct {
		name string
		b    []byte
		want error
	}{
		{"cut", page[:HeaderSize-1], io.ErrUnexpectedEOF},
		{"not Ogg", append([]byte("RIFF"), page[4:]...), ErrCapture},
		{"version 1", withByte(page, 4, 1), ErrVersion},
	} {
		if _, err := ParseHeader(tc.b); err != tc.want {
			t.Errorf("%s: err = %v, want %v", tc.name, err, tc.want)
		}
	}
}

func TestAppendPacketsKeepsOnlyWholePackets(t *testing.T) {
	for _, tc := range []struct {
		name string
		page Page
		want [][]byte // nil: the same as page.Packets
	}{
		{"five packets", Page{Packets: [][]byte{fill(40, 1), fill(100, 2), fill(3, 3), fill(254, 4), fill(90, 5)}}, nil},
		{"255 bytes exactly", Page{Packets: [][]byte{fill(255, 1)}}, nil},
		{"255 bytes then more", Page{Packets: [][]byte{fill(255, 1), fill(10, 2), fill(510, 3), fill(256, 4)}}, nil},
		{"an empty packet", Page{Packets: [][]byte{fill(20, 1), {}, fill(20, 2)}}, nil},
		{"no packets", Page{}, [][]byte{}},
		{
			"continued from the page before",
			Page{Flags: FlagContinued, Packets: [][]byte{fill(300, 9), fill(20, 1), fill(30, 2)}},
			[][]byte{fill(20, 1), fill(30, 2)},
		},
		{
			"continued on the page after",
			Page{Packets: [][]byte{fill(20, 1), fill(510, 9)}, LastContinues: true},
			[][]byte{fill(20, 1)},
		},
		{
			"one piece of a longer packet",
			Page{Flags: FlagContinued, Packets: [][]byte{fill(255, 9)}, LastContinues: true},
			[][]byte{},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			want := tc.want
			if want == nil {
				want = tc.page.Packets
			}
			got, err := AppendPackets(nil, mustPage(t, &tc.page))
			if err != nil {
				t.Fatal(err)
			}
			if len(got) != len(want) {
				t.Fatalf("%d packets, want %d", len(got), len(want))
			}
			for i := range got {
				if !bytes.Equal(got[i], want[i]) || cap(got[i]) != len(got[i]) {
					t.Errorf("packet %d: %d bytes (cap %d), want %d bytes", i, len(got[i]), cap(got[i]), len(want[i]))
				}
			}
		})
	}
}

func TestAppendPacketsRefusesBrokenPages(t *testing.T) {
	whole := mustPage(t, &Page{Packets: [][]byte{fill(40, 1), fill(300, 2)}})
	for _, tc := range []struct {
		name string
		page []byte
		want error
	}{
		{"empty", nil, io.ErrUnexpectedEOF},
		{"not Ogg", append([]byte("RIFF"), whole[4:]...), ErrCapture},
		{"header cut", whole[:20], io.ErrUnexpectedEOF},
		{"lacing cut", whole[:HeaderSize+1], io.ErrUnexpectedEOF},
		{"body cut in the last packet", whole[:len(whole)-1], io.ErrUnexpectedEOF},
		{"body cut in the first packet", whole[:HeaderSize+3+10], io.ErrUnexpectedEOF},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dst := [][]byte{[]byte("kept")}
			got, err := AppendPackets(dst, tc.page)
			if !errors.Is(err, tc.want) || len(got) != 1 {
				t.Fatalf("err = %v with %d packets, want %v and dst unchanged", err, len(got), tc.want)
			}
		})
	}
}

func TestRenumberMovesAPageAndKeepsItValid(t *testing.T) {
	page := mustPage(t, &Page{Serial: 9, Seq: 40, Granule: 48000, Packets: [][]byte{fill(80, 1), fill(80, 2)}})
	Renumber(page, 9600, 12)
	p, err := NewReader(bytes.NewReader(page)).ReadPage()
	if err != nil {
		t.Fatal(err)
	}
	if p.Granule != 9600 || p.Seq != 12 || p.Serial != 9 || len(p.Packets) != 2 {
		t.Fatalf("renumbered page %+v, want granule 9600, seq 12, serial 9, 2 packets", p)
	}
}

// FuzzAppendPackets checks that on any input AppendPackets neither panics
// nor returns bytes outside the page, and that on a page the Reader reads it
// finds the same whole packets.
func FuzzAppendPackets(f *testing.F) {
	f.Add(mustPage(f, &Page{Packets: [][]byte{fill(40, 1), fill(255, 2), fill(3, 3)}}))
	f.Add(mustPage(f, &Page{Flags: FlagContinued, Packets: [][]byte{fill(255, 9), fill(20, 1)}}))
	f.Add([]byte("OggS\x00\x00"))
	f.Fuzz(func(t *testing.T, data []byte) {
		pkts, err := AppendPackets(nil, data)
		total := 0
		for _, p := range pkts {
			total += len(p)
		}
		if total > len(data) {
			t.Fatalf("%d bytes of packets from a %d-byte page", total, len(data))
		}
		p, rerr := NewReader(bytes.NewReader(data)).ReadPage()
		if rerr != nil {
			return
		}
		if err != nil {
			t.Fatalf("the reader reads the page, AppendPackets: %v", err)
		}
		want := p.Packets
		if p.LastContinues {
			want = want[:len(want)-1]
		}
		if p.Flags&FlagContinued != 0 && len(want) > 0 {
			want = want[1:]
		}
		if len(pkts) != len(want) {
			t.Fatalf("%d packets, the reader %d", len(pkts), len(want))
		}
		for i := range pkts {
			if !bytes.Equal(pkts[i], want[i]) {
				t.Fatalf("packet %d differs from the reader's", i)
			}
		}
	})
}
