package main

import (
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// secureDataDir creates the data directory for its owner only and takes
// other users' access away from it and from the files directly in it (the
// database with its log, the keys), which an older amphi, a restored
// backup or a loose umask may have left readable. It logs each change.
// Recordings need no pass of their own: the directory they sit in is
// closed.
func secureDataDir(dir string, logger *slog.Logger) error {
	if err := os.MkdirAll(filepath.Join(dir, "recordings"), 0o700); err != nil {
		return fmt.Errorf("data directory: %w", err)
	}
	if err := ownerOnly(dir, 0o700, logger); err != nil {
		return err
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		return fmt.Errorf("data directory: %w", err)
	}
	for _, e := range entries {
		if e.Type().IsRegular() {
			if err := ownerOnly(filepath.Join(dir, e.Name()), 0o600, logger); err != nil {
				return err
			}
		}
	}
	return nil
}

// ownerOnly clears the permission bits of path outside limit, keeping a
// stricter mode as it is.
func ownerOnly(path string, limit fs.FileMode, logger *slog.Logger) error {
	fi, err := os.Stat(path)
	if err != nil {
		return fmt.Errorf("data directory: %w", err)
	}
	was := fi.Mode().Perm()
	if was&^limit == 0 {
		return nil
	}
	if err := os.Chmod(path, was&limit); err != nil {
		return fmt.Errorf("data directory: tighten %s: %w", path, err)
	}
	logger.Warn("data directory: took away other users' access", "path", path,
		"was", fmt.Sprintf("%#o", was), "now", fmt.Sprintf("%#o", was&limit))
	return nil
}

// errDataDirInUse is lockDataDir's error when another process holds the
// directory.
var errDataDirInUse = errors.New("data directory in use")

// lockDataDir takes the data directory for this process alone until the
// returned file is closed or the process dies (the kernel drops the lock
// even on kill -9): each recording has one writer, and a second server on
// the same directory, which would resume the same spaces into the same
// files, is refused with the first one's pid.
func lockDataDir(dir string) (*os.File, error) {
	path := filepath.Join(dir, "lock")
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("data directory: %w", err)
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		f.Close()
		if errors.Is(err, unix.EWOULDBLOCK) {
			holder, _ := os.ReadFile(path)
			return nil, fmt.Errorf("%w: %s is in use by another amphi serve (pid %s): one server per data directory, or start this one with --standby", errDataDirInUse, dir, strings.TrimSpace(string(holder)))
		}
		return nil, fmt.Errorf("data directory: lock %s: %w", path, err)
	}
	if err := f.Truncate(0); err == nil {
		f.WriteAt([]byte(strconv.Itoa(os.Getpid())+"\n"), 0) // for the message above only
	}
	return f, nil
}
