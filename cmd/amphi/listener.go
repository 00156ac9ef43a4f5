package main

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"os"
	"strings"
	"sync/atomic"
	"syscall"
)

// capListener holds at most max connections: past it, it accepts a new one
// and closes it at once, counted, and goes on accepting. Refusing inside
// Accept (rather than returning an error, which ends http.Server.Serve)
// keeps the server up when the crowd or a flood exceeds what the process
// may hold.
type capListener struct {
	net.Listener
	max     int64
	open    atomic.Int64
	refused atomic.Uint64
}

func listen(addr string, max int) (*capListener, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, err
	}
	return &capListener{Listener: ln, max: int64(max)}, nil
}

// Accept returns the next connection under the cap.
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
		return &cappedConn{Conn: c, l: l}, nil
	}
}

// cappedConn gives its place back once, when it closes.
type cappedConn struct {
	net.Conn
	l      *capListener
	closed atomic.Bool
}

func (c *cappedConn) Close() error {
	if c.closed.CompareAndSwap(false, true) {
		c.l.open.Add(-1)
	}
	return c.Conn.Close()
}

// Unwrap gives the edge the TCP connection underneath, for its socket
// options and non-blocking writes.
func (c *cappedConn) Unwrap() net.Conn { return c.Conn }

// openFilesLimit returns the process's open-files limit.
func openFilesLimit() int {
	var r syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &r); err != nil || r.Cur > 1<<20 {
		return 20000
	}
	return int(r.Cur)
}

// loadKey reads the gate's signing key, making one on first start, so
// tickets survive a restart.
func loadKey(path string) ([]byte, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		key := make([]byte, 32)
		rand.Read(key)
		if err := os.WriteFile(path, []byte(hex.EncodeToString(key)+"\n"), 0o600); err != nil {
			return nil, fmt.Errorf("gate key: %w", err)
		}
		return key, nil
	}
	if err != nil {
		return nil, fmt.Errorf("gate key: %w", err)
	}
	key, err := hex.DecodeString(strings.TrimSpace(string(b)))
	if err != nil || len(key) < 32 {
		return nil, fmt.Errorf("gate key %s: want 64 hex digits", path)
	}
	return key, nil
}
