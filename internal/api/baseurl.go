package api

import (
	"fmt"
	"net/http"
	"net/url"
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
// with: the configured public URL, or else the request's own, as far as
// the server can tell without a proxy's help.
func (s *Server) baseURL(r *http.Request) string {
	if s.publicURL != "" {
		return s.publicURL
	}
	scheme := "http"
	if r.TLS != nil {
		scheme = "https"
	}
	return scheme + "://" + r.Host
}
