package record

import (
	"bytes"
	"io"
	"os"
	"path/filepath"
	"testing"

	"github.com/amphi-audio/amphi/internal/ogg"
	"github.com/amphi-audio/amphi/internal/program"
)

// TestContinueAppendsTheResumedProgramToTheFile cuts a recording as a
// crash does, mid-page, and continues it: the file is one stream (serial,
// page numbers and granule positions follow on) that ends with an EOS page
// and that ffmpeg decodes whole.
func TestContinueAppendsTheResumedProgramToTheFile(t *testing.T) {
	cs := chunksOf(t, silence, 50, false)
	path, _ := recordPaused(t, cs, nil)
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, data[:len(data)-3], 0o644); err != nil { // the last page torn
		t.Fatal(err)
	}
	whole := int64(len(data) - len(cs[len(cs)-1].Page))

	r, at, err := Continue(path, program.Headers(serial), testConfig())
	if err != nil {
		t.Fatal(err)
	}
	if want := (program.Position{Seq: 9, Granule: 45 * 960}); at != want {
		t.Fatalf("Continue at %+v, want %+v: the chunk after the last whole page", at, want)
	}
	if r.Duration() != audio(45) || r.Bytes() != whole {
		t.Errorf("Duration %v Bytes %d before any write, want %v and %d", r.Duration(), r.Bytes(), audio(45), whole)
	}
	p := program.NewPackerAt(serial, at)
	for range 23 {
		c, err := p.Add(silence)
		if err != nil {
			t.Fatal(err)
		}
		if c != nil {
			r.Write(c)
		}
	}
	c, err := p.Finish()
	if err != nil {
		t.Fatal(err)
	}
	r.Write(c)
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}

	got, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if s := checkStream(t, got); s.frames != 45+23 || !s.eos {
		t.Errorf("file holds %d frames, EOS %v; want %d and EOS", s.frames, s.eos, 45+23)
	}
	if r.Bytes() != int64(len(got)) || r.Duration() != audio(45+23) {
		t.Errorf("Bytes %d Duration %v; file %d bytes, want %v", r.Bytes(), r.Duration(), len(got), audio(45+23))
	}
	checkFFmpeg(t, path, 45+23)
}

func TestContinueRefusesAFileThatCannotGoOn(t *testing.T) {
	read := func(cs []*program.Chunk) []byte {
		path, _ := recordPaused(t, cs, nil)
		b, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	ended, crashed := read(chunksOf(t, silence, 12, true)), read(chunksOf(t, silence, 10, false))
	headers := program.Headers(serial)
	tests := []struct {
		name    string
		data    []byte
		headers []byte
	}{
		{"ended", ended, headers},
		{"another serial", crashed, program.Headers(serial + 1)},
		{"torn in the headers", headers[:len(headers)-1], headers},
		{"empty", nil, headers},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := filepath.Join(t.TempDir(), "crashed.opus")
			if err := os.WriteFile(p, tt.data, 0o644); err != nil {
				t.Fatal(err)
			}
			if r, _, err := Continue(p, tt.headers, testConfig()); err == nil {
				r.Close()
				t.Fatal("Continue succeeded")
			}
			// Recover still ends it for good.
			if _, _, err := Recover(p, tt.headers); err != nil {
				t.Fatal(err)
			}
			got, err := os.ReadFile(p)
			if err != nil {
				t.Fatal(err)
			}
			if last := lastPage(t, got); last.Flags&ogg.FlagEOS == 0 {
				t.Errorf("the last page (%d) has flags %#x, no EOS", last.Seq, last.Flags)
			}
		})
	}
}

// lastPage returns the last page of an Ogg stream.
func lastPage(t *testing.T, data []byte) *ogg.Page {
	t.Helper()
	rd := ogg.NewReader(bytes.NewReader(data))
	var last *ogg.Page
	for {
		p, err := rd.ReadPage()
		if err == io.EOF && last != nil {
			return last
		}
		if err != nil {
			t.Fatalf("page after %v: %v", last, err)
		}
		last = p
	}
}

// TestAPauseOutlivesACrash: a host who paused the recording is not
// recorded again because the server was killed and its program resumed.
func TestAPauseOutlivesACrash(t *testing.T) {
	path, r := recordPaused(t, chunksOf(t, silence, 10, false), nil)
	// What a pause leaves on disk, which a kill keeps there.
	r.Pause()
	if _, err := os.Stat(pausedMark(path)); err != nil {
		t.Fatalf("a pause left no mark: %v", err)
	}
	r.Resume()
	if _, err := os.Stat(pausedMark(path)); !os.IsNotExist(err) {
		t.Fatalf("the mark outlived the resume: %v", err)
	}
	r.Pause()

	c, _, err := Continue(path, program.Headers(serial), testConfig())
	if err != nil {
		t.Fatal(err)
	}
	if c.Recording() {
		t.Error("the recording resumed after the crash is on: the host had paused it")
	}
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(pausedMark(path)); !os.IsNotExist(err) {
		t.Errorf("the mark outlived the end of the program: %v", err)
	}
}
