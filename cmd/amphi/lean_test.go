package main

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/amphi-audio/amphi/internal/client"
	"github.com/amphi-audio/amphi/internal/gate"
)

// TestForgedTicketsAreRefusedBeforeNetHTTP: listen requests with forged
// tickets, pipelined on one keep-alive connection, are answered by the
// lean path exactly as the handler answers them (status, headers that
// matter, body), are counted the same, and the same connection then
// streams with a genuine ticket.
func TestForgedTicketsAreRefusedBeforeNetHTTP(t *testing.T) {
	t.Parallel()
	ctx, m, sp := onAir(t, 30*time.Second)
	adm, err := client.New(m.URL()).Join(ctx, sp.ID, nil)
	if err != nil {
		t.Fatal(err)
	}
	forged := []byte(adm.Ticket)
	if forged[len(forged)-3] == 'A' {
		forged[len(forged)-3] = 'B'
	} else {
		forged[len(forged)-3] = 'A'
	}
	host := strings.TrimPrefix(m.URL(), "http://")
	get := func(ticket, extra string) string {
		return fmt.Sprintf("GET /spaces/%s/live.opus?ticket=%s HTTP/1.1\r\nHost: %s\r\n%s\r\n", sp.ID, ticket, host, extra)
	}
	conn, err := net.Dial("tcp", host)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(20 * time.Second))
	// Three refused at once, then one the lean path leaves to net/http (a
	// cookie), which must answer the same.
	io.WriteString(conn, strings.Repeat(get(string(forged), ""), 3)+get(string(forged), "Cookie: x=y\r\n"))
	br := bufio.NewReader(conn)
	var bodies []string
	for i := range 4 {
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatalf("response %d: %v", i, err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusUnauthorized || resp.Header.Get("Content-Type") != "application/json" || resp.Header.Get("WWW-Authenticate") == "" {
			t.Errorf("response %d: %s %v", i, resp.Status, resp.Header)
		}
		bodies = append(bodies, string(b))
	}
	for i := range 3 {
		if bodies[i] != bodies[3] {
			t.Errorf("lean answer %d %q differs from the handler's %q", i, bodies[i], bodies[3])
		}
	}
	g := m.api.GateStats()
	if g.LeanRefusals != 3 || g.Refusals[gate.RefusalTicketBadSignature] != 4 {
		t.Errorf("lean refusals %d, bad signatures %d: want 3 refused early, 4 counted", g.LeanRefusals, g.Refusals[gate.RefusalTicketBadSignature])
	}
	// The genuine ticket on the same connection: the stream flows.
	io.WriteString(conn, get(adm.Ticket, ""))
	resp, err := http.ReadResponse(br, nil)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("the genuine ticket after refusals: %v %v", resp, err)
	}
	if _, err := io.ReadFull(resp.Body, make([]byte, 1000)); err != nil {
		t.Errorf("reading the stream: %v", err)
	}
}
