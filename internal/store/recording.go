package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/amphi-audio/amphi"
)

const recordingCols = `space_id, path, duration_ns, bytes, finalized`

// PutRecording stores r as the index entry of its space's recording,
// replacing any earlier entry: the recorder calls it when it opens the file
// and again when it finalises it. It fails with amphi.ENotFound if there is
// no such space and amphi.EInvalid for a missing path or a negative size.
func (db *DB) PutRecording(ctx context.Context, r *amphi.Recording) error {
	if err := db.putRecording(ctx, r); err != nil {
		return fmt.Errorf("store: put recording of space %q: %w", r.SpaceID, err)
	}
	return nil
}

func (db *DB) putRecording(ctx context.Context, r *amphi.Recording) error {
	switch {
	case r.Path == "":
		return amphi.Errorf(amphi.EInvalid, "recording path is missing")
	case r.Duration < 0:
		return amphi.Errorf(amphi.EInvalid, "recording duration %v is negative", r.Duration)
	case r.Bytes < 0:
		return amphi.Errorf(amphi.EInvalid, "recording size %d is negative", r.Bytes)
	}
	n, err := db.exec(ctx, `INSERT INTO recordings (`+recordingCols+`)
		SELECT ?, ?, ?, ?, ? WHERE EXISTS (SELECT 1 FROM spaces WHERE id = ?)
		ON CONFLICT (space_id) DO UPDATE SET
			path = excluded.path,
			duration_ns = excluded.duration_ns,
			bytes = excluded.bytes,
			finalized = excluded.finalized`,
		r.SpaceID, r.Path, int64(r.Duration), r.Bytes, r.Finalized, r.SpaceID)
	if err != nil {
		return err
	}
	if n == 0 {
		return amphi.Errorf(amphi.ENotFound, "no space %q", r.SpaceID)
	}
	return nil
}

// Recording returns the index entry of the space's recording, or an error
// with code amphi.ENotFound if it has none.
func (db *DB) Recording(ctx context.Context, spaceID string) (*amphi.Recording, error) {
	r, err := scanRecording(db.db.QueryRowContext(ctx,
		`SELECT `+recordingCols+` FROM recordings WHERE space_id = ?`, spaceID))
	if errors.Is(err, sql.ErrNoRows) {
		err = amphi.Errorf(amphi.ENotFound, "no recording of space %q", spaceID)
	}
	if err != nil {
		return nil, fmt.Errorf("store: recording of space %q: %w", spaceID, err)
	}
	return r, nil
}

// UnfinalizedRecordings returns the recordings not yet finalised, ordered by
// space ID. At start these are the ones a crash cut short: the caller repairs
// or finalises each file and puts its entry back with Finalized set.
func (db *DB) UnfinalizedRecordings(ctx context.Context) ([]*amphi.Recording, error) {
	recs, err := db.unfinalizedRecordings(ctx)
	if err != nil {
		return nil, fmt.Errorf("store: list unfinalized recordings: %w", err)
	}
	return recs, nil
}

func (db *DB) unfinalizedRecordings(ctx context.Context) ([]*amphi.Recording, error) {
	rows, err := db.db.QueryContext(ctx,
		`SELECT `+recordingCols+` FROM recordings WHERE finalized = 0 ORDER BY space_id`)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var recs []*amphi.Recording
	for rows.Next() {
		r, err := scanRecording(rows)
		if err != nil {
			return nil, err
		}
		recs = append(recs, r)
	}
	return recs, rows.Err()
}

func scanRecording(row scanner) (*amphi.Recording, error) {
	var (
		r        amphi.Recording
		duration int64
	)
	if err := row.Scan(&r.SpaceID, &r.Path, &duration, &r.Bytes, &r.Finalized); err != nil {
		return nil, err
	}
	r.Duration = time.Duration(duration)
	return &r, nil
}
