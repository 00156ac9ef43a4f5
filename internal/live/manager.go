package live

import (
	"errors"
	"sync"

	"github.com/amphi-audio/amphi"
)

// Manager keeps the sessions of the spaces on air on this node.
type Manager struct {
	cfg Config
	pub Publisher

	mu       sync.Mutex
	sessions map[string]*Session
	closed   bool
}

// NewManager returns a manager with nothing on air.
func NewManager(pub Publisher, cfg Config) *Manager {
	return &Manager{cfg: cfg, pub: pub, sessions: make(map[string]*Session)}
}

// Start puts a space on air. It is amphi.EConflict if it already is.
func (m *Manager) Start(space *amphi.Space, recordPath string) (*Session, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return nil, amphi.Errorf(amphi.EUnavailable, "server is shutting down")
	}
	if m.sessions[space.ID] != nil {
		return nil, amphi.Errorf(amphi.EConflict, "space %s is already on air", space.ID)
	}
	s, err := Start(space, recordPath, m.pub, m.cfg)
	if err != nil {
		return nil, err
	}
	m.sessions[space.ID] = s
	return s, nil
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
func (m *Manager) Close() ([]string, error) {
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
			err := s.Stop()
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
