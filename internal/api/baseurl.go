package api

import (
	"fmt"
	"net/http"
	"net/netip"
	"net/url"
	"slices"
)

// parsePublicURL checks the base URL clients reach the server at (the
// operator's, behind a proxy) and returns it without a trailing slash.
func parsePublicURL(raw string) (string, error) {
	u, err := url.Parse(raw)
	if err != nil {
		return "", fmt.Errorf("api: public URL: %w", err)
	}
	if (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.User != nil ||
		(u.Path != "" && u.Path != "/") || u.RawQuery != "" || u.Fragment != "" {
		return "", fmt.Errorf("api: public URL %q: want http(s)://host[:port], with no path, query or user", raw)
	}
	return u.Scheme + "://" + u.Host, nil
}

// baseURL is the scheme and host of the absolute URLs the server answers
// with: the configured public URL, or else the request's own, over HTTPS
// when it came so, or a trusted proxy says it did.
func (s *Server) baseURL(r *http.Request) string {
	if s.publicURL != "" {
		return s.publicURL
	}
	scheme := "http"
	if r.TLS != nil || s.forwardedHTTPS(r) {
		scheme = "https"
	}
	return scheme + "://" + r.Host
}

// forwardedHTTPS reports whether a trusted proxy (Gate.TrustedProxies),
// the request's peer, says its client came over HTTPS: behind a TLS
// proxy, the URLs in answers (a join's stream and playlist) must be https
// ones or a player's next request goes to a port that speaks only TLS.
// The proxy sets X-Forwarded-Proto itself; a client's own is not believed
// unless the peer is trusted.
func (s *Server) forwardedHTTPS(r *http.Request) bool {
	trusted := s.gate.cfg.TrustedProxies
	if len(trusted) == 0 || r.Header.Get("X-Forwarded-Proto") != "https" {
		return false
	}
	peer, err := netip.ParseAddrPort(r.RemoteAddr)
	return err == nil && slices.ContainsFunc(trusted, func(p netip.Prefix) bool { return p.Contains(peer.Addr().Unmap()) })
}
