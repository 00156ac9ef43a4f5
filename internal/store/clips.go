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
