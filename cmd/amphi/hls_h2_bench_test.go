package main

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/amphi-audio/amphi/internal/client"
)

// listenLine is nginx's listen directive for addr: plain HTTP/1.1, or
// HTTPS with HTTP/2 and the certificate tls names.
func listenLine(addr string, tls *[2]string) string {
	if tls == nil {
		return "listen " + addr + ";"
	}
	return "listen " + addr + " ssl http2;\n    ssl_certificate " + tls[0] + ";\n    ssl_certificate_key " + tls[1] + ";"
}

// selfSigned writes a certificate for 127.0.0.1 and its key as PEM files
// and returns their paths.
func selfSigned(t testing.TB) *[2]string {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "127.0.0.1"},
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)},
		NotBefore:   time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	paths := &[2]string{filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")}
	for i, block := range []*pem.Block{{Type: "CERTIFICATE", Bytes: der}, {Type: "EC PRIVATE KEY", Bytes: keyDER}} {
		if err := os.WriteFile(paths[i], pem.EncodeToMemory(block), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return paths
}

// h2Client speaks HTTP/2 over TLS to a loopback server with a
// self-signed certificate, counting the bytes of its connections (TLS
// records included) in w, if given.
func h2Client(w *wire) *http.Client {
	var d net.Dialer
	return &http.Client{Transport: &http.Transport{
		ForceAttemptHTTP2: true,
		TLSClientConfig:   &tls.Config{InsecureSkipVerify: true}, // our own certificate, on loopback
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			c, err := d.DialContext(ctx, network, addr)
			if err != nil || w == nil {
				return c, err
			}
			return countingConn{c, w}, nil
		},
	}}
}

// BenchmarkHLSListenerWireHTTP2 is BenchmarkHLSListenerWire with the HLS
// listener behind nginx (deploy/nginx/amphi-hls.conf) speaking HTTP/2
// over TLS, as a CDN speaks to players: HPACK shrinks the ten responses'
// headers a second, TLS adds its records. Run with
//
//	go test -run '^$' -bench HLSListenerWireHTTP2 -benchtime 50x ./cmd/amphi/
func BenchmarkHLSListenerWireHTTP2(b *testing.B) {
	m := MustRunMainWith(b, b.TempDir(), func(m *Main) {
		m.Config.API.Gate.TrustedProxies = []netip.Prefix{netip.MustParsePrefix("127.0.0.1/32")}
	})
	defer m.Close()
	base, _ := runNginx(b, strings.TrimPrefix(m.URL(), "http://"), selfSigned(b))
	measureHLSWire(b, m, base, h2Client)
}

// TestHLSPlaysThroughNginxOverHTTP2 checks the path the benchmark above
// measures: a player joins and follows LL-HLS through nginx over HTTP/2,
// its parts coming from the cache.
func TestHLSPlaysThroughNginxOverHTTP2(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	m := MustRunMainWith(t, t.TempDir(), func(m *Main) {
		m.Config.API.Gate.TrustedProxies = []netip.Prefix{netip.MustParsePrefix("127.0.0.1/32")}
	})
	defer m.Close()
	base, _ := runNginx(t, strings.TrimPrefix(m.URL(), "http://"), selfSigned(t))
	sp := createSpace(t, ctx, m.URL())
	spk := dialSpeaker(t, ctx, client.New(m.URL()), sp.ID, sp.SpeakerToken)
	defer spk.playUntilStopped(t, ctx, 440)()
	c := client.New(base)
	c.HTTP = h2Client(nil)
	adm, err := c.Join(ctx, sp.ID, nil)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(adm.HLSURL, base+"/") {
		t.Errorf("behind the proxy, hls_url %q, want it under %s", adm.HLSURL, base)
	}
	hc := h2Client(nil)
	parts := 0
	err = followHLS(t, ctx, hc, adm.HLSURL, func(name string, media []byte) bool {
		parts++
		return parts < 3
	})
	if err != nil {
		t.Fatal(err)
	}
	resp, err := hc.Get(base + "/healthz")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.ProtoMajor != 2 {
		t.Errorf("nginx answered over %s, want HTTP/2", resp.Proto)
	}
}
