package record

import (
	"errors"
	"os"
	"path/filepath"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/amphi-audio/amphi/internal/program"
)

func TestOpenKnobFailsCreate(t *testing.T) {
	cfg := testConfig()
	cfg.Knobs.Open = func(string) error { return syscall.EROFS }
	path := filepath.Join(t.TempDir(), "space.opus")
	if _, err := Create(path, program.Headers(serial), cfg); !errors.Is(err, syscall.EROFS) {
		t.Fatalf("Create = %v, want the injected EROFS", err)
	}
	if _, err := os.Stat(path); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("a file was made despite the failed open: %v", err)
	}
}

func TestWriteKnobErrorStopsTheRecording(t *testing.T) {
	cfg := testConfig()
	var writes atomic.Int64
	// The headers and two chunks reach the disk; then it is full.
	cfg.Knobs.Write = func() error {
		if writes.Add(1) > 3 {
			return syscall.ENOSPC
		}
		return nil
	}
	r, err := Create(filepath.Join(t.TempDir(), "space.opus"), program.Headers(serial), cfg)
	if err != nil {
		t.Fatal(err)
	}
	cs := chunks(t, 50, false)
	for _, c := range cs {
		r.Write(c)
	}
	if err := r.Close(); !errors.Is(err, syscall.ENOSPC) || !errors.Is(r.Err(), syscall.ENOSPC) {
		t.Fatalf("Close = %v, Err = %v; want the injected ENOSPC", err, r.Err())
	}
	if r.Duration() != audio(10) || r.Dropped() != int64(len(cs)-3) {
		t.Errorf("Duration %v, Dropped %d; want the first two chunks written and the other %d dropped", r.Duration(), r.Dropped(), len(cs)-3)
	}
}

func TestSyncKnobErrorStopsTheRecording(t *testing.T) {
	cfg := testConfig()
	cfg.SyncEvery = time.Nanosecond // a sync after every chunk
	cfg.Knobs.Sync = func() error { return syscall.EIO }
	r, err := Create(filepath.Join(t.TempDir(), "space.opus"), program.Headers(serial), cfg)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range chunks(t, 25, false) {
		r.Write(c)
	}
	if err := r.Close(); !errors.Is(err, syscall.EIO) || !errors.Is(r.Err(), syscall.EIO) {
		t.Fatalf("Close = %v, Err = %v; want the injected EIO", err, r.Err())
	}
}

func TestSlowDiskCountsAsLaggingOnceAndLosesNothing(t *testing.T) {
	cfg := testConfig()
	// The first page's write waits until the program is far ahead: a disk
	// that stalls once, then keeps up.
	first, release := make(chan struct{}), make(chan struct{})
	var writes atomic.Int64
	cfg.Knobs.Write = func() error {
		if writes.Add(1) == 2 { // after the headers
			close(first)
			<-release
		}
		return nil
	}
	path := filepath.Join(t.TempDir(), "space.opus")
	r, err := Create(path, program.Headers(serial), cfg)
	if err != nil {
		t.Fatal(err)
	}
	cs := chunks(t, 250, false) // 5 s of program
	r.Write(cs[0])
	<-first
	for _, c := range cs[1:] {
		r.Write(c)
	}
	close(release)
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}
	if r.Lagged() != 1 || r.Dropped() != 0 || r.Duration() != audio(250) {
		t.Errorf("Lagged %d, Dropped %d, Duration %v; want one lag, nothing dropped, %v recorded", r.Lagged(), r.Dropped(), r.Duration(), audio(250))
	}
}
