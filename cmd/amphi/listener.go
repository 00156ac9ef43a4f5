package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"

	"golang.org/x/sys/unix"

	"github.com/amphi-audio/amphi/internal/gate"
)

// capListener holds at most max connections, and at most perSource from
// one source: past either, it accepts a new one and closes it at once,
// counted by reason, and goes on accepting. Refusing inside Accept (rather
// than returning an error, which ends http.Server.Serve) keeps the server
// up when the crowd or a flood exceeds what the process may hold, and the
// per-source cap keeps one host from taking every place.
type capListener struct {
	net.Listener
	max       int64
	perSource int // 0: no cap per source
	exempt    []netip.Prefix
	open      atomic.Int64
	// refused counts connections refused for the node's cap,
	// refusedSource those refused for their source's: counters of the
	// Main's, shared by its addresses.
	refused, refusedSource *atomic.Uint64

	mu      sync.Mutex
	sources map[netip.Addr]int // open connections by source (sourceKey)

	// wrap, when set, wraps each connection it admits: the listeners'
	// address refuses bad tickets before net/http (api.Server.LeanConn).
	wrap func(net.Conn) net.Conn
}

// Default cap on one source's connections. A carrier's NAT puts hundreds
// of people behind one /24 but far fewer behind one address; the cap
// applies to one address (an IPv6 /64, what one subscriber gets).
const defaultConnsPerSource = 256

// acceptRefusals counts connections refused at accept, by reason.
type acceptRefusals struct {
	nodeCap, sourceCap atomic.Uint64
	// incomplete counts connections closed after part of a request and
	// no complete one (countIncomplete).
	incomplete atomic.Uint64
}

// listen listens on addr, capped at max connections in all and perSource
// from each source, counting refusals in rc; connections from the exempt
// prefixes (trusted proxies, which carry everyone's connections) have no
// cap per source. With reusePort, other processes may listen on the same
// address (SO_REUSEPORT) and the kernel spreads new connections over them:
// how several edge processes share one port (--procs).
func listen(addr string, reusePort bool, max, perSource int, exempt []netip.Prefix, rc *acceptRefusals) (*capListener, error) {
	var lc net.ListenConfig
	if reusePort {
		lc.Control = func(_, _ string, c syscall.RawConn) error {
			var serr error
			err := c.Control(func(fd uintptr) {
				serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_REUSEPORT, 1)
			})
			return errors.Join(err, serr)
		}
	}
	ln, err := lc.Listen(context.Background(), "tcp", addr)
	if err != nil {
		return nil, err
	}
	return &capListener{Listener: ln, max: int64(max), perSource: perSource, exempt: exempt,
		refused: &rc.nodeCap, refusedSource: &rc.sourceCap, sources: make(map[netip.Addr]int)}, nil
}

// Accept returns the next connection under the caps.
func (l *capListener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		if l.open.Add(1) > l.max {
			l.open.Add(-1)
			l.refused.Add(1)
			c.Close()
			continue
		}
		src, ok := l.admitSource(c.RemoteAddr())
		if !ok {
			l.open.Add(-1)
			l.refusedSource.Add(1)
			c.Close()
			continue
		}
		var conn net.Conn = &cappedConn{Conn: c, l: l, src: src}
		if l.wrap != nil {
			conn = l.wrap(conn)
		}
		return conn, nil
	}
}

// admitSource takes a place for addr's source, if it has one left. The
// zero Addr it returns for an uncapped connection holds no place.
func (l *capListener) admitSource(addr net.Addr) (netip.Addr, bool) {
	ta, ok := addr.(*net.TCPAddr)
	if l.perSource <= 0 || !ok {
		return netip.Addr{}, true
	}
	src := sourceKey(ta.AddrPort().Addr())
	for _, p := range l.exempt {
		if p.Contains(src) {
			return netip.Addr{}, true
		}
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.sources[src] >= l.perSource {
		return netip.Addr{}, false
	}
	l.sources[src]++
	return src, true
}

// sourceOpen returns how many connections addr's source holds now.
func (l *capListener) sourceOpen(addr netip.Addr) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.sources[sourceKey(addr)]
}

func (l *capListener) releaseSource(src netip.Addr) {
	if !src.IsValid() {
		return
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.sources[src]--; l.sources[src] <= 0 {
		delete(l.sources, src)
	}
}

// sourceKey is what the per-source cap counts: an IPv4 address, or an IPv6
// address's /64.
func sourceKey(a netip.Addr) netip.Addr {
	a = a.Unmap()
	if a.Is6() {
		p, _ := a.Prefix(64)
		return p.Addr()
	}
	return a
}

// cappedConn gives its places back once, when it closes.
type cappedConn struct {
	net.Conn
	l      *capListener
	src    netip.Addr // its source's place, if it holds one
	closed atomic.Bool
	// read and complete: bytes arrived; a whole request did. Only the
	// connection's own goroutine reads and writes them.
	read, complete bool
}

func (c *cappedConn) Read(b []byte) (int, error) {
	n, err := c.Conn.Read(b)
	c.read = c.read || n > 0
	return n, err
}

func (c *cappedConn) Close() error {
	if c.closed.CompareAndSwap(false, true) {
		c.l.open.Add(-1)
		c.l.releaseSource(c.src)
	}
	return c.Conn.Close()
}

// Unwrap gives the edge the TCP connection underneath, for its socket
// options and non-blocking writes.
func (c *cappedConn) Unwrap() net.Conn { return c.Conn }

// defaultMaxConns is the main address's cap on connections: the open-files
// limit less what the process keeps for itself.
func defaultMaxConns() int { return openFilesLimit() - reservedFiles }

// openFilesLimit returns the process's open-files limit.
func openFilesLimit() int {
	var r syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &r); err != nil || r.Cur > 1<<20 {
		return 20000
	}
	return int(r.Cur)
}

// loadKey reads a 32-byte secret kept hex-encoded at path (the bus's
// token), making one on first start, 0600, so it survives a restart.
func loadKey(path string) ([]byte, error) {
	key, _, err := loadKeys(path, true)
	return key, err
}

// loadKeys reads the gate's keys from path, one per line in hex (64
// digits or more): the first signs, the others are the previous ones, which
// still verify, so that a key is rotated without refusing the tickets out
// there: put the new key on the first line, keep the old one below it for a
// ticket's lifetime, then remove it. Every node of a fleet reads the same
// file. A missing file is created with one random key if create is set: an
// edge must have its origin's.
func loadKeys(path string, create bool) (key []byte, previous [][]byte, err error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) && create {
		key := make([]byte, 32)
		rand.Read(key)
		if err := os.WriteFile(path, []byte(hex.EncodeToString(key)+"\n"), 0o600); err != nil {
			return nil, nil, fmt.Errorf("key: %w", err)
		}
		return key, nil, nil
	}
	if err != nil {
		return nil, nil, fmt.Errorf("key: %w", err)
	}
	var keys [][]byte
	for _, line := range strings.Split(string(b), "\n") {
		if line = strings.TrimSpace(line); line == "" {
			continue
		}
		k, err := hex.DecodeString(line)
		if err != nil || len(k) < 32 {
			return nil, nil, fmt.Errorf("key %s: line %d: want 64 hex digits", path, len(keys)+1)
		}
		keys = append(keys, k)
	}
	if len(keys) == 0 {
		return nil, nil, fmt.Errorf("key %s: no key in it", path)
	}
	return keys[0], keys[1:], nil
}

// connKey holds a request's *cappedConn in its context (connContext).
type connKey struct{}

// connContext is an http.Server's ConnContext: it lets markComplete find
// the connection a request came on.
func connContext(ctx context.Context, c net.Conn) context.Context {
	if cc := cappedOf(c); cc != nil {
		return context.WithValue(ctx, connKey{}, cc)
	}
	return ctx
}

// cappedOf returns the *cappedConn under c's wrappers, or nil.
func cappedOf(c net.Conn) *cappedConn {
	for {
		if cc, ok := c.(*cappedConn); ok {
			return cc
		}
		u, ok := c.(interface{ Unwrap() net.Conn })
		if !ok {
			return nil
		}
		c = u.Unwrap()
	}
}

// markComplete records that a whole request arrived on its connection.
func markComplete(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if cc, ok := r.Context().Value(connKey{}).(*cappedConn); ok {
			cc.complete = true
		}
		h.ServeHTTP(w, r)
	})
}

// countIncomplete is an http.Server's ConnState hook: a connection closed
// after sending part of a request but never a whole one (net/http cut it
// at ReadHeaderTimeout: a slowloris) counts as an invalid refusal from its
// source, so /ops sees the attack. One that sent nothing, such as a
// browser's preconnect, is not counted; nor is one whose requests the
// lean path answered (it reports them with Answered).
func (m *Main) countIncomplete(c net.Conn, st http.ConnState) {
	if st != http.StateClosed {
		return
	}
	if a, ok := c.(interface{ Answered() bool }); ok && a.Answered() {
		return
	}
	cc := cappedOf(c)
	if cc == nil || !cc.read || cc.complete {
		return
	}
	m.refusedAtAccept.incomplete.Add(1)
	if ap, err := netip.ParseAddrPort(c.RemoteAddr().String()); err == nil {
		m.top.Add(gate.Prefix(ap.Addr()))
	}
}
