// Package loopnet confines rehearsal traffic (load, soak and attack) to this
// machine: it refuses targets that are not loopback addresses and dials from
// source addresses rotated over 127.0.0.0/8, so one machine can open far
// more than the 64 k connections a single source address allows.
package loopnet

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"net/url"
	"sync/atomic"
)

// ErrNotLoopback is returned for targets outside 127.0.0.0/8 and ::1.
var ErrNotLoopback = errors.New("loopnet: rehearsal traffic goes only to loopback addresses (127.0.0.0/8, ::1)")

// CheckURL returns an error unless rawURL's host is a loopback address or
// "localhost". Names are not resolved: a name could point anywhere.
func CheckURL(rawURL string) error {
	u, err := url.Parse(rawURL)
	if err != nil {
		return fmt.Errorf("loopnet: %w", err)
	}
	return CheckHost(u.Hostname())
}

// CheckHost returns an error unless host is a loopback IP or "localhost".
func CheckHost(host string) error {
	if host == "localhost" {
		return nil
	}
	ip, err := netip.ParseAddr(host)
	if err != nil || !ip.IsLoopback() {
		return fmt.Errorf("%w: %q", ErrNotLoopback, host)
	}
	return nil
}

// Dialer dials TCP to loopback targets only, each connection from the next
// source address in 127.0.0.0/8 (IPv4 targets; IPv6 ::1 has one address).
// It is safe for concurrent use.
type Dialer struct {
	// Sources is how many source addresses to rotate over, from 127.0.0.2
	// on (see source). Zero means one: 127.0.0.2.
	Sources int
	// Offset skips that many addresses of the sequence, so two kinds of
	// traffic in one rehearsal (listeners and attackers, say) come from
	// different addresses. Zero starts at 127.0.0.2.
	Offset int
	// Stride is how far apart in the sequence consecutive connections
	// are: worker w of k processes sharing one sequence dials with Offset
	// w and Stride k. Zero means 1.
	Stride int
	// PerPrefix, when set, fills each /24 with that many consecutive
	// addresses of the sequence (at most 253) before moving to the next
	// /24, the way a mobile carrier's NAT pool puts hundreds of people in
	// one prefix. Zero turns the /24 with every address.
	PerPrefix int
	next      atomic.Uint32
}

// DialContext is for http.Transport.DialContext and the like.
func (d *Dialer) DialContext(ctx context.Context, network, addr string) (net.Conn, error) {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, fmt.Errorf("loopnet: %w", err)
	}
	if err := CheckHost(host); err != nil {
		return nil, err
	}
	// No TCP keepalive: rehearsal connections are short or busy, and the
	// probes cost the attacker 5 % of its CPU.
	nd := net.Dialer{KeepAlive: -1}
	if ip, err := netip.ParseAddr(host); (err == nil && ip.Is4()) || host == "localhost" {
		nd.LocalAddr = &net.TCPAddr{IP: d.source()}
		if network == "tcp" {
			network = "tcp4"
		}
	}
	return nd.DialContext(ctx, network, addr)
}

// source returns the next source address. The third octet turns fastest,
// so consecutive connections come from different /24 prefixes, as a real
// crowd's do (the gate limits joins per /24): 127.0.0.2, 127.0.1.2, …,
// 127.0.255.2, 127.0.0.3, … skipping .0 and .255 in the last octet.
func (d *Dialer) source() net.IP {
	n := max(d.Sources, 1)
	i := d.Offset + int(d.next.Add(1)-1)*max(d.Stride, 1)%n
	if per := min(d.PerPrefix, 253); per > 0 {
		p := i / per
		return net.IPv4(127, byte(p/256), byte(p%256), byte(2+i%per))
	}
	b := i % 256
	a := 2 + (i/256)%253
	c := (i / (256 * 253)) % 256
	return net.IPv4(127, byte(c), byte(b), byte(a))
}
