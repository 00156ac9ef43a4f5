// Package store keeps amphi's durable state in one SQLite file in the data
// directory: spaces and their life cycle, the hashes of bearer tokens that
// grant roles in them, the index of recordings on disk, and the accounts
// of hosts and admins with the hashes of their sign-in sessions. It is the only
// package that knows about SQL or the driver (modernc.org/sqlite, pure Go);
// everything else sees the domain types of the root package amphi.
//
// Errors a client may see carry an amphi code (ENotFound, EConflict,
// EUnauthorized, EInvalid) somewhere in their chain; everything else is an
// internal error wrapped with what the store was doing.
//
// Times are stored as INTEGER nanoseconds since the Unix epoch, UTC. That
// round-trips every instant exactly (read back in UTC; compare with
// time.Equal), sorts numerically, and covers the years 1678 to 2262. The
// zero time.Time is refused rather than stored.
package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io/fs"
	"math"
	"os"
	"strings"
	"time"

	"github.com/amphi-audio/amphi"

	_ "modernc.org/sqlite" // registers the "sqlite" driver
)

// busyTimeout is how long a connection waits for SQLite's single write lock
// before giving up with SQLITE_BUSY. Writes here take microseconds, so a wait
// this long means something is badly wrong rather than merely contended.
const busyTimeout = 5 * time.Second

// maxOpenConns bounds the pool. SQLite in WAL mode lets any number of readers
// run beside one writer, so a few connections let token checks and listings
// proceed while a write is in flight; writers serialize on the database's
// write lock, which every write transaction takes up front (BEGIN IMMEDIATE,
// see dsn) and waits for through busy_timeout. We keep one pool instead of a
// separate one-connection write pool because amphi's writes are tiny and
// rare: the busy handler is enough, and one pool keeps prepared statements
// and Close in one place.
const maxOpenConns = 4

// ErrSchemaTooNew is returned by Open when the database file was migrated by
// a newer amphi than this one. Running an old binary on it could corrupt data
// the newer schema relies on, so Open refuses instead.
var ErrSchemaTooNew = errors.New("database schema is newer than this binary")

// DB is an open amphi database. It is safe for concurrent use.
type DB struct {
	db *sql.DB

	// Statements on the request path, prepared once. A *sql.Stmt on a
	// *sql.DB re-prepares itself per connection as needed.
	token *sql.Stmt
	space *sql.Stmt
}

// Open opens the SQLite database at path, creating the file if needed
// (readable and writable by its owner only), and brings its schema up to
// date. The connection runs in WAL mode with foreign keys enforced and a
// busy timeout. Open refuses a database whose schema is newer than this
// binary knows (ErrSchemaTooNew). path must name a file: ":memory:" would
// give every pooled connection its own empty database.
func Open(ctx context.Context, path string) (*DB, error) {
	if path == "" || path == ":memory:" || strings.ContainsRune(path, '?') {
		// The driver splits a DSN at the first '?', so such a path would be
		// misread as options.
		return nil, fmt.Errorf("store: open %q: %w", path, amphi.Errorf(amphi.EInvalid, "database path must be a file name without '?'"))
	}
	// SQLite gives the -wal and -shm files the database file's mode, so
	// creating it owner-only keeps all three from other users.
	if f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o600); err == nil {
		f.Close()
	} else if !errors.Is(err, fs.ErrExist) {
		return nil, fmt.Errorf("store: open %q: %w", path, err)
	}
	sdb, err := sql.Open("sqlite", dsn(path))
	if err != nil {
		return nil, fmt.Errorf("store: open %q: %w", path, err)
	}
	sdb.SetMaxOpenConns(maxOpenConns)
	// Keep every connection: opening one re-runs the pragmas and drops its
	// prepared statements.
	sdb.SetMaxIdleConns(maxOpenConns)
	sdb.SetConnMaxIdleTime(0)
	sdb.SetConnMaxLifetime(0)

	db := &DB{db: sdb}
	if err := db.open(ctx); err != nil {
		sdb.Close()
		return nil, fmt.Errorf("store: open %q: %w", path, err)
	}
	return db, nil
}

// dsn returns the driver's data source name for path. The pragmas run on
// every new connection: foreign keys and busy_timeout are per connection,
// journal_mode=WAL is persistent but cheap to repeat. synchronous=NORMAL is
// the usual WAL setting: a commit survives a crash of amphi, and only the
// last commits before a power loss can be lost, never consistency.
// _txlock=immediate makes every BEGIN take the write lock at once, so a
// transaction that reads and then writes cannot fail with SQLITE_BUSY midway
// (which busy_timeout cannot retry) when another writer committed between.
func dsn(path string) string {
	return path + "?_txlock=immediate" +
		fmt.Sprintf("&_pragma=busy_timeout(%d)", busyTimeout.Milliseconds()) +
		"&_pragma=journal_mode(WAL)" +
		"&_pragma=synchronous(NORMAL)" +
		"&_pragma=foreign_keys(1)"
}

func (db *DB) open(ctx context.Context) error {
	if err := db.db.PingContext(ctx); err != nil {
		return fmt.Errorf("connect: %w", err)
	}
	if err := db.migrate(ctx); err != nil {
		return err
	}
	var err error
	if db.token, err = db.db.PrepareContext(ctx, tokenSQL); err != nil {
		return fmt.Errorf("prepare token: %w", err)
	}
	if db.space, err = db.db.PrepareContext(ctx, spaceSQL); err != nil {
		return fmt.Errorf("prepare space: %w", err)
	}
	return nil
}

// Close closes the database. Calls in flight finish first.
func (db *DB) Close() error {
	var errs []error
	for _, s := range []*sql.Stmt{db.token, db.space} {
		if s != nil {
			errs = append(errs, s.Close())
		}
	}
	errs = append(errs, db.db.Close())
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("store: close: %w", err)
	}
	return nil
}

// migrations is the schema's history. Version n is migrations[n-1]; each is
// applied once, in its own transaction together with its row in
// schema_migrations, so a crash leaves the schema at a whole version. Append
// only: never edit or reorder a migration that has shipped.
var migrations = [][]string{
	// 1: spaces, tokens, recordings.
	{
		`CREATE TABLE spaces (
			id           TEXT PRIMARY KEY,
			title        TEXT NOT NULL,
			state        TEXT NOT NULL CHECK (state IN ('scheduled', 'live', 'ended')),
			scheduled_at INTEGER,
			created_at   INTEGER NOT NULL,
			started_at   INTEGER,
			ended_at     INTEGER,
			serial       INTEGER NOT NULL CHECK (serial BETWEEN 0 AND 4294967295)
		)`,
		`CREATE INDEX spaces_created_at ON spaces (created_at DESC, id DESC)`,
		`CREATE INDEX spaces_state_created_at ON spaces (state, created_at DESC, id DESC)`,
		`CREATE TABLE tokens (
			hash       BLOB PRIMARY KEY CHECK (length(hash) = 32),
			space_id   TEXT NOT NULL REFERENCES spaces (id) ON DELETE CASCADE,
			role       TEXT NOT NULL CHECK (role IN ('host', 'speaker')),
			created_at INTEGER NOT NULL
		) WITHOUT ROWID`,
		`CREATE INDEX tokens_space_id ON tokens (space_id)`,
		`CREATE TABLE recordings (
			space_id    TEXT PRIMARY KEY REFERENCES spaces (id) ON DELETE CASCADE,
			path        TEXT NOT NULL,
			duration_ns INTEGER NOT NULL CHECK (duration_ns >= 0),
			bytes       INTEGER NOT NULL CHECK (bytes >= 0),
			finalized   INTEGER NOT NULL CHECK (finalized IN (0, 1))
		)`,
		// Recovery at start only wants the unfinished ones, a handful among
		// many finished recordings.
		`CREATE INDEX recordings_unfinalized ON recordings (space_id) WHERE finalized = 0`,
	},
	// 2: accounts of hosts and admins, and their sign-in sessions.
	{
		// Emails are stored lower-cased by the caller; NOCASE guards the
		// unique index against a caller that forgot.
		`CREATE TABLE users (
			id            TEXT PRIMARY KEY,
			email         TEXT NOT NULL UNIQUE COLLATE NOCASE,
			password_hash TEXT NOT NULL,
			role          TEXT NOT NULL CHECK (role IN ('admin', 'host')),
			created_at    INTEGER NOT NULL
		)`,
		// Only the SHA-256 of a session token is kept, as for bearer
		// tokens: a copy of the file signs nobody in.
		`CREATE TABLE sessions (
			hash       BLOB PRIMARY KEY CHECK (length(hash) = 32),
			user_id    TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
			created_at INTEGER NOT NULL,
			expires_at INTEGER NOT NULL
		) WITHOUT ROWID`,
		`CREATE INDEX sessions_user_id ON sessions (user_id)`,
		`CREATE INDEX sessions_expires_at ON sessions (expires_at)`,
	},
	// 3: what a space says and who made it; named, expiring, revocable
	// speaker tokens; invitations to become a host or admin.
	{
		`ALTER TABLE spaces ADD COLUMN description TEXT NOT NULL DEFAULT ''`,
		`ALTER TABLE spaces ADD COLUMN owner_id TEXT REFERENCES users (id) ON DELETE SET NULL`,
		`CREATE INDEX spaces_owner_id ON spaces (owner_id, created_at DESC, id DESC) WHERE owner_id IS NOT NULL`,
		`ALTER TABLE tokens ADD COLUMN name TEXT NOT NULL DEFAULT ''`,
		`ALTER TABLE tokens ADD COLUMN expires_at INTEGER`,
		`ALTER TABLE tokens ADD COLUMN revoked_at INTEGER`,
		`CREATE TABLE invites (
			hash       BLOB PRIMARY KEY CHECK (length(hash) = 32),
			role       TEXT NOT NULL CHECK (role IN ('admin', 'host')),
			created_by TEXT REFERENCES users (id) ON DELETE SET NULL,
			created_at INTEGER NOT NULL,
			expires_at INTEGER NOT NULL,
			used_at    INTEGER
		) WITHOUT ROWID`,
	},
	// 4: why a space ended.
	{
		`ALTER TABLE spaces ADD COLUMN end_reason TEXT NOT NULL DEFAULT ''`,
	},
	// 5: clips of recordings.
	{
		`CREATE TABLE clips (
			id         TEXT PRIMARY KEY,
			space_id   TEXT NOT NULL REFERENCES spaces (id) ON DELETE CASCADE,
			title      TEXT NOT NULL,
			from_ns    INTEGER NOT NULL CHECK (from_ns >= 0),
			to_ns      INTEGER NOT NULL CHECK (to_ns > from_ns),
			path       TEXT NOT NULL,
			bytes      INTEGER NOT NULL CHECK (bytes >= 0),
			created_at INTEGER NOT NULL
		)`,
		`CREATE INDEX clips_space_id ON clips (space_id, created_at)`,
	},
	// 6: the timeline of a recording: who spoke when, reactions per
	// bucket (internal/timeline). Times are of the recording, in
	// milliseconds and seconds. A span is keyed by its start, so storing
	// it again as it grows updates one row.
	{
		`CREATE TABLE speaker_spans (
			space_id   TEXT NOT NULL REFERENCES spaces (id) ON DELETE CASCADE,
			speaker_id TEXT NOT NULL,
			from_ms    INTEGER NOT NULL CHECK (from_ms >= 0),
			to_ms      INTEGER NOT NULL CHECK (to_ms >= from_ms),
			name       TEXT NOT NULL,
			PRIMARY KEY (space_id, speaker_id, from_ms)
		) WITHOUT ROWID`,
		`CREATE TABLE reaction_buckets (
			space_id TEXT NOT NULL REFERENCES spaces (id) ON DELETE CASCADE,
			at_s     INTEGER NOT NULL CHECK (at_s >= 0),
			kind     TEXT NOT NULL,
			count    INTEGER NOT NULL CHECK (count > 0),
			PRIMARY KEY (space_id, at_s, kind)
		) WITHOUT ROWID`,
	},
	// 7: co-hosts. SQLite cannot change a CHECK in place: the tokens
	// table is rebuilt with the role added, its rows and index kept.
	{
		`CREATE TABLE tokens_v7 (
			hash       BLOB PRIMARY KEY CHECK (length(hash) = 32),
			space_id   TEXT NOT NULL REFERENCES spaces (id) ON DELETE CASCADE,
			role       TEXT NOT NULL CHECK (role IN ('host', 'cohost', 'speaker')),
			created_at INTEGER NOT NULL,
			name       TEXT NOT NULL DEFAULT '',
			expires_at INTEGER,
			revoked_at INTEGER
		) WITHOUT ROWID`,
		`INSERT INTO tokens_v7 (hash, space_id, role, created_at, name, expires_at, revoked_at)
			SELECT hash, space_id, role, created_at, name, expires_at, revoked_at FROM tokens`,
		`DROP TABLE tokens`,
		`ALTER TABLE tokens_v7 RENAME TO tokens`,
		`CREATE INDEX tokens_space_id ON tokens (space_id)`,
	},
}

// migrate applies the migrations the database lacks.
func (db *DB) migrate(ctx context.Context) error {
	// The applied_at default uses SQLite's clock: it is bookkeeping for
	// people reading the file, not a domain time.
	if _, err := db.db.ExecContext(ctx, `CREATE TABLE IF NOT EXISTS schema_migrations (
		version    INTEGER PRIMARY KEY,
		applied_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
	)`); err != nil {
		return fmt.Errorf("migrate: create schema_migrations: %w", err)
	}
	// Read the version first so a reopen of an up-to-date file takes no
	// write lock.
	cur, err := schemaVersion(ctx, db.db)
	if err != nil {
		return fmt.Errorf("migrate: %w", err)
	}
	if cur > len(migrations) {
		return tooNew(cur)
	}
	for v := cur + 1; v <= len(migrations); v++ {
		if err := db.migrateTo(ctx, v); err != nil {
			return err
		}
	}
	return nil
}

func tooNew(cur int) error {
	return fmt.Errorf("migrate: file is at schema version %d, this amphi knows up to %d; upgrade amphi: %w", cur, len(migrations), ErrSchemaTooNew)
}

// migrateTo applies migration v unless the database already has it. The
// version is read inside the write transaction so that two processes opening
// the same file at once cannot both apply it.
func (db *DB) migrateTo(ctx context.Context, v int) error {
	tx, err := db.db.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("migrate to %d: begin: %w", v, err)
	}
	defer tx.Rollback()
	cur, err := schemaVersion(ctx, tx)
	if err != nil {
		return fmt.Errorf("migrate to %d: %w", v, err)
	}
	if cur > len(migrations) {
		return tooNew(cur)
	}
	if cur >= v {
		return nil
	}
	for i, stmt := range migrations[v-1] {
		if _, err := tx.ExecContext(ctx, stmt); err != nil {
			return fmt.Errorf("migrate to %d: statement %d: %w", v, i+1, err)
		}
	}
	if _, err := tx.ExecContext(ctx, `INSERT INTO schema_migrations (version) VALUES (?)`, v); err != nil {
		return fmt.Errorf("migrate to %d: record version: %w", v, err)
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("migrate to %d: commit: %w", v, err)
	}
	return nil
}

type queryer interface {
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
}

func schemaVersion(ctx context.Context, q queryer) (int, error) {
	var v int
	if err := q.QueryRowContext(ctx, `SELECT COALESCE(MAX(version), 0) FROM schema_migrations`).Scan(&v); err != nil {
		return 0, fmt.Errorf("read schema version: %w", err)
	}
	return v, nil
}

// The range of instants an int64 of nanoseconds can hold.
var (
	minTime = time.Unix(0, math.MinInt64)
	maxTime = time.Unix(0, math.MaxInt64)
)

// nanos converts t for storage, refusing what would not round-trip.
func nanos(what string, t time.Time) (int64, error) {
	if t.IsZero() {
		return 0, amphi.Errorf(amphi.EInvalid, "%s is missing", what)
	}
	if t.Before(minTime) || t.After(maxTime) {
		return 0, amphi.Errorf(amphi.EInvalid, "%s %s is out of range", what, t.UTC().Format(time.RFC3339))
	}
	return t.UnixNano(), nil
}

// nullNanos is nanos for optional times: nil is stored as NULL.
func nullNanos(what string, t *time.Time) (any, error) {
	if t == nil {
		return nil, nil
	}
	return nanos(what, *t)
}

func fromNanos(n int64) time.Time { return time.Unix(0, n).UTC() }

func fromNullNanos(n sql.NullInt64) *time.Time {
	if !n.Valid {
		return nil
	}
	t := fromNanos(n.Int64)
	return &t
}
