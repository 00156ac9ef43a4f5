// Package cliptest writes long recordings for benchmarks of the packages
// that read them (clip, replay).
package cliptest

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/amphi-audio/amphi/internal/ogg"
)

// Recording writes an Ogg Opus file of d as amphi's recorder lays it out
// (a page per 200 ms chunk of 20 ms CELT packets of 80 bytes: 32 kbit/s)
// and returns its path.
func Recording(tb testing.TB, d time.Duration) string {
	tb.Helper()
	path := filepath.Join(tb.TempDir(), "long.opus")
	f, err := os.Create(path)
	if err != nil {
		tb.Fatal(err)
	}
	defer f.Close()
	const preSkip, perPage = 312, 10
	buf := ogg.AppendOpusHead(nil, 1, preSkip, 48000)
	page := &ogg.Page{Flags: ogg.FlagBOS, Serial: 7, Packets: [][]byte{buf}}
	out, _ := ogg.AppendPage(nil, page)
	page = &ogg.Page{Serial: 7, Seq: 1, Packets: [][]byte{ogg.AppendOpusTags(nil, "amphi")}}
	out, _ = ogg.AppendPage(out, page)
	pkt := make([]byte, 80)
	pkt[0] = 31 << 3 // CELT, 20 ms, one frame
	packets := make([][]byte, perPage)
	for i := range packets {
		packets[i] = pkt
	}
	granule := int64(0)
	for seq := uint32(2); granule < int64(d/time.Millisecond)*48+preSkip; seq++ {
		granule += perPage * 960
		out, _ = ogg.AppendPage(out, &ogg.Page{Serial: 7, Seq: seq, Granule: granule, Packets: packets})
		if len(out) > 1<<20 {
			if _, err := f.Write(out); err != nil {
				tb.Fatal(err)
			}
			out = out[:0]
		}
	}
	if _, err := f.Write(out); err != nil {
		tb.Fatal(err)
	}
	return path
}
