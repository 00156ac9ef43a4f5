package store

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/amphi-audio/amphi"
)

// t0 has nanoseconds and a non-UTC zone so round-trip checks catch both
// truncation and zone handling.
var t0 = time.Date(2025, 3, 14, 15, 9, 26, 535897932, time.FixedZone("X", 5*3600+1800))

func ptr[T any](v T) *T { return &v }

func openTest(t *testing.T) (*DB, string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "amphi.db")
	db, err := Open(t.Context(), path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := db.Close(); err != nil {
			t.Error(err)
		}
	})
	return db, path
}

func mustCreate(t *testing.T, db *DB, s *amphi.Space) {
	t.Helper()
	if err := db.CreateSpace(t.Context(), s); err != nil {
		t.Fatal(err)
	}
}

func space(id string, state amphi.State, created time.Time) *amphi.Space {
	return &amphi.Space{ID: id, Title: "Title " + id, State: state, CreatedAt: created, Serial: 0xdeadbeef}
}

func wantCode(t *testing.T, err error, code string) {
	t.Helper()
	if got := amphi.ErrorCode(err); got != code {
		t.Fatalf("error code %q (%v), want %q", got, err, code)
	}
}

func timeEq(a, b *time.Time) bool {
	if a == nil || b == nil {
		return a == b
	}
	return a.Equal(*b)
}

func sameSpace(t *testing.T, got, want *amphi.Space) {
	t.Helper()
	if got.ID != want.ID || got.Title != want.Title || got.State != want.State || got.Serial != want.Serial ||
		!got.CreatedAt.Equal(want.CreatedAt) || !timeEq(got.ScheduledAt, want.ScheduledAt) ||
		!timeEq(got.StartedAt, want.StartedAt) || !timeEq(got.EndedAt, want.EndedAt) {
		t.Fatalf("got space %+v, want %+v", got, want)
	}
}

func TestSpaceRoundTripsEveryField(t *testing.T) {
	db, _ := openTest(t)
	tests := []*amphi.Space{
		space("plain", amphi.StateScheduled, t0),
		{ID: "all", Title: "Ünïcode ✓ 'quotes'", State: amphi.StateEnded, CreatedAt: t0,
			ScheduledAt: ptr(t0.Add(time.Hour)), StartedAt: ptr(t0.Add(2 * time.Hour)),
			EndedAt: ptr(t0.Add(3*time.Hour + 1)), Serial: 0xffffffff},
		{ID: "serial-zero", State: amphi.StateLive, CreatedAt: time.Unix(0, 1), Serial: 0},
		{ID: "far", State: amphi.StateScheduled, CreatedAt: time.Date(2262, 1, 1, 0, 0, 0, 999999999, time.UTC)},
	}
	for _, want := range tests {
		t.Run(want.ID, func(t *testing.T) {
			mustCreate(t, db, want)
			got, err := db.Space(t.Context(), want.ID)
			if err != nil {
				t.Fatal(err)
			}
			sameSpace(t, got, want)
			if got.CreatedAt.Location() != time.UTC {
				t.Errorf("CreatedAt in %v, want UTC", got.CreatedAt.Location())
			}
		})
	}
}

func TestCreateSpaceRefuses(t *testing.T) {
	db, _ := openTest(t)
	mustCreate(t, db, space("taken", amphi.StateScheduled, t0))
	tests := []struct {
		name  string
		space *amphi.Space
		code  string
	}{
		{"duplicate id", space("taken", amphi.StateLive, t0), amphi.EConflict},
		{"missing id", space("", amphi.StateScheduled, t0), amphi.EInvalid},
		{"unknown state", space("x", "paused", t0), amphi.EInvalid},
		{"zero created", space("x", amphi.StateScheduled, time.Time{}), amphi.EInvalid},
		{"created out of range", space("x", amphi.StateScheduled, time.Date(3000, 1, 1, 0, 0, 0, 0, time.UTC)), amphi.EInvalid},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := db.CreateSpace(t.Context(), tt.space)
			wantCode(t, err, tt.code)
			if !strings.HasPrefix(err.Error(), "store: create space") {
				t.Errorf("error %q lacks context", err)
			}
		})
	}
	// The refused duplicate did not overwrite the original.
	got, err := db.Space(t.Context(), "taken")
	if err != nil {
		t.Fatal(err)
	}
	if got.State != amphi.StateScheduled {
		t.Errorf("duplicate create changed state to %s", got.State)
	}
}

func TestSpaceNotFound(t *testing.T) {
	db, _ := openTest(t)
	_, err := db.Space(t.Context(), "nope")
	wantCode(t, err, amphi.ENotFound)
}

func TestSpacesFiltersAndOrdersNewestFirst(t *testing.T) {
	db, _ := openTest(t)
	for i, st := range []amphi.State{amphi.StateEnded, amphi.StateLive, amphi.StateScheduled, amphi.StateLive, amphi.StateScheduled} {
		mustCreate(t, db, space(fmt.Sprintf("s%d", i), st, t0.Add(time.Duration(i)*time.Minute)))
	}
	// Same instant as s4: ties break by descending id.
	mustCreate(t, db, space("s5", amphi.StateEnded, t0.Add(4*time.Minute)))

	tests := []struct {
		name   string
		filter SpaceFilter
		want   []string
	}{
		{"all", SpaceFilter{}, []string{"s5", "s4", "s3", "s2", "s1", "s0"}},
		{"live", SpaceFilter{States: []amphi.State{amphi.StateLive}}, []string{"s3", "s1"}},
		{"scheduled or live", SpaceFilter{States: []amphi.State{amphi.StateScheduled, amphi.StateLive}}, []string{"s4", "s3", "s2", "s1"}},
		{"limit", SpaceFilter{Limit: 2}, []string{"s5", "s4"}},
		{"ended limit", SpaceFilter{States: []amphi.State{amphi.StateEnded}, Limit: 1}, []string{"s5"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			spaces, err := db.Spaces(t.Context(), tt.filter)
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, s := range spaces {
				got = append(got, s.ID)
			}
			if fmt.Sprint(got) != fmt.Sprint(tt.want) {
				t.Errorf("got %v, want %v", got, tt.want)
			}
		})
	}

	_, err := db.Spaces(t.Context(), SpaceFilter{States: []amphi.State{"bogus"}})
	wantCode(t, err, amphi.EInvalid)
}

func TestSpaceLifeCycle(t *testing.T) {
	db, _ := openTest(t)
	mustCreate(t, db, space("a", amphi.StateScheduled, t0))
	start, end := t0.Add(time.Minute), t0.Add(time.Hour)
	sched := []amphi.State{amphi.StateScheduled}
	live := []amphi.State{amphi.StateLive}
	notEnded := []amphi.State{amphi.StateScheduled, amphi.StateLive}

	// Steps run in order on the same space.
	steps := []struct {
		name        string
		id          string
		from        []amphi.State
		to          amphi.State
		at          time.Time
		code        string // "" for success
		msgContains string
		wantState   amphi.State
		wantStarted *time.Time
		wantEnded   *time.Time
	}{
		{name: "ended before live refused", id: "a", from: live, to: amphi.StateEnded, at: start,
			code: amphi.EConflict, msgContains: "is scheduled"},
		{name: "start", id: "a", from: sched, to: amphi.StateLive, at: start,
			wantState: amphi.StateLive, wantStarted: &start},
		{name: "start again refused", id: "a", from: sched, to: amphi.StateLive, at: end,
			code: amphi.EConflict, msgContains: "is live"},
		{name: "idempotent start keeps first instant", id: "a", from: notEnded, to: amphi.StateLive, at: end,
			wantState: amphi.StateLive, wantStarted: &start},
		{name: "end", id: "a", from: live, to: amphi.StateEnded, at: end,
			wantState: amphi.StateEnded, wantStarted: &start, wantEnded: &end},
		{name: "ended to live refused", id: "a", from: sched, to: amphi.StateLive, at: end,
			code: amphi.EConflict, msgContains: "is ended, not scheduled"},
		{name: "ended to live refused for idempotent start", id: "a", from: notEnded, to: amphi.StateLive, at: end,
			code: amphi.EConflict, msgContains: "is ended, not scheduled or live"},
		{name: "no such space", id: "missing", from: sched, to: amphi.StateLive, at: start,
			code: amphi.ENotFound},
		{name: "unknown target", id: "a", from: sched, to: "paused", at: start, code: amphi.EInvalid},
		{name: "unknown source", id: "a", from: []amphi.State{"paused"}, to: amphi.StateLive, at: start, code: amphi.EInvalid},
		{name: "empty from", id: "a", to: amphi.StateLive, at: start, code: amphi.EInvalid},
		{name: "zero time", id: "a", from: sched, to: amphi.StateLive, code: amphi.EInvalid},
	}
	for _, st := range steps {
		s, err := db.SetSpaceState(t.Context(), st.id, st.from, st.to, st.at)
		if st.code != "" {
			if amphi.ErrorCode(err) != st.code || !strings.Contains(amphi.ErrorMessage(err), st.msgContains) {
				t.Fatalf("%s: got error %v, want code %q with message containing %q", st.name, err, st.code, st.msgContains)
			}
			continue
		}
		if err != nil {
			t.Fatalf("%s: %v", st.name, err)
		}
		if s.State != st.wantState || !timeEq(s.StartedAt, st.wantStarted) || !timeEq(s.EndedAt, st.wantEnded) {
			t.Fatalf("%s: got %+v", st.name, s)
		}
		// What was returned is what is stored.
		stored, err := db.Space(t.Context(), st.id)
		if err != nil {
			t.Fatal(err)
		}
		sameSpace(t, stored, s)
	}
}

func TestConcurrentTransitionHasOneWinner(t *testing.T) {
	db, _ := openTest(t)
	const spaces, racers = 10, 4
	for i := range spaces {
		id := fmt.Sprintf("race%d", i)
		mustCreate(t, db, space(id, amphi.StateLive, t0))
	}
	for i := range spaces {
		id := fmt.Sprintf("race%d", i)
		var (
			wg        sync.WaitGroup
			mu        sync.Mutex
			wins      int
			conflicts int
			winnerAt  time.Time
		)
		for r := range racers {
			at := t0.Add(time.Duration(r+1) * time.Second)
			wg.Go(func() {
				s, err := db.SetSpaceState(context.Background(), id, []amphi.State{amphi.StateLive}, amphi.StateEnded, at)
				mu.Lock()
				defer mu.Unlock()
				switch {
				case err == nil:
					wins++
					winnerAt = *s.EndedAt
				case amphi.ErrorCode(err) == amphi.EConflict:
					conflicts++
				default:
					t.Errorf("%s: unexpected error %v", id, err)
				}
			})
		}
		wg.Wait()
		if wins != 1 || conflicts != racers-1 {
			t.Fatalf("%s: %d wins, %d conflicts; want 1 and %d", id, wins, conflicts, racers-1)
		}
		got, err := db.Space(t.Context(), id)
		if err != nil {
			t.Fatal(err)
		}
		if !got.EndedAt.Equal(winnerAt) {
			t.Fatalf("%s: stored ended_at %v, winner set %v", id, got.EndedAt, winnerAt)
		}
	}
}

func TestTokenRole(t *testing.T) {
	db, _ := openTest(t)
	mustCreate(t, db, space("a", amphi.StateScheduled, t0))
	mustCreate(t, db, space("b", amphi.StateScheduled, t0))
	hostTok, hostHash := mustToken(t)
	spkTok, spkHash := mustToken(t)
	for _, c := range []struct {
		hash  []byte
		space string
		role  amphi.Role
	}{{hostHash, "a", amphi.RoleHost}, {spkHash, "a", amphi.RoleSpeaker}} {
		if err := db.CreateToken(t.Context(), &Token{Hash: c.hash, SpaceID: c.space, Role: c.role, CreatedAt: t0}); err != nil {
			t.Fatal(err)
		}
	}
	otherTok, _ := mustToken(t)

	tests := []struct {
		name  string
		token string
		hash  []byte // overrides HashToken(token) when set
		space string
		want  amphi.Role
		code  string
	}{
		{name: "host", token: hostTok, space: "a", want: amphi.RoleHost},
		{name: "speaker", token: spkTok, space: "a", want: amphi.RoleSpeaker},
		{name: "wrong space", token: hostTok, space: "b", code: amphi.EUnauthorized},
		{name: "no such space", token: hostTok, space: "zzz", code: amphi.EUnauthorized},
		{name: "wrong token", token: otherTok, space: "a", code: amphi.EUnauthorized},
		{name: "empty token", token: "", space: "a", code: amphi.EUnauthorized},
		{name: "token as hash", hash: []byte(hostTok), space: "a", code: amphi.EUnauthorized},
		{name: "truncated hash", hash: hostHash[:16], space: "a", code: amphi.EUnauthorized},
		{name: "nil hash", hash: []byte{}, space: "a", code: amphi.EUnauthorized},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := tt.hash
			if h == nil {
				h = HashToken(tt.token)
			}
			role, err := tokenRole(db, t.Context(), h, tt.space)
			if tt.code != "" {
				wantCode(t, err, tt.code)
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if role != tt.want {
				t.Errorf("role %q, want %q", role, tt.want)
			}
		})
	}
}

func TestCreateTokenRefuses(t *testing.T) {
	db, _ := openTest(t)
	mustCreate(t, db, space("a", amphi.StateScheduled, t0))
	_, taken := mustToken(t)
	if err := db.CreateToken(t.Context(), &Token{Hash: taken, SpaceID: "a", Role: amphi.RoleHost, CreatedAt: t0}); err != nil {
		t.Fatal(err)
	}
	_, fresh := mustToken(t)
	tests := []struct {
		name    string
		hash    []byte
		space   string
		role    amphi.Role
		created time.Time
		code    string
	}{
		{"duplicate hash", taken, "a", amphi.RoleSpeaker, t0, amphi.EConflict},
		{"no such space", fresh, "nope", amphi.RoleHost, t0, amphi.ENotFound},
		{"short hash", fresh[:31], "a", amphi.RoleHost, t0, amphi.EInvalid},
		{"unknown role", fresh, "a", "admin", t0, amphi.EInvalid},
		{"zero time", fresh, "a", amphi.RoleHost, time.Time{}, amphi.EInvalid},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			wantCode(t, db.CreateToken(t.Context(), &Token{Hash: tt.hash, SpaceID: tt.space, Role: tt.role, CreatedAt: tt.created}), tt.code)
		})
	}
	// The refused duplicate did not change the role.
	if role, err := tokenRole(db, t.Context(), taken, "a"); err != nil || role != amphi.RoleHost {
		t.Fatalf("after duplicate: role %q, err %v", role, err)
	}
}

func mustToken(t testing.TB) (string, []byte) {
	t.Helper()
	tok, hash, err := NewToken()
	if err != nil {
		t.Fatal(err)
	}
	return tok, hash
}

func TestRecordingsUpsertAndUnfinalized(t *testing.T) {
	db, _ := openTest(t)
	for _, id := range []string{"a", "b", "c"} {
		mustCreate(t, db, space(id, amphi.StateLive, t0))
	}
	_, err := db.Recording(t.Context(), "a")
	wantCode(t, err, amphi.ENotFound)

	// Steps run in order; after each, want lists the unfinalized space ids.
	steps := []struct {
		name string
		rec  amphi.Recording
		code string
		want []string
	}{
		{"open c", amphi.Recording{SpaceID: "c", Path: "rec/c.ogg"}, "", []string{"c"}},
		{"open a", amphi.Recording{SpaceID: "a", Path: "rec/a.ogg", Bytes: 10}, "", []string{"a", "c"}},
		{"finalize a", amphi.Recording{SpaceID: "a", Path: "rec/a.ogg", Duration: 90*time.Minute + 1, Bytes: 1 << 40, Finalized: true}, "", []string{"c"}},
		{"b finalized at once", amphi.Recording{SpaceID: "b", Path: "rec/b.ogg", Finalized: true}, "", []string{"c"}},
		{"no such space", amphi.Recording{SpaceID: "zzz", Path: "rec/z.ogg"}, amphi.ENotFound, []string{"c"}},
		{"missing path", amphi.Recording{SpaceID: "a"}, amphi.EInvalid, []string{"c"}},
		{"negative bytes", amphi.Recording{SpaceID: "a", Path: "x", Bytes: -1}, amphi.EInvalid, []string{"c"}},
		{"finalize c", amphi.Recording{SpaceID: "c", Path: "rec/c2.ogg", Duration: time.Second, Bytes: 5, Finalized: true}, "", nil},
	}
	for _, st := range steps {
		err := db.PutRecording(t.Context(), &st.rec)
		if st.code != "" {
			if amphi.ErrorCode(err) != st.code {
				t.Fatalf("%s: error %v, want code %q", st.name, err, st.code)
			}
		} else {
			if err != nil {
				t.Fatalf("%s: %v", st.name, err)
			}
			got, err := db.Recording(t.Context(), st.rec.SpaceID)
			if err != nil {
				t.Fatalf("%s: %v", st.name, err)
			}
			if *got != st.rec {
				t.Fatalf("%s: got %+v, want %+v", st.name, *got, st.rec)
			}
		}
		recs, err := db.UnfinalizedRecordings(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		var ids []string
		for _, r := range recs {
			if r.Finalized {
				t.Fatalf("%s: finalized recording %+v listed", st.name, r)
			}
			ids = append(ids, r.SpaceID)
		}
		if fmt.Sprint(ids) != fmt.Sprint(st.want) {
			t.Fatalf("%s: unfinalized %v, want %v", st.name, ids, st.want)
		}
	}
}

func TestReopenKeepsDataAndSkipsMigrations(t *testing.T) {
	path := filepath.Join(t.TempDir(), "amphi.db")
	db, err := Open(t.Context(), path)
	if err != nil {
		t.Fatal(err)
	}
	want := space("kept", amphi.StateLive, t0)
	want.StartedAt = ptr(t0.Add(time.Second))
	mustCreate(t, db, want)
	tok, hash := mustToken(t)
	if err := db.CreateToken(t.Context(), &Token{Hash: hash, SpaceID: "kept", Role: amphi.RoleHost, CreatedAt: t0}); err != nil {
		t.Fatal(err)
	}
	before := migrationRows(t, db)
	if len(before) != len(migrations) {
		t.Fatalf("%d migration rows, want %d", len(before), len(migrations))
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}

	for range 2 {
		// Migration 1 has plain CREATE TABLEs: running it again would fail.
		db, err = Open(t.Context(), path)
		if err != nil {
			t.Fatal(err)
		}
		got, err := db.Space(t.Context(), "kept")
		if err != nil {
			t.Fatal(err)
		}
		sameSpace(t, got, want)
		if role, err := tokenRole(db, t.Context(), HashToken(tok), "kept"); err != nil || role != amphi.RoleHost {
			t.Fatalf("token after reopen: %q, %v", role, err)
		}
		if after := migrationRows(t, db); fmt.Sprint(after) != fmt.Sprint(before) {
			t.Fatalf("migration rows changed on reopen: %v, then %v", before, after)
		}
		var mode string
		if err := db.db.QueryRowContext(t.Context(), `PRAGMA journal_mode`).Scan(&mode); err != nil || mode != "wal" {
			t.Fatalf("journal_mode %q, %v; want wal", mode, err)
		}
		if err := db.Close(); err != nil {
			t.Fatal(err)
		}
	}
}

// migrationRows returns "version@applied_at" for each applied migration.
func migrationRows(t *testing.T, db *DB) []string {
	t.Helper()
	rows, err := db.db.QueryContext(t.Context(), `SELECT version, applied_at FROM schema_migrations ORDER BY version`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var v int
		var at string
		if err := rows.Scan(&v, &at); err != nil {
			t.Fatal(err)
		}
		out = append(out, fmt.Sprintf("%d@%s", v, at))
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

func TestOpenRefusesNewerSchema(t *testing.T) {
	path := filepath.Join(t.TempDir(), "amphi.db")
	db, err := Open(t.Context(), path)
	if err != nil {
		t.Fatal(err)
	}
	future := len(migrations) + 1
	if _, err := db.db.ExecContext(t.Context(), `INSERT INTO schema_migrations (version) VALUES (?)`, future); err != nil {
		t.Fatal(err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}

	db, err = Open(t.Context(), path)
	if err == nil {
		db.Close()
		t.Fatal("Open succeeded on a newer schema")
	}
	if !errors.Is(err, ErrSchemaTooNew) {
		t.Fatalf("error %v, want ErrSchemaTooNew", err)
	}
	msg := err.Error()
	for _, want := range []string{path, fmt.Sprintf("version %d", future), fmt.Sprintf("up to %d", len(migrations)), "upgrade amphi"} {
		if !strings.Contains(msg, want) {
			t.Errorf("error %q does not mention %q", msg, want)
		}
	}
}

func TestOpenRefusesBadPaths(t *testing.T) {
	for _, path := range []string{"", ":memory:", filepath.Join(t.TempDir(), "a?b.db")} {
		db, err := Open(t.Context(), path)
		if err == nil {
			db.Close()
			t.Fatalf("Open(%q) succeeded", path)
		}
		wantCode(t, err, amphi.EInvalid)
	}
}

func tokenRole(db *DB, ctx context.Context, hash []byte, spaceID string) (amphi.Role, error) {
	tk, err := db.Token(ctx, hash, spaceID)
	if err != nil {
		return "", err
	}
	return tk.Role, nil
}

func TestClipsAreKeptWithTheirSpace(t *testing.T) {
	db, _ := openTest(t)
	ctx := t.Context()
	now := time.Date(2026, 12, 4, 21, 0, 0, 0, time.UTC)
	mustCreate(t, db, space("s1", amphi.StateLive, now))
	c := &amphi.Clip{ID: "c1", SpaceID: "s1", Title: "a moment", From: 12 * time.Second, To: 16 * time.Second,
		Path: "clips/c1.opus", Bytes: 2000, CreatedAt: now}
	if err := db.PutClip(ctx, c); err != nil {
		t.Fatal(err)
	}
	got, err := db.Clip(ctx, "c1")
	if err != nil || *got != *c {
		t.Fatalf("clip %+v, %v: want %+v", got, err, c)
	}
	wantCode(t, db.PutClip(ctx, c), amphi.EConflict)
	other := *c
	other.ID, other.SpaceID = "c2", "nope"
	wantCode(t, db.PutClip(ctx, &other), amphi.ENotFound)
	other.SpaceID, other.To = "s1", other.From
	wantCode(t, db.PutClip(ctx, &other), amphi.EInvalid)
	_, err = db.Clip(ctx, "c9")
	wantCode(t, err, amphi.ENotFound)
}

func TestARecordingIsDeletedWithItsClipsAndExpires(t *testing.T) {
	db, _ := openTest(t)
	ctx := t.Context()
	now := time.Date(2026, 12, 4, 21, 0, 0, 0, time.UTC)
	for _, id := range []string{"old", "new"} {
		sp := space(id, amphi.StateLive, now)
		mustCreate(t, db, sp)
		if err := db.PutRecording(ctx, &amphi.Recording{SpaceID: id, Path: "recordings/" + id + ".opus", Bytes: 1000, Finalized: true}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := db.EndSpace(ctx, "old", []amphi.State{amphi.StateLive}, now.Add(-48*time.Hour), amphi.EndHost); err != nil {
		t.Fatal(err)
	}
	if err := db.PutClip(ctx, &amphi.Clip{ID: "c", SpaceID: "old", From: 0, To: time.Second, Path: "clips/c.opus", Bytes: 10, CreatedAt: now}); err != nil {
		t.Fatal(err)
	}
	if r, c, err := db.Storage(ctx); err != nil || r != 2000 || c != 10 {
		t.Errorf("storage %d, %d, %v: want 2000 and 10", r, c, err)
	}
	ids, err := db.ExpiredRecordings(ctx, now.Add(-24*time.Hour), 10)
	if err != nil || len(ids) != 1 || ids[0] != "old" {
		t.Fatalf("expired %v, %v: want old alone (new is live)", ids, err)
	}
	paths, err := db.DeleteRecording(ctx, "old")
	if err != nil || len(paths) != 2 {
		t.Fatalf("deleted %v, %v: want the recording's and the clip's paths", paths, err)
	}
	_, err = db.Clip(ctx, "c")
	wantCode(t, err, amphi.ENotFound)
	_, err = db.DeleteRecording(ctx, "old")
	wantCode(t, err, amphi.ENotFound)
	if ids, _ := db.ExpiredRecordings(ctx, now, 10); len(ids) != 0 {
		t.Errorf("expired after the deletion: %v", ids)
	}
}

// TestCohostTokensAfterAnUpgrade opens a file made before co-hosts
// (schema 6): the rebuilt tokens table keeps every token and takes a
// co-host's.
func TestCohostTokensAfterAnUpgrade(t *testing.T) {
	path := filepath.Join(t.TempDir(), "amphi.db")
	all := migrations
	migrations = all[:6]
	db, err := Open(t.Context(), path)
	migrations = all
	if err != nil {
		t.Fatal(err)
	}
	mustCreate(t, db, space("old", amphi.StateLive, t0))
	hostTok, hostHash := mustToken(t)
	if err := db.CreateToken(t.Context(), &Token{Hash: hostHash, SpaceID: "old", Role: amphi.RoleHost, Name: "Hal", CreatedAt: t0}); err != nil {
		t.Fatal(err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}

	if db, err = Open(t.Context(), path); err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if role, err := tokenRole(db, t.Context(), HashToken(hostTok), "old"); err != nil || role != amphi.RoleHost {
		t.Fatalf("the host's token after the upgrade: %q, %v", role, err)
	}
	coTok, coHash := mustToken(t)
	if err := db.CreateToken(t.Context(), &Token{Hash: coHash, SpaceID: "old", Role: amphi.RoleCohost, CreatedAt: t0}); err != nil {
		t.Fatal(err)
	}
	if role, err := tokenRole(db, t.Context(), HashToken(coTok), "old"); err != nil || role != amphi.RoleCohost {
		t.Fatalf("a co-host's token: %q, %v", role, err)
	}
}
