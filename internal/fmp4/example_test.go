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

// The AAC rendition's init segment: the encoder's AudioSpecificConfig
// (here mono AAC-LC at 48 kHz) and its priming of 1024 samples, skipped
// with the Opus program's pre-skip by the edit list; its fragments carry
// 1024-sample access units as AppendFragment writes any samples.
func ExampleAppendAACInit() {
	init, err := fmp4.AppendAACInit(nil, 1, 1024+312, 64000, []byte{0x11, 0x88})
	if err != nil {
		panic(err)
	}
	fmt.Println(len(init))
	// Output: 632
}
