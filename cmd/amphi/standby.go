package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"golang.org/x/sys/unix"
)

// A standby origin. `amphi serve --standby` on the data directory of the
// active server (the same disk, or shared storage whose flock works) waits
// for the directory's lock: when the active one dies, even by kill -9, the
// kernel drops its lock, the standby takes it, and its start-up resumes the
// spaces the store says are live (space.Lifecycle.Recover), their
// recordings going on in the same files. The lock is the leadership: there
// is never a second writer, and an old active server that comes back
// finds the lock held and stands by in turn (with --standby) or is refused
// (without). State needs no replication: it is the directory itself.
//
// An active server stopped with SIGTERM while a standby waits hands its
// spaces over instead of ending them: its sessions stop without ending
// their programs (live.Manager.HandOver), and the standby resumes them.
// Standbys show they wait with a shared lock on standby.lock, which the
// active one tests.

// standbyPoll is how often a standby tries the lock: the takeover waits
// at most this much longer than the active server's death.
const standbyPoll = 50 * time.Millisecond

// handoverTimeout bounds a handing-over server's shutdown: its listeners
// and speakers reconnect to the standby, which starts only once this one
// has let the directory go.
const handoverTimeout = time.Second

// standbyMark is the file standbys hold a shared lock on while they wait.
const standbyMark = "standby.lock"

// errStoodDown is Run's answer when a standby is stopped before it took
// over: nothing was served, nothing is wrong.
var errStoodDown = errors.New("serve: stopped while standing by")

// waitDataDir waits until this process holds the data directory's lock
// (lockDataDir), or ctx ends (errStoodDown).
func waitDataDir(ctx context.Context, dir string) (*os.File, error) {
	mark, err := os.OpenFile(filepath.Join(dir, standbyMark), os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("standby: %w", err)
	}
	defer mark.Close() // the shared lock goes with it
	if err := unix.Flock(int(mark.Fd()), unix.LOCK_SH); err != nil {
		return nil, fmt.Errorf("standby: lock %s: %w", mark.Name(), err)
	}
	tick := time.NewTicker(standbyPoll)
	defer tick.Stop()
	for {
		f, err := lockDataDir(dir)
		if !errors.Is(err, errDataDirInUse) {
			return f, err
		}
		select {
		case <-ctx.Done():
			return nil, errStoodDown
		case <-tick.C:
		}
	}
}

// standbyWaits reports whether a standby waits for the data directory.
func standbyWaits(dir string) bool {
	f, err := os.Open(filepath.Join(dir, standbyMark))
	if err != nil {
		return false
	}
	defer f.Close()
	return errors.Is(unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB), unix.EWOULDBLOCK)
}
