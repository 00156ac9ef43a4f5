package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/amphi-audio/amphi"
)

const spaceCols = `id, title, state, scheduled_at, created_at, started_at, ended_at, serial, description, owner_id, end_reason`

const spaceSQL = `SELECT ` + spaceCols + ` FROM spaces WHERE id = ?`

// SpaceFilter selects spaces for Spaces.
type SpaceFilter struct {
	// States keeps spaces in any of these states. Nil or empty keeps all.
	States []amphi.State
	// OwnerID keeps the spaces created by this account. "" keeps all.
	OwnerID string
	// Limit caps how many spaces are returned. Zero or less means no cap.
	Limit int
}

func validState(s amphi.State) bool {
	switch s {
	case amphi.StateScheduled, amphi.StateLive, amphi.StateEnded:
		return true
	}
	return false
}

// CreateSpace stores a new space. The caller sets ID, Title, State,
// CreatedAt, Serial and optionally ScheduledAt (and StartedAt or EndedAt if
// it creates the space past its start). It fails with amphi.EConflict if the
// ID is taken and amphi.EInvalid for a missing ID, unknown state or zero
// CreatedAt.
func (db *DB) CreateSpace(ctx context.Context, s *amphi.Space) error {
	if err := db.createSpace(ctx, s); err != nil {
		return fmt.Errorf("store: create space %q: %w", s.ID, err)
	}
	return nil
}

func (db *DB) createSpace(ctx context.Context, s *amphi.Space) error {
	if s.ID == "" {
		return amphi.Errorf(amphi.EInvalid, "space id is missing")
	}
	if !validState(s.State) {
		return amphi.Errorf(amphi.EInvalid, "unknown space state %q", s.State)
	}
	created, err := nanos("created_at", s.CreatedAt)
	if err != nil {
		return err
	}
	scheduled, err := nullNanos("scheduled_at", s.ScheduledAt)
	if err != nil {
		return err
	}
	started, err := nullNanos("started_at", s.StartedAt)
	if err != nil {
		return err
	}
	ended, err := nullNanos("ended_at", s.EndedAt)
	if err != nil {
		return err
	}
	// DO NOTHING instead of parsing the driver's constraint error: no rows
	// affected can only mean the id is taken.
	n, err := db.exec(ctx, `INSERT INTO spaces (`+spaceCols+`)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (id) DO NOTHING`,
		s.ID, s.Title, string(s.State), scheduled, created, started, ended, int64(s.Serial), s.Description, nullString(s.OwnerID), string(s.EndReason))
	if err != nil {
		return err
	}
	if n == 0 {
		return amphi.Errorf(amphi.EConflict, "space %q already exists", s.ID)
	}
	return nil
}

// exec runs a statement and returns how many rows it changed: the inserts
// here say "nothing" instead of failing, so callers need not parse the
// driver's constraint errors.
func (db *DB) exec(ctx context.Context, query string, args ...any) (int64, error) {
	res, err := db.db.ExecContext(ctx, query, args...)
	if err != nil {
		return 0, err
	}
	return res.RowsAffected()
}

// Space returns the space with the id, or an error with code amphi.ENotFound.
func (db *DB) Space(ctx context.Context, id string) (*amphi.Space, error) {
	s, err := scanSpace(db.space.QueryRowContext(ctx, id))
	if errors.Is(err, sql.ErrNoRows) {
		err = amphi.Errorf(amphi.ENotFound, "no space %q", id)
	}
	if err != nil {
		return nil, fmt.Errorf("store: space %q: %w", id, err)
	}
	return s, nil
}

// Spaces returns the spaces that pass f, newest (by CreatedAt) first; spaces
// created at the same instant come in descending ID order so the order is
// stable.
func (db *DB) Spaces(ctx context.Context, f SpaceFilter) ([]*amphi.Space, error) {
	spaces, err := db.spaces(ctx, f)
	if err != nil {
		return nil, fmt.Errorf("store: list spaces: %w", err)
	}
	return spaces, nil
}

func (db *DB) spaces(ctx context.Context, f SpaceFilter) ([]*amphi.Space, error) {
	var q strings.Builder
	var args []any
	q.WriteString(`SELECT ` + spaceCols + ` FROM spaces`)
	var where []string
	if len(f.States) > 0 {
		in, inArgs, err := stateList(f.States)
		if err != nil {
			return nil, err
		}
		where = append(where, `state IN `+in)
		args = append(args, inArgs...)
	}
	if f.OwnerID != "" {
		where = append(where, `owner_id = ?`)
		args = append(args, f.OwnerID)
	}
	if len(where) > 0 {
		q.WriteString(` WHERE ` + strings.Join(where, ` AND `))
	}
	q.WriteString(` ORDER BY created_at DESC, id DESC`)
	if f.Limit > 0 {
		q.WriteString(` LIMIT ?`)
		args = append(args, f.Limit)
	}
	rows, err := db.db.QueryContext(ctx, q.String(), args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var spaces []*amphi.Space
	for rows.Next() {
		s, err := scanSpace(rows)
		if err != nil {
			return nil, err
		}
		spaces = append(spaces, s)
	}
	return spaces, rows.Err()
}

// stateList returns "(?, ?, …)" and its arguments for an IN clause.
func stateList(states []amphi.State) (string, []any, error) {
	args := make([]any, len(states))
	for i, s := range states {
		if !validState(s) {
			return "", nil, amphi.Errorf(amphi.EInvalid, "unknown space state %q", s)
		}
		args[i] = string(s)
	}
	return "(" + strings.TrimSuffix(strings.Repeat("?, ", len(states)), ", ") + ")", args, nil
}

// SetSpaceState moves the space from any of the states in from to the state
// to, and returns the space as it is afterwards. Moving to live sets
// StartedAt and moving to ended sets EndedAt, both to at, unless already set:
// a repeated start or end keeps the first instant. The check and the change
// are one transaction, so of two callers racing for the same transition
// exactly one wins. It fails with amphi.EConflict, whose message names the
// current state, if the space is in none of the from states, and with
// amphi.ENotFound if there is no such space.
func (db *DB) SetSpaceState(ctx context.Context, id string, from []amphi.State, to amphi.State, at time.Time) (*amphi.Space, error) {
	s, err := db.setSpaceState(ctx, id, from, to, at, nil)
	if err != nil {
		return nil, fmt.Errorf("store: set space %q state to %s: %w", id, to, err)
	}
	return s, nil
}

// EndSpace is SetSpaceState to ended that also records why the space
// ended.
func (db *DB) EndSpace(ctx context.Context, id string, from []amphi.State, at time.Time, why amphi.EndReason) (*amphi.Space, error) {
	s, err := db.setSpaceState(ctx, id, from, amphi.StateEnded, at, string(why))
	if err != nil {
		return nil, fmt.Errorf("store: end space %q (%s): %w", id, why, err)
	}
	return s, nil
}

// setSpaceState moves the space; a non-nil why is stored as its end
// reason.
func (db *DB) setSpaceState(ctx context.Context, id string, from []amphi.State, to amphi.State, at time.Time, why any) (*amphi.Space, error) {
	if len(from) == 0 {
		return nil, amphi.Errorf(amphi.EInvalid, "no states to move from")
	}
	if !validState(to) {
		return nil, amphi.Errorf(amphi.EInvalid, "unknown space state %q", to)
	}
	in, inArgs, err := stateList(from)
	if err != nil {
		return nil, err
	}
	atN, err := nanos("transition time", at)
	if err != nil {
		return nil, err
	}
	// NULL leaves the column as it is through COALESCE.
	var started, ended any
	switch to {
	case amphi.StateLive:
		started = atN
	case amphi.StateEnded:
		ended = atN
	}

	// The UPDATE alone is atomic; the transaction is there so that when it
	// matches nothing, the state we report is the one that refused it.
	tx, err := db.db.BeginTx(ctx, nil)
	if err != nil {
		return nil, err
	}
	defer tx.Rollback()
	args := append([]any{string(to), started, ended, why, id}, inArgs...)
	s, err := scanSpace(tx.QueryRowContext(ctx, `UPDATE spaces SET state = ?,
			started_at = COALESCE(started_at, ?),
			ended_at = COALESCE(ended_at, ?),
			end_reason = COALESCE(?, end_reason)
		WHERE id = ? AND state IN `+in+`
		RETURNING `+spaceCols, args...))
	if errors.Is(err, sql.ErrNoRows) {
		var cur string
		err = tx.QueryRowContext(ctx, `SELECT state FROM spaces WHERE id = ?`, id).Scan(&cur)
		switch {
		case errors.Is(err, sql.ErrNoRows):
			return nil, amphi.Errorf(amphi.ENotFound, "no space %q", id)
		case err != nil:
			return nil, err
		}
		return nil, amphi.Errorf(amphi.EConflict, "space %q is %s, not %s", id, cur, orList(from))
	}
	if err != nil {
		return nil, err
	}
	if err := tx.Commit(); err != nil {
		return nil, err
	}
	return s, nil
}

// orList writes states for people: "live", "scheduled or live".
func orList(states []amphi.State) string {
	parts := make([]string, len(states))
	for i, s := range states {
		parts[i] = string(s)
	}
	if len(parts) == 1 {
		return parts[0]
	}
	return strings.Join(parts[:len(parts)-1], ", ") + " or " + parts[len(parts)-1]
}

type scanner interface {
	Scan(dest ...any) error
}

func scanSpace(row scanner) (*amphi.Space, error) {
	var (
		s                           amphi.Space
		state                       string
		created                     int64
		scheduled, started, endedAt sql.NullInt64
		serial                      int64
		owner                       sql.NullString
		why                         string
	)
	if err := row.Scan(&s.ID, &s.Title, &state, &scheduled, &created, &started, &endedAt, &serial, &s.Description, &owner, &why); err != nil {
		return nil, err
	}
	s.State = amphi.State(state)
	s.CreatedAt = fromNanos(created)
	s.ScheduledAt = fromNullNanos(scheduled)
	s.StartedAt = fromNullNanos(started)
	s.EndedAt = fromNullNanos(endedAt)
	s.Serial = uint32(serial)
	s.OwnerID = owner.String
	s.EndReason = amphi.EndReason(why)
	return &s, nil
}

// nullString stores "" as NULL, for optional references.
func nullString(v string) any {
	if v == "" {
		return nil
	}
	return v
}
