// Package cliptest writes long recordings for the tests and benchmarks of
// the packages that read them (clip, replay).
package cliptest

import (
	"bufio"
	"os"
	"time"

	"github.com/amphi-audio/amphi/internal/ogg"
)

// Write writes an Ogg Opus file of d at path as amphi's recorder lays it
// out (a page per 200 ms chunk of 20 ms CELT packets of 80 bytes: 32
// kbit/s).
func Write(path string, d time.Duration) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	w := bufio.NewWriterSize(f, 1<<20)
	const preSkip, perPage = 312, 10
	out, _ := ogg.AppendPage(nil, &ogg.Page{Flags: ogg.FlagBOS, Serial: 7, Packets: [][]byte{ogg.AppendOpusHead(nil, 1, preSkip, 48000)}})
	out, _ = ogg.AppendPage(out, &ogg.Page{Serial: 7, Seq: 1, Packets: [][]byte{ogg.AppendOpusTags(nil, "amphi")}})
	w.Write(out)
	pkt := make([]byte, 80)
	pkt[0] = 31 << 3 // CELT, 20 ms, one frame
	packets := make([][]byte, perPage)
	for i := range packets {
		packets[i] = pkt
	}
	granule := int64(0)
	for seq := uint32(2); granule < int64(d/time.Millisecond)*48+preSkip; seq++ {
		granule += perPage * 960
		out, _ = ogg.AppendPage(out[:0], &ogg.Page{Serial: 7, Seq: seq, Granule: granule, Packets: packets})
		w.Write(out)
	}
	if err := w.Flush(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}
