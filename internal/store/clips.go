package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/amphi-audio/amphi"
)

const clipCols = `id, space_id, title, from_ns, to_ns, path, bytes, created_at`

// PutClip stores a clip whose file is in place. It fails with
// amphi.ENotFound if there is no such space, amphi.EConflict if the id is
// taken and amphi.EInvalid for an empty range.
func (db *DB) PutClip(ctx context.Context, c *amphi.Clip) error {
	if err := db.putClip(ctx, c); err != nil {
		return fmt.Errorf("store: put clip %q of space %q: %w", c.ID, c.SpaceID, err)
	}
	return nil
}

func (db *DB) putClip(ctx context.Context, c *amphi.Clip) error {
	if c.ID == "" || c.Path == "" || c.From < 0 || c.To <= c.From || c.Bytes < 0 {
		return amphi.Errorf(amphi.EInvalid, "a clip needs an id, a path and a range")
	}
	created, err := nanos("created_at", c.CreatedAt)
	if err != nil {
		return err
	}
	if _, err := db.Space(ctx, c.SpaceID); err != nil {
		return err
	}
	n, err := db.exec(ctx, `INSERT INTO clips (`+clipCols+`) VALUES (?, ?, ?, ?, ?, ?, ?, ?)
		ON CONFLICT (id) DO NOTHING`,
		c.ID, c.SpaceID, c.Title, int64(c.From), int64(c.To), c.Path, c.Bytes, created)
	if err != nil {
		return err
	}
	if n == 0 {
		return amphi.Errorf(amphi.EConflict, "clip %q already exists", c.ID)
	}
	return nil
}

// Clip returns the clip with the id, or an error with code
// amphi.ENotFound.
func (db *DB) Clip(ctx context.Context, id string) (*amphi.Clip, error) {
	var c amphi.Clip
	var from, to, created int64
	err := db.db.QueryRowContext(ctx, `SELECT `+clipCols+` FROM clips WHERE id = ?`, id).
		Scan(&c.ID, &c.SpaceID, &c.Title, &from, &to, &c.Path, &c.Bytes, &created)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, amphi.Errorf(amphi.ENotFound, "no clip %q", id)
	}
	if err != nil {
		return nil, fmt.Errorf("store: clip %q: %w", id, err)
	}
	c.From, c.To, c.CreatedAt = time.Duration(from), time.Duration(to), time.Unix(0, created).UTC()
	return &c, nil
}

// DeleteRecording forgets a space's recording, its clips and its timeline,
// and returns their files' paths (relative to the data directory) for the
// caller to remove: the rows go first, so nothing is served from a file being
// removed; a crash in between leaves files nobody serves. It fails with
// amphi.ENotFound when the space has no recording.
func (db *DB) DeleteRecording(ctx context.Context, spaceID string) ([]string, error) {
	paths, err := db.deleteRecording(ctx, spaceID)
	if err != nil {
		return nil, fmt.Errorf("store: delete the recording of space %q: %w", spaceID, err)
	}
	return paths, nil
}

func (db *DB) deleteRecording(ctx context.Context, spaceID string) ([]string, error) {
	tx, err := db.db.BeginTx(ctx, nil)
	if err != nil {
		return nil, err
	}
	defer tx.Rollback()
	var paths []string
	rows, err := tx.QueryContext(ctx, `SELECT path FROM recordings WHERE space_id = ?
		UNION ALL SELECT path FROM clips WHERE space_id = ?`, spaceID, spaceID)
	if err != nil {
		return nil, err
	}
	for rows.Next() {
		var p string
		if err := rows.Scan(&p); err != nil {
			rows.Close()
			return nil, err
		}
		paths = append(paths, p)
	}
	if err := rows.Close(); err != nil {
		return nil, err
	}
	res, err := tx.ExecContext(ctx, `DELETE FROM recordings WHERE space_id = ?`, spaceID)
	if err != nil {
		return nil, err
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return nil, amphi.Errorf(amphi.ENotFound, "space %q has no recording", spaceID)
	}
	// The timeline describes the recording: it goes with it.
	for _, q := range []string{`DELETE FROM clips WHERE space_id = ?`, `DELETE FROM speaker_spans WHERE space_id = ?`,
		`DELETE FROM reaction_buckets WHERE space_id = ?`} {
		if _, err := tx.ExecContext(ctx, q, spaceID); err != nil {
			return nil, err
		}
	}
	return paths, tx.Commit()
}

// ExpiredRecordings returns up to limit spaces that ended before t and
// still have a recording: what a retention period deletes.
func (db *DB) ExpiredRecordings(ctx context.Context, t time.Time, limit int) ([]string, error) {
	rows, err := db.db.QueryContext(ctx, `SELECT s.id FROM spaces s JOIN recordings r ON r.space_id = s.id
		WHERE s.state = 'ended' AND s.ended_at < ? ORDER BY s.ended_at LIMIT ?`, t.UnixNano(), limit)
	if err != nil {
		return nil, fmt.Errorf("store: expired recordings: %w", err)
	}
	defer rows.Close()
	var ids []string
	for rows.Next() {
		var id string
		if err := rows.Scan(&id); err != nil {
			return nil, fmt.Errorf("store: expired recordings: %w", err)
		}
		ids = append(ids, id)
	}
	return ids, rows.Err()
}

// Storage returns the bytes the recordings and the clips take.
func (db *DB) Storage(ctx context.Context) (recordings, clips int64, err error) {
	err = db.db.QueryRowContext(ctx, `SELECT
		(SELECT COALESCE(SUM(bytes), 0) FROM recordings), (SELECT COALESCE(SUM(bytes), 0) FROM clips)`).Scan(&recordings, &clips)
	if err != nil {
		return 0, 0, fmt.Errorf("store: storage: %w", err)
	}
	return recordings, clips, nil
}
