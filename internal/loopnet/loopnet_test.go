package loopnet

import (
	"context"
	"errors"
	"net"
	"strings"
	"testing"
)

func TestCheckURLRefusesEverythingButLoopback(t *testing.T) {
	for _, tc := range []struct {
		url string
		ok  bool
	}{
		{"http://127.0.0.1:8080/x", true},
		{"http://127.9.8.7/", true},
		{"http://[::1]:80/", true},
		{"http://localhost:8080", true},
		{"http://10.0.0.1/", false},
		{"http://192.168.1.1/", false},
		{"http://example.com/", false},
		{"http://[2001:db8::1]/", false},
		{"http://0.0.0.0/", false},
	} {
		err := CheckURL(tc.url)
		if (err == nil) != tc.ok || (err != nil && !errors.Is(err, ErrNotLoopback)) {
			t.Errorf("CheckURL(%q) = %v, want ok=%v", tc.url, err, tc.ok)
		}
	}
}

func TestDialerRotatesSourceAddresses(t *testing.T) {
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	seen := make(chan string, 3)
	go func() {
		for range 3 {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			host, _, _ := net.SplitHostPort(c.RemoteAddr().String())
			seen <- host
			c.Close()
		}
	}()
	d := &Dialer{Sources: 300}
	for range 3 {
		c, err := d.DialContext(context.Background(), "tcp", ln.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		c.Close()
	}
	want := map[string]bool{"127.0.0.2": true, "127.0.1.2": true, "127.0.2.2": true}
	for range 3 {
		if h := <-seen; !want[h] {
			t.Errorf("connection from %s, want one of 127.0.{0,1,2}.2: a new /24 each", h)
		}
	}
	if _, err := d.DialContext(context.Background(), "tcp", "10.1.2.3:80"); !errors.Is(err, ErrNotLoopback) {
		t.Errorf("dialing 10.1.2.3: %v, want ErrNotLoopback", err)
	}
}

func TestSourceAddressesSkipZeroAndBroadcastOctets(t *testing.T) {
	d := &Dialer{Sources: 1000}
	for range 1000 {
		ip := d.source().To4()
		if ip[0] != 127 || ip[3] == 0 || ip[3] == 255 {
			t.Fatalf("source %v", ip)
		}
	}
}

func TestPerPrefixFillsAPrefixBeforeTheNext(t *testing.T) {
	// Two workers sharing one sequence, 3 addresses a /24.
	w0 := &Dialer{Sources: 100, PerPrefix: 3, Stride: 2}
	w1 := &Dialer{Sources: 100, PerPrefix: 3, Stride: 2, Offset: 1}
	var got []string
	for range 3 {
		got = append(got, w0.source().String(), w1.source().String())
	}
	want := []string{"127.0.0.2", "127.0.0.3", "127.0.0.4", "127.0.1.2", "127.0.1.3", "127.0.1.4"}
	if strings.Join(got, " ") != strings.Join(want, " ") {
		t.Errorf("sources %v, want %v", got, want)
	}
}
