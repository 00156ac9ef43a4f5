package store

import (
	"os"
	"syscall"
	"testing"

	"github.com/amphi-audio/amphi"
)

// TestOpenCreatesFilesOnlyTheOwnerReads holds even under a permissive
// umask: the database, its write-ahead log and its shared-memory index
// hold tokens' and sessions' hashes and must not be readable by others.
func TestOpenCreatesFilesOnlyTheOwnerReads(t *testing.T) {
	old := syscall.Umask(0)
	defer syscall.Umask(old)
	db, path := openTest(t)
	if err := db.CreateSpace(t.Context(), space("modes", amphi.StateLive, t0)); err != nil { // something in the log
		t.Fatal(err)
	}
	for _, p := range []string{path, path + "-wal", path + "-shm"} {
		fi, err := os.Stat(p)
		if err != nil {
			t.Fatal(err)
		}
		if perm := fi.Mode().Perm(); perm != 0o600 {
			t.Errorf("%s has mode %#o, want 0600", p, perm)
		}
	}
}
