package clip

import (
	"io"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/amphi-audio/amphi/internal/ogg"
)

// longRecording writes an Ogg Opus file of d as amphi's recorder lays it
// out (a page per 200 ms chunk of 20 ms CELT packets of 80 bytes: 32
// kbit/s) and returns its path.
func longRecording(b *testing.B, d time.Duration) string {
	b.Helper()
	path := filepath.Join(b.TempDir(), "long.opus")
	f, err := os.Create(path)
	if err != nil {
		b.Fatal(err)
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
	for seq := uint32(2); granule < durationToSamples(d)+preSkip; seq++ {
		granule += perPage * 960
		out, _ = ogg.AppendPage(out, &ogg.Page{Serial: 7, Seq: seq, Granule: granule, Packets: packets})
		if len(out) > 1<<20 {
			f.Write(out)
			out = out[:0]
		}
	}
	f.Write(out)
	return path
}

// BenchmarkCutTenMinutesOfTwoHours is the time to cut a 10-minute clip out
// of the middle of a 2-hour recording, file opened, bisection and copy
// included (the page cache warm, as for a recording just made).
func BenchmarkCutTenMinutesOfTwoHours(b *testing.B) {
	path := longRecording(b, 2*time.Hour)
	for b.Loop() {
		f, err := os.Open(path)
		if err != nil {
			b.Fatal(err)
		}
		st, _ := f.Stat()
		rec, err := Open(f, st.Size())
		if err != nil {
			b.Fatal(err)
		}
		r, err := rec.Cut(io.Discard, time.Hour, time.Hour+10*time.Minute, "TITLE=bench")
		if err != nil {
			b.Fatal(err)
		}
		f.Close()
		b.SetBytes(r.Bytes)
	}
}
