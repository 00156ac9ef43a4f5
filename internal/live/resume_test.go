package live

import (
	"bytes"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/amphi-audio/amphi"
	"github.com/amphi-audio/amphi/internal/ogg"
	"github.com/amphi-audio/amphi/internal/program"
	"github.com/amphi-audio/amphi/internal/record"
)

// collect is a Publisher that keeps every chunk.
type collect struct {
	mu sync.Mutex
	cs []*program.Chunk
}

func (c *collect) PublishChunk(_ string, ch *program.Chunk) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.cs = append(c.cs, ch)
	return nil
}

func (c *collect) count() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.cs)
}

// crashedRecording writes the recording of a program that a crash cut
// after chunks chunks and returns its path.
func crashedRecording(t *testing.T, serial uint32, chunks int) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "space.opus")
	cfg := record.DefaultConfig()
	cfg.Logger = slog.New(slog.DiscardHandler)
	rec, err := record.Create(path, program.Headers(serial), cfg)
	if err != nil {
		t.Fatal(err)
	}
	p := program.NewPacker(serial)
	for range chunks * amphi.FramesPerChunk {
		c, err := p.Add([]byte{0xf8, 0xff, 0xfe}) // 20 ms of CELT silence
		if err != nil {
			t.Fatal(err)
		}
		if c != nil {
			rec.Write(c)
		}
	}
	// Closed without the program's last chunk: no EOS, as after a kill.
	if err := rec.Close(); err != nil {
		t.Fatal(err)
	}
	return path
}

// TestResumeGoesOnFromTheRecordedProgram resumes a space whose recording
// a crash cut after 30 chunks: the session's first chunk is the 31st (the
// same serial, page 32, the granule after the 30th), and the file gets the
// rest of the program after what it held, ending with an EOS page.
func TestResumeGoesOnFromTheRecordedProgram(t *testing.T) {
	const serial, recorded = 0x5eed, 30
	path := crashedRecording(t, serial, recorded)
	pub := &collect{}
	cfg := DefaultConfig()
	cfg.Logger = slog.New(slog.DiscardHandler)
	s, err := Resume(&amphi.Space{ID: "resumed", Serial: serial}, path, pub, cfg)
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for pub.count() < 3 && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	if err := s.Stop(); err != nil {
		t.Fatal(err)
	}

	pub.mu.Lock()
	cs := pub.cs
	pub.mu.Unlock()
	if len(cs) < 3 {
		t.Fatalf("%d chunks published in 10 s", len(cs))
	}
	first, _ := ogg.ParseHeader(cs[0].Page)
	want := ogg.Header{Serial: serial, Seq: recorded + 2, Granule: (recorded + 1) * amphi.ChunkSamples}
	if cs[0].Seq != recorded || first.Serial != want.Serial || first.Seq != want.Seq || first.Granule != want.Granule {
		t.Errorf("first chunk %d: serial %#x page %d granule %d; want chunk %d, serial %#x page %d granule %d",
			cs[0].Seq, first.Serial, first.Seq, first.Granule, recorded, want.Serial, want.Seq, want.Granule)
	}
	if got := s.Chunks(0, recorded+1); len(got) != 1 || got[0] != cs[0] {
		t.Errorf("Chunks before the resumed program: %d chunks, want only the first resumed one", len(got))
	}

	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	rd := ogg.NewReader(bytes.NewReader(data))
	var pages int
	var last *ogg.Page
	for {
		p, err := rd.ReadPage()
		if err != nil {
			break
		}
		if p.Seq != uint32(pages) || p.Serial != serial {
			t.Fatalf("page %d of the file: number %d serial %#x", pages, p.Seq, p.Serial)
		}
		pages, last = pages+1, p
	}
	end, _ := ogg.ParseHeader(cs[len(cs)-1].Page)
	if pages != 2+recorded+len(cs) || last.Flags&ogg.FlagEOS == 0 || last.Granule != end.Granule {
		t.Errorf("file: %d pages, the last with flags %#x at granule %d; want %d pages, the last the program's EOS page at %d",
			pages, last.Flags, last.Granule, 2+recorded+len(cs), end.Granule)
	}
}
