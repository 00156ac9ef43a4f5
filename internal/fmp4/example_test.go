package fmp4_test

import (
	"fmt"

	"github.com/amphi-audio/amphi/internal/fmp4"
)

// An init segment, then one fragment per part: what an HLS player joins.
func ExampleAppendFragment() {
	init, err := fmp4.AppendInit(nil, 1, 312, 48000)
	if err != nil {
		panic(err)
	}
	part := []fmp4.Sample{
		{Data: []byte{0xf8, 0x01}, Duration: 960}, // two 20 ms Opus packets
		{Data: []byte{0xf8, 0x02}, Duration: 960},
	}
	buf := make([]byte, 0, fmp4.FragmentSize(part)) // the one allocation
	frag := fmp4.AppendFragment(buf, 1, 0, part)
	fmt.Println(len(init), len(frag), string(frag[4:8]))
	// Output: 612 112 moof
}
