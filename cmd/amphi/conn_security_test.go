package main

import (
	"bufio"
	"context"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/amphi-audio/amphi/internal/client"
	"github.com/amphi-audio/amphi/internal/gate"
)

// dialFrom opens a TCP connection to addr from the loopback address src.
// rcvbuf, when positive, fixes the socket's receive buffer, so a reader
// that stops holds little in its own kernel.
func dialFrom(t *testing.T, src, addr string, rcvbuf int) net.Conn {
	t.Helper()
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}}
	if rcvbuf > 0 {
		d.Control = func(_, _ string, c syscall.RawConn) error {
			var serr error
			err := c.Control(func(fd uintptr) {
				serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, rcvbuf)
			})
			if err != nil {
				return err
			}
			return serr
		}
	}
	c, err := d.DialContext(t.Context(), "tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// healthz sends GET /healthz on c and reads the answer, leaving the
// connection open (kept alive) when it succeeds.
func healthz(c net.Conn, rd *bufio.Reader) (int, error) {
	c.SetDeadline(time.Now().Add(10 * time.Second))
	defer c.SetDeadline(time.Time{})
	if _, err := io.WriteString(c, "GET /healthz HTTP/1.1\r\nHost: amphi\r\n\r\n"); err != nil {
		return 0, err
	}
	resp, err := http.ReadResponse(rd, nil)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	io.Copy(io.Discard, resp.Body)
	return resp.StatusCode, nil
}

// TestConnectionCapPerSource: one address holds at most its share of the
// main address's connections; the next one from it is closed at accept and
// counted, while another address is still served, and a place given back
// is taken again.
func TestConnectionCapPerSource(t *testing.T) {
	t.Parallel()
	const perSource = 8
	m := MustRunMainWith(t, t.TempDir(), func(m *Main) { m.Config.MaxConnsPerSource = perSource })
	defer m.Close()
	addr := m.ln.Addr().String()
	held := make([]net.Conn, perSource)
	for i := range held {
		held[i] = dialFrom(t, "127.0.0.3", addr, 0)
		if code, err := healthz(held[i], bufio.NewReader(held[i])); err != nil || code != http.StatusOK {
			t.Fatalf("connection %d from 127.0.0.3: %d, %v", i+1, code, err)
		}
	}
	over := dialFrom(t, "127.0.0.3", addr, 0)
	if code, err := healthz(over, bufio.NewReader(over)); err == nil {
		t.Fatalf("connection %d from 127.0.0.3 was answered %d, want it closed", perSource+1, code)
	}
	other := dialFrom(t, "127.0.0.4", addr, 0)
	if code, err := healthz(other, bufio.NewReader(other)); err != nil || code != http.StatusOK {
		t.Fatalf("another address: %d, %v; want 200", code, err)
	}
	if n := m.refusedAtAccept.sourceCap.Load(); n != 1 {
		t.Errorf("%d connections refused for their source, want 1", n)
	}
	src := netip.MustParseAddr("127.0.0.3")
	held[0].Close()
	waitFor(t, func() bool { return m.ln.sourceOpen(src) < perSource })
	again := dialFrom(t, "127.0.0.3", addr, 0)
	if code, err := healthz(again, bufio.NewReader(again)); err != nil || code != http.StatusOK {
		t.Errorf("a place given back: %d, %v; want 200", code, err)
	}
	metrics := string(fetch(t, t.Context(), m.OpsURL()+"/metrics"))
	if !strings.Contains(metrics, `amphi_refusals_total{reason="conns_source_cap"} 1`) {
		t.Errorf("metrics do not count the refusal:\n%s", grepLines(metrics, "amphi_refusals_total"))
	}
}

// TestTrustedProxiesHaveNoCapPerSource: a trusted proxy carries everyone's
// connections, so the per-source cap does not apply to it.
func TestTrustedProxiesHaveNoCapPerSource(t *testing.T) {
	t.Parallel()
	m := MustRunMainWith(t, t.TempDir(), func(m *Main) {
		m.Config.MaxConnsPerSource = 2
		m.Config.API.Gate.TrustedProxies = []netip.Prefix{netip.MustParsePrefix("127.0.0.6/32")}
	})
	defer m.Close()
	for i := range 4 {
		c := dialFrom(t, "127.0.0.6", m.ln.Addr().String(), 0)
		if code, err := healthz(c, bufio.NewReader(c)); err != nil || code != http.StatusOK {
			t.Fatalf("connection %d from the proxy: %d, %v", i+1, code, err)
		}
	}
}

// TestSlowRecordingReaderIsCut: a client that asks for a recording and
// stops reading is cut once a write makes no progress, rather than holding
// its connection for good, and the server answers others meanwhile.
func TestSlowRecordingReaderIsCut(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	dir := t.TempDir()
	m := MustRunMain(t, dir)
	defer m.Close()
	c := client.New(m.URL())
	sp, err := c.Create(ctx, "Long", nil)
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(time.Second)
	if _, err := c.End(ctx, sp.ID, sp.HostToken); err != nil {
		t.Fatal(err)
	}
	// The recording of a long conversation: far more than the sockets
	// between the server and the reader can buffer.
	rec, err := m.db.Recording(ctx, sp.ID)
	if err != nil {
		t.Fatal(err)
	}
	const size = 64 << 20
	if err := os.Truncate(filepath.Join(dir, rec.Path), size); err != nil {
		t.Fatal(err)
	}

	slow := dialFrom(t, "127.0.0.5", m.ln.Addr().String(), 4<<10)
	if _, err := io.WriteString(slow, "GET /spaces/"+sp.ID+"/recording.opus HTTP/1.1\r\nHost: amphi\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	src := netip.MustParseAddr("127.0.0.5")
	waitFor(t, func() bool { return m.ln.sourceOpen(src) == 1 })
	start := time.Now()
	for m.ln.sourceOpen(src) > 0 {
		if code := getStatus(t, ctx, m.URL()+"/healthz"); code != http.StatusOK {
			t.Fatalf("/healthz answered %d while the slow reader held on", code)
		}
		if time.Since(start) > time.Minute {
			t.Fatal("the slow reader still holds its connection after a minute")
		}
		time.Sleep(500 * time.Millisecond)
	}
	t.Logf("the slow reader was cut after %v", time.Since(start).Round(time.Second))
	// What it can still read is what the sockets held: not the recording.
	slow.SetReadDeadline(time.Now().Add(30 * time.Second))
	n, _ := io.Copy(io.Discard, slow)
	if n == 0 || n >= size {
		t.Errorf("the slow reader got %d bytes of a %d-byte recording after the cut", n, size)
	}
}

// TestOpsOnlyOnTheOpsAddress: /ops and /metrics, which name the refused
// sources, are served on the ops address and not the public one; hosts
// read the verdict alone through the API.
func TestOpsOnlyOnTheOpsAddress(t *testing.T) {
	t.Parallel()
	if got := DefaultConfig().OpsAddr; got != "127.0.0.1:8081" {
		t.Errorf("the default ops address is %q, want 127.0.0.1:8081 as the README says", got)
	}
	m := MustRunMain(t, t.TempDir())
	defer m.Close()
	for _, path := range []string{"/ops", "/ops?format=json", "/metrics"} {
		if code := getStatus(t, t.Context(), m.URL()+path); code != http.StatusNotFound {
			t.Errorf("main address %s: %d, want 404", path, code)
		}
		if code := getStatus(t, t.Context(), m.OpsURL()+path); code != http.StatusOK {
			t.Errorf("ops address %s: %d, want 200", path, code)
		}
	}
	sp, err := client.New(m.URL()).Create(t.Context(), "Watched", nil)
	if err != nil {
		t.Fatal(err)
	}
	health := m.URL() + "/spaces/" + sp.ID + "/health"
	resp, body := call(t, "GET", health, nil, bearerHdr(sp.HostToken))
	if resp.StatusCode != http.StatusOK || body["verdict"] != "healthy" || len(body) != 1 {
		t.Errorf("the host's health: %d %v, want 200 and the verdict alone", resp.StatusCode, body)
	}
	for who, hdr := range map[string]map[string]string{"anonymous": nil, "a speaker": bearerHdr(sp.SpeakerToken)} {
		if resp, body := call(t, "GET", health, nil, hdr); resp.StatusCode != http.StatusUnauthorized && resp.StatusCode != http.StatusForbidden {
			t.Errorf("%s asking for health: %d %v, want 401 or 403", who, resp.StatusCode, body)
		}
	}
}

// TestSlowlorisIsCountedAsInvalid: connections cut by the header timeout
// after part of a request count as invalid refusals from their source, so
// /ops sees a slowloris; a connection that sends nothing (a browser's
// preconnect) and one that completes its request do not count.
func TestSlowlorisIsCountedAsInvalid(t *testing.T) {
	t.Parallel()
	m := MustRunMain(t, t.TempDir())
	defer m.Close()
	host := strings.TrimPrefix(m.URL(), "http://")
	for range 3 {
		c, err := net.Dial("tcp", host)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		io.WriteString(c, "GET /healthz HTTP/1.1\r\nHost: x\r\n") // and never the end
	}
	quiet, err := net.Dial("tcp", host)
	if err != nil {
		t.Fatal(err)
	}
	defer quiet.Close()
	if st := getStatus(t, t.Context(), m.URL()+"/healthz"); st != http.StatusOK {
		t.Fatalf("healthz: %d", st)
	}
	deadline := time.Now().Add(time.Minute)
	for m.refusedAtAccept.incomplete.Load() < 3 && time.Now().Before(deadline) {
		time.Sleep(100 * time.Millisecond)
	}
	time.Sleep(time.Second) // the quiet one is cut at the same timeout
	if n := m.snapshot().Refusals[gate.RefusalIncomplete.String()]; n != 3 {
		t.Errorf("incomplete requests counted: %d, want the 3 slow ones", n)
	}
}
