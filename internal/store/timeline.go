package store

import (
	"context"
	"fmt"
	"time"

	"github.com/amphi-audio/amphi"
)

// The timeline of a recording is kept in SQLite beside the recording's
// index rather than in a file beside the recording: it is written in
// small pieces while the space is live (a flush every few seconds), each
// must survive a crash whole, and deleting a recording must forget it in
// the same transaction as the recording's row (DeleteRecording). A file
// would need its own atomic rewrites and its own cleanup.

// PutTimeline adds what a flush of a live space's timeline holds: each
// span is stored under its speaker and start, and a span stored before
// only grows (it is stored again while it goes on), keeping its name if
// the new one is empty; each count adds to its bucket and kind. A flush
// is stored whole or not at all.
func (db *DB) PutTimeline(ctx context.Context, spaceID string, spans []amphi.SpeakerSpan, counts []amphi.ReactionCount) error {
	if len(spans) == 0 && len(counts) == 0 {
		return nil
	}
	if err := db.putTimeline(ctx, spaceID, spans, counts); err != nil {
		return fmt.Errorf("store: put the timeline of space %q: %w", spaceID, err)
	}
	return nil
}

func (db *DB) putTimeline(ctx context.Context, spaceID string, spans []amphi.SpeakerSpan, counts []amphi.ReactionCount) error {
	tx, err := db.db.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	for _, sp := range spans {
		if sp.From < 0 || sp.To < sp.From {
			return amphi.Errorf(amphi.EInvalid, "span [%v, %v] of %q is not a range", sp.From, sp.To, sp.Speaker)
		}
		if _, err := tx.ExecContext(ctx, `INSERT INTO speaker_spans (space_id, speaker_id, from_ms, to_ms, name)
			VALUES (?, ?, ?, ?, ?)
			ON CONFLICT (space_id, speaker_id, from_ms) DO UPDATE SET
				to_ms = MAX(to_ms, excluded.to_ms),
				name = CASE excluded.name WHEN '' THEN name ELSE excluded.name END`,
			spaceID, sp.Speaker, sp.From.Milliseconds(), sp.To.Milliseconds(), sp.Name); err != nil {
			return err
		}
	}
	for _, c := range counts {
		if c.At < 0 || c.Count <= 0 {
			return amphi.Errorf(amphi.EInvalid, "%d reactions at %v", c.Count, c.At)
		}
		if _, err := tx.ExecContext(ctx, `INSERT INTO reaction_buckets (space_id, at_s, kind, count) VALUES (?, ?, ?, ?)
			ON CONFLICT (space_id, at_s, kind) DO UPDATE SET count = count + excluded.count`,
			spaceID, int64(c.At/time.Second), c.Kind, c.Count); err != nil {
			return err
		}
	}
	return tx.Commit()
}

// Timeline returns what is stored of a space's timeline: its spans by
// speaker and start, its counts by bucket and kind. A space with none, or
// no such space, has empty ones.
func (db *DB) Timeline(ctx context.Context, spaceID string) ([]amphi.SpeakerSpan, []amphi.ReactionCount, error) {
	spans, counts, err := db.timeline(ctx, spaceID)
	if err != nil {
		return nil, nil, fmt.Errorf("store: the timeline of space %q: %w", spaceID, err)
	}
	return spans, counts, nil
}

func (db *DB) timeline(ctx context.Context, spaceID string) ([]amphi.SpeakerSpan, []amphi.ReactionCount, error) {
	rows, err := db.db.QueryContext(ctx, `SELECT speaker_id, name, from_ms, to_ms FROM speaker_spans
		WHERE space_id = ? ORDER BY speaker_id, from_ms`, spaceID)
	if err != nil {
		return nil, nil, err
	}
	defer rows.Close()
	var spans []amphi.SpeakerSpan
	for rows.Next() {
		var (
			sp       amphi.SpeakerSpan
			from, to int64
		)
		if err := rows.Scan(&sp.Speaker, &sp.Name, &from, &to); err != nil {
			return nil, nil, err
		}
		sp.From, sp.To = time.Duration(from)*time.Millisecond, time.Duration(to)*time.Millisecond
		spans = append(spans, sp)
	}
	if err := rows.Err(); err != nil {
		return nil, nil, err
	}
	rows, err = db.db.QueryContext(ctx, `SELECT at_s, kind, count FROM reaction_buckets
		WHERE space_id = ? ORDER BY at_s, kind`, spaceID)
	if err != nil {
		return nil, nil, err
	}
	defer rows.Close()
	var counts []amphi.ReactionCount
	for rows.Next() {
		var (
			c  amphi.ReactionCount
			at int64
		)
		if err := rows.Scan(&at, &c.Kind, &c.Count); err != nil {
			return nil, nil, err
		}
		c.At = time.Duration(at) * time.Second
		counts = append(counts, c)
	}
	return spans, counts, rows.Err()
}
