package live

import (
	"errors"
	"fmt"
	"sync"

	"github.com/amphi-audio/amphi"
)

// Manager keeps the sessions of the spaces on air on this node.
type Manager struct {
	cfg Config
	pub Publisher

	mu       sync.Mutex
	sessions map[string]*Session
	reserved int // places held by Reserve and not yet used or released
	closed   bool
}

// NewManager returns a manager with nothing on air.
func NewManager(pub Publisher, cfg Config) *Manager {
	return &Manager{cfg: cfg, pub: pub, sessions: make(map[string]*Session)}
}

// Reserve holds one of the node's places on air for a space about to
// start, so that the work done before its start (the store's state) cannot
// overrun MaxLive. It is amphi.EFull when MaxLive spaces are on air or
// starting, amphi.EUnavailable once the manager is closed. Start the space
// in the place, or Release it.
func (m *Manager) Reserve() (*Place, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return nil, amphi.Errorf(amphi.EUnavailable, "server is shutting down")
	}
	if m.cfg.MaxLive > 0 && len(m.sessions)+m.reserved >= m.cfg.MaxLive {
		return nil, amphi.Errorf(amphi.EFull, "this server already has %d spaces on air, the most it takes: try again when one ends", m.cfg.MaxLive)
	}
	m.reserved++
	return &Place{m: m}, nil
}

// Place is a place on air held by Reserve.
type Place struct {
	m    *Manager
	used bool // guarded by m.mu
}

// Start puts a space on air in the place, which is used up whether or not
// it succeeds. It is amphi.EConflict if the space already is on air.
func (p *Place) Start(space *amphi.Space, recordPath string) (*Session, error) {
	return p.start(space, recordPath, Start)
}

// Resume puts back on air, in the place, a space a crash took off (see
// Resume), as Start does.
func (p *Place) Resume(space *amphi.Space, recordPath string) (*Session, error) {
	return p.start(space, recordPath, Resume)
}

// start puts a space on air in the place with begin, Start or Resume. The
// manager's lock held across it keeps one session, so one writer, per
// recording.
func (p *Place) start(space *amphi.Space, recordPath string, begin func(*amphi.Space, string, Publisher, Config) (*Session, error)) (*Session, error) {
	m := p.m
	m.mu.Lock()
	defer m.mu.Unlock()
	if p.used {
		return nil, fmt.Errorf("live: start %s: %w", space.ID, amphi.Errorf(amphi.EInternal, "place on air used twice"))
	}
	p.used = true
	m.reserved--
	if m.closed {
		return nil, amphi.Errorf(amphi.EUnavailable, "server is shutting down")
	}
	if m.sessions[space.ID] != nil {
		return nil, amphi.Errorf(amphi.EConflict, "space %s is already on air", space.ID)
	}
	s, err := begin(space, recordPath, m.pub, m.cfg)
	if err != nil {
		return nil, err
	}
	m.sessions[space.ID] = s
	return s, nil
}

// Release gives the place back unless Start used it; it may be called
// more than once, and after Start.
func (p *Place) Release() {
	p.m.mu.Lock()
	defer p.m.mu.Unlock()
	if !p.used {
		p.used = true
		p.m.reserved--
	}
}

// Session returns the space's session, or nil if it is not on air here.
func (m *Manager) Session(spaceID string) *Session {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.sessions[spaceID]
}

// Stop takes a space off air; it is a no-op if it is not on air.
func (m *Manager) Stop(spaceID string) error {
	m.mu.Lock()
	s := m.sessions[spaceID]
	delete(m.sessions, spaceID)
	m.mu.Unlock()
	if s == nil {
		return nil
	}
	return s.Stop()
}

// Close refuses new sessions, stops every session and returns the ids of
// the spaces it took off air.
func (m *Manager) Close() ([]string, error) { return m.closeAll((*Session).Stop) }

// HandOver is Close for a process handing its spaces over to a standby:
// the sessions stop without ending their programs (Session.HandOver).
func (m *Manager) HandOver() ([]string, error) { return m.closeAll((*Session).HandOver) }

func (m *Manager) closeAll(stop func(*Session) error) ([]string, error) {
	m.mu.Lock()
	m.closed = true
	sessions := m.sessions
	m.sessions = map[string]*Session{}
	m.mu.Unlock()
	var (
		ids  []string
		errs []error
		mu   sync.Mutex
		wg   sync.WaitGroup
	)
	for id, s := range sessions {
		wg.Go(func() {
			err := stop(s)
			mu.Lock()
			defer mu.Unlock()
			ids = append(ids, id)
			errs = append(errs, err)
		})
	}
	wg.Wait()
	return ids, errors.Join(errs...)
}

// Sessions returns the sessions on air now.
func (m *Manager) Sessions() []*Session {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := make([]*Session, 0, len(m.sessions))
	for _, s := range m.sessions {
		out = append(out, s)
	}
	return out
}
