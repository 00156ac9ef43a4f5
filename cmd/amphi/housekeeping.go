package main

import (
	"context"
	"time"
)

// What a node with a store does on its own, besides its spaces: it counts
// the storage recordings and clips take, for /ops and /metrics, and with
// --retention-days deletes the recordings and clips of spaces that ended
// longer ago than that.

// storageEvery is how often the storage is counted: a query summing one
// column of two tables.
const storageEvery = 10 * time.Second

// retentionEvery is how often expired recordings are looked for.
const retentionEvery = time.Hour

// day is a retention day.
const day = 24 * time.Hour

// startHousekeeping starts the storage count and, with a retention, its
// deletions.
func (m *Main) startHousekeeping() {
	m.every(storageEvery, m.countStorage)
	if days := m.Config.RetentionDays; days > 0 {
		m.every(retentionEvery, func(ctx context.Context) {
			n, err := m.api.ExpireRecordings(ctx, time.Duration(days)*day)
			if err != nil {
				m.Logger.Warn("retention: delete expired recordings", "err", err)
			}
			if n > 0 {
				m.Logger.Info("retention: deleted the recordings and clips of spaces ended long ago", "spaces", n, "days", days)
				m.countStorage(ctx)
			}
		})
	}
}

func (m *Main) countStorage(ctx context.Context) {
	recordings, clips, err := m.api.Storage(ctx)
	if err != nil {
		m.Logger.Warn("storage: count", "err", err)
		return
	}
	m.recordingBytes.Store(uint64(recordings))
	m.clipBytes.Store(uint64(clips))
}
