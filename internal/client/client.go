// Package client speaks amphi's HTTP API and receives its live stream, as
// any outside program would: the CLI commands, the load tool and the
// end-to-end tests use it, so they exercise the same protocols as everyone.
package client

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/amphi-audio/amphi"
)

// Client talks to one amphi server.
type Client struct {
	// BaseURL is the server's address, such as http://127.0.0.1:8080.
	BaseURL string
	// HTTP is the client used for requests. Nil means one without a
	// timeout, since live streams run as long as the space does; API calls
	// are bounded by their contexts.
	HTTP *http.Client

	// session and csrf are the account SignIn signed in, sent with requests
	// that carry no bearer token.
	session, csrf string
}

// SignIn signs in to a host's or admin's account: later requests without a
// bearer token act as that account.
func (c *Client) SignIn(ctx context.Context, email, password string) error {
	var out struct {
		CSRF string `json:"csrf"`
	}
	resp, err := c.send(ctx, http.MethodPost, "/auth/signin", "", map[string]string{"email": email, "password": password}, &out)
	if err != nil {
		return err
	}
	for _, ck := range resp.Cookies() {
		if ck.Name == "amphi_session" {
			c.session = ck.Value
		}
	}
	if c.session == "" {
		return fmt.Errorf("sign in: the server set no session cookie")
	}
	c.csrf = out.CSRF
	return nil
}

// New returns a client of the server at baseURL.
func New(baseURL string) *Client {
	return &Client{BaseURL: strings.TrimRight(baseURL, "/"), HTTP: &http.Client{}}
}

// Error is an error response from the server.
type Error struct {
	Status  int
	Code    string
	Message string
}

func (e *Error) Error() string {
	return fmt.Sprintf("server said %d %s: %s", e.Status, e.Code, e.Message)
}

// Space is a space as the server describes it.
type Space struct {
	amphi.Space
	LiveURL      string `json:"live_url"`
	JoinURL      string `json:"join_url"`
	HLSURL       string `json:"hls_url"`
	RecordingURL string `json:"recording_url"`
	WHIPURL      string `json:"whip_url"`
	Speakers     *int   `json:"speakers,omitempty"`
}

// Created is a new space with its tokens.
type Created struct {
	Space
	HostToken    string `json:"host_token"`
	SpeakerToken string `json:"speaker_token"`
}

// Create creates a space, live at once unless at is set, and mints one
// speaker token for it.
func (c *Client) Create(ctx context.Context, title string, at *time.Time) (*Created, error) {
	return c.CreateSpace(ctx, NewSpace{Title: title, At: at})
}

// NewSpace is what a host says of a space they create.
type NewSpace struct {
	Title, Description string
	// At is the scheduled start; nil means live now.
	At *time.Time
}

// CreateSpace is Create with every field a space may have.
func (c *Client) CreateSpace(ctx context.Context, ns NewSpace) (*Created, error) {
	req := map[string]any{"title": ns.Title}
	if ns.Description != "" {
		req["description"] = ns.Description
	}
	if ns.At != nil {
		req["scheduled_at"] = ns.At.Format(time.RFC3339)
	}
	var out Created
	if err := c.do(ctx, http.MethodPost, "/spaces", "", req, &out); err != nil {
		return nil, err
	}
	tok, err := c.MintSpeakerToken(ctx, out.ID, out.HostToken)
	if err != nil {
		return nil, err
	}
	out.SpeakerToken = tok
	return &out, nil
}

// MintSpeakerToken asks for a new speaker token with the host's token.
func (c *Client) MintSpeakerToken(ctx context.Context, spaceID, hostToken string) (string, error) {
	var out struct {
		Token string `json:"token"`
	}
	err := c.do(ctx, http.MethodPost, "/spaces/"+spaceID+"/tokens", hostToken, map[string]string{"role": string(amphi.RoleSpeaker)}, &out)
	return out.Token, err
}

// Start puts a scheduled space on air.
func (c *Client) Start(ctx context.Context, spaceID, hostToken string) (*Space, error) {
	var out Space
	return &out, c.do(ctx, http.MethodPost, "/spaces/"+spaceID+"/start", hostToken, nil, &out)
}

// End ends a space.
func (c *Client) End(ctx context.Context, spaceID, hostToken string) (*Space, error) {
	var out Space
	return &out, c.do(ctx, http.MethodPost, "/spaces/"+spaceID+"/end", hostToken, nil, &out)
}

// Get describes a space.
func (c *Client) Get(ctx context.Context, spaceID string) (*Space, error) {
	var out Space
	return &out, c.do(ctx, http.MethodGet, "/spaces/"+spaceID, "", nil, &out)
}

// WHIPURL returns the space's WHIP endpoint.
func (c *Client) WHIPURL(spaceID string) string { return c.BaseURL + "/spaces/" + spaceID + "/whip" }

// RecordingURL returns the space's recording.
func (c *Client) RecordingURL(spaceID string) string {
	return c.BaseURL + "/spaces/" + spaceID + "/recording.opus"
}

func (c *Client) do(ctx context.Context, method, path, token string, in, out any) error {
	_, err := c.send(ctx, method, path, token, in, out)
	return err
}

// send is do, also returning the response (its body closed) for its
// headers.
func (c *Client) send(ctx context.Context, method, path, token string, in, out any) (*http.Response, error) {
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return nil, err
		}
		body = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.BaseURL+path, body)
	if err != nil {
		return nil, err
	}
	if in != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	switch {
	case token != "":
		req.Header.Set("Authorization", "Bearer "+token)
	case c.session != "":
		req.AddCookie(&http.Cookie{Name: "amphi_session", Value: c.session})
		req.Header.Set("X-CSRF-Token", c.csrf)
	}
	resp, err := c.HTTP.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode >= 300 {
		return resp, ResponseError(resp)
	}
	if err := json.NewDecoder(io.LimitReader(resp.Body, 1<<20)).Decode(out); err != nil {
		return resp, fmt.Errorf("%s %s: decoding the answer: %w", method, path, err)
	}
	return resp, nil
}

// ResponseError reads an amphi error body into an *Error.
func ResponseError(resp *http.Response) error {
	var body struct {
		Error struct {
			Code    string `json:"code"`
			Message string `json:"message"`
		} `json:"error"`
	}
	raw, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	if err := json.Unmarshal(raw, &body); err != nil || body.Error.Code == "" {
		return &Error{Status: resp.StatusCode, Code: "unknown", Message: strings.TrimSpace(string(raw))}
	}
	return &Error{Status: resp.StatusCode, Code: body.Error.Code, Message: body.Error.Message}
}
