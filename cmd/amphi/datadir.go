package main

import (
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
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
