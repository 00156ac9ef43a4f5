package clip

import (
	"io"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/amphi-audio/amphi/internal/clip/cliptest"
)

// BenchmarkCutTenMinutesOfTwoHours is the time to cut a 10-minute clip out
// of the middle of a 2-hour recording, file opened, bisection and copy
// included (the page cache warm, as for a recording just made).
func BenchmarkCutTenMinutesOfTwoHours(b *testing.B) {
	path := filepath.Join(b.TempDir(), "long.opus")
	if err := cliptest.Write(path, 2*time.Hour); err != nil {
		b.Fatal(err)
	}
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
