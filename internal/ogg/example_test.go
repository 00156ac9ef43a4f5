package ogg_test

import (
	"bytes"
	"fmt"
	"io"
	"os"

	"github.com/amphi-audio/amphi/internal/ogg"
)

func ExampleAppendPage() {
	const serial = 1
	// 20 ms of silence as a CELT-only mono Opus packet.
	silence := []byte{0xf8, 0xff, 0xfe}

	var stream []byte
	pages := []*ogg.Page{
		{Flags: ogg.FlagBOS, Serial: serial, Seq: 0,
			Packets: [][]byte{ogg.AppendOpusHead(nil, 1, 312, 48000)}},
		{Serial: serial, Seq: 1,
			Packets: [][]byte{ogg.AppendOpusTags(nil, "amphi")}},
		// Granule positions count 48 kHz samples, pre-skip included.
		{Flags: ogg.FlagEOS, Serial: serial, Seq: 2, Granule: 312 + 2*960,
			Packets: [][]byte{silence, silence}},
	}
	for _, p := range pages {
		var err error
		stream, err = ogg.AppendPage(stream, p)
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return
		}
	}
	fmt.Println(len(stream), "bytes")

	r := ogg.NewReader(bytes.NewReader(stream))
	for {
		pkt, granule, err := r.ReadPacket()
		if err == io.EOF {
			break
		}
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return
		}
		fmt.Printf("%q... granule %d\n", pkt[:min(8, len(pkt))], granule)
	}
	// Output:
	// 131 bytes
	// "OpusHead"... granule 0
	// "OpusTags"... granule 0
	// "\xf8\xff\xfe"... granule 2232
	// "\xf8\xff\xfe"... granule 2232
}
