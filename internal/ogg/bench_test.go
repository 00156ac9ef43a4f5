package ogg

import (
	"bytes"
	"io"
	"testing"
)

// BenchmarkAppendPage writes a page of five 20 ms Opus packets at 32 kbit/s
// (80 bytes each) into a reused buffer, as the mixer does every 100 ms.
func BenchmarkAppendPage(b *testing.B) {
	p := &Page{Serial: 1, Granule: 48000}
	for range 5 {
		p.Packets = append(p.Packets, make([]byte, 80))
	}
	dst := make([]byte, 0, MaxPageSize)
	b.SetBytes(int64(HeaderSize + 5 + 5*80))
	b.ReportAllocs()
	for b.Loop() {
		var err error
		dst, err = AppendPage(dst[:0], p)
		if err != nil {
			b.Fatal(err)
		}
		p.Seq++
	}
}

// BenchmarkReadPacket reads back 1 s of such pages, packet by packet.
func BenchmarkReadPacket(b *testing.B) {
	var stream []byte
	p := &Page{Serial: 1}
	for range 5 {
		p.Packets = append(p.Packets, make([]byte, 80))
	}
	for i := range 10 {
		p.Seq, p.Granule = uint32(i), int64((i+1)*5*960)
		stream, _ = AppendPage(stream, p)
	}
	br := bytes.NewReader(stream)
	b.SetBytes(int64(len(stream)))
	b.ReportAllocs()
	for b.Loop() {
		br.Reset(stream)
		r := NewReader(br)
		for {
			if _, _, err := r.ReadPacket(); err == io.EOF {
				break
			} else if err != nil {
				b.Fatal(err)
			}
		}
	}
}

// BenchmarkValidPrefix scans 1 s of pages as the recovery tool does.
func BenchmarkValidPrefix(b *testing.B) {
	var stream []byte
	p := &Page{Serial: 1}
	for range 5 {
		p.Packets = append(p.Packets, make([]byte, 80))
	}
	for i := range 10 {
		p.Seq, p.Granule = uint32(i), int64((i+1)*5*960)
		stream, _ = AppendPage(stream, p)
	}
	br := bytes.NewReader(stream)
	b.SetBytes(int64(len(stream)))
	b.ReportAllocs()
	for b.Loop() {
		br.Reset(stream)
		if n, _, _, err := ValidPrefix(br); err != nil || n != int64(len(stream)) {
			b.Fatal(n, err)
		}
	}
}

// BenchmarkAppendPackets parses a page of five packets in place, as a
// sampled rehearsal listener does with every page: no allocation.
func BenchmarkAppendPackets(b *testing.B) {
	p := &Page{Serial: 1, Granule: 48000}
	for range 5 {
		p.Packets = append(p.Packets, make([]byte, 80))
	}
	page, err := AppendPage(nil, p)
	if err != nil {
		b.Fatal(err)
	}
	pkts := make([][]byte, 0, 5)
	b.SetBytes(int64(len(page)))
	b.ReportAllocs()
	for b.Loop() {
		if pkts, err = AppendPackets(pkts[:0], page); err != nil || len(pkts) != 5 {
			b.Fatal(len(pkts), err)
		}
	}
}
