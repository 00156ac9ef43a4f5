package main

import (
	"context"
	"encoding/hex"
	"fmt"
	"path/filepath"
	"time"

	"github.com/amphi-audio/amphi/internal/edge"
)

// busTokenFile holds the embedded NATS server's token in the data
// directory, 0600, so that local processes given it (rehearsal workers,
// edges) can join, and it survives a restart.
const busTokenFile = "nats.token"

// busToken reads the embedded bus's token, making one on first start.
func busToken(dataDir string) (string, error) {
	key, err := loadKey(filepath.Join(dataDir, busTokenFile))
	if err != nil {
		return "", fmt.Errorf("bus token: %w", err)
	}
	return hex.EncodeToString(key), nil
}

// busSummary says where the bus is for a person: its URL without the
// token, and where the token is kept.
func (m *Main) busSummary() string {
	if m.Config.Bus.URL != "" {
		return "bus at " + m.bus.RedactedURL()
	}
	return fmt.Sprintf("bus at %s with the token in %s", m.bus.RedactedURL(), filepath.Join(m.Config.DataDir, busTokenFile))
}

// spaceProgram tells the edge what a space's chunks are checked against,
// from the store: its serial, and when it started.
func (m *Main) spaceProgram(id string) (edge.SpaceInfo, error) {
	// The bus's goroutine waits: a lookup is one small read, once a space.
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	sp, err := m.db.Space(ctx, id)
	if err != nil {
		return edge.SpaceInfo{}, err
	}
	if sp.StartedAt == nil {
		return edge.SpaceInfo{}, fmt.Errorf("space %s has not started", id)
	}
	info := edge.SpaceInfo{Serial: sp.Serial, Started: *sp.StartedAt}
	if sess := m.live.Session(id); sess != nil {
		info.Run = sess.Run()
	}
	return info, nil
}
