// Package bus carries program chunks from the node that mixes a space to the
// nodes that serve its listeners, over NATS. It is the only package that
// knows NATS: by default it starts an embedded nats-server in-process; with a
// URL it joins an external one. Either way the rest of amphi sees one type.
// Besides the program, it carries plain messages (Publish, Subscribe,
// Request), such as the rehearsal tool's remote workers' (package load).
//
// The embedded server listens on loopback only and requires a token of
// every client, so that a local process without it can neither read nor
// forge the program; URL carries the token for the local processes that
// need it (edges, the rehearsal tool's workers).
package bus

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"

	"github.com/amphi-audio/amphi/internal/program"
)

// programSubject prefixes the per-space subjects chunks are published on.
const programSubject = "amphi.program."

// Config says which NATS to use.
type Config struct {
	// URL of an external NATS server, with its credentials if it needs
	// them (nats://token@host:port, nats://user:password@host:port).
	// Empty means an embedded server.
	URL string
	// Listen is the embedded server's client address, so other processes
	// on this machine (edges, rehearsal workers) can join it. It must be a
	// loopback address: machines join each other through an external NATS
	// (URL). Empty means 127.0.0.1 on a free port.
	Listen string
	// Token is what every client of the embedded server must present.
	// Empty means a random one made by Open.
	Token string
	// ReadyTimeout bounds the wait for the embedded server and the first
	// connection. Zero means 10 s.
	ReadyTimeout time.Duration
	// Logger receives connection events. Nil means slog.Default().
	Logger *slog.Logger
	// Knobs inject faults in tests and rehearsals. The zero value injects
	// none.
	Knobs Knobs
}

// Knobs are fault-injection hooks for tests and rehearsals; nil fields do
// nothing.
type Knobs struct {
	// Publish runs before each chunk is published; an error it returns
	// fails the publish, as a closed connection or a full reconnect
	// buffer would.
	Publish func(spaceID string) error
	// Partition, when it returns true, drops the chunk unsent while
	// PublishChunk reports success, as a network partition swallows what
	// is sent into it: only a receiver can tell, by the gap.
	Partition func(spaceID string) bool
}

// DefaultConfig returns the configuration of a single-node amphi.
func DefaultConfig() Config {
	return Config{ReadyTimeout: 10 * time.Second}
}

// Bus is a connection to NATS, and the embedded server when there is one.
type Bus struct {
	srv    *server.Server
	nc     *nats.Conn
	url    string
	logger *slog.Logger
	knobs  Knobs

	publishErrs atomic.Uint64
}

// Open starts the embedded server when cfg.URL is empty and connects.
func Open(ctx context.Context, cfg Config) (*Bus, error) {
	if cfg.ReadyTimeout == 0 {
		cfg.ReadyTimeout = 10 * time.Second
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	b := &Bus{url: cfg.URL, logger: cfg.Logger, knobs: cfg.Knobs}
	opts := []nats.Option{
		nats.Name("amphi"),
		nats.Timeout(cfg.ReadyTimeout),
		nats.MaxReconnects(-1),
		nats.DisconnectErrHandler(func(_ *nats.Conn, err error) {
			// A nil error is Close's own disconnection: nothing to warn of.
			if err != nil {
				b.logger.Warn("bus: disconnected", "err", err)
			}
		}),
		nats.ReconnectHandler(func(nc *nats.Conn) {
			b.logger.Info("bus: reconnected", "url", nc.ConnectedUrlRedacted())
		}),
	}
	if cfg.URL == "" {
		if cfg.Token == "" {
			cfg.Token = rand.Text()
		}
		srv, err := startServer(cfg)
		if err != nil {
			return nil, err
		}
		b.srv = srv
		addr := srv.Addr().(*net.TCPAddr)
		b.url = (&url.URL{Scheme: "nats", User: url.User(cfg.Token), Host: addr.String()}).String()
		opts = append(opts, nats.InProcessServer(srv))
	}
	nc, err := nats.Connect(b.url, opts...)
	if err != nil {
		b.shutdownServer()
		return nil, fmt.Errorf("bus: connect %s: %w", redact(b.url), err)
	}
	b.nc = nc
	if err := ctx.Err(); err != nil {
		b.Close()
		return nil, err
	}
	return b, nil
}

func startServer(cfg Config) (*server.Server, error) {
	host, port := "127.0.0.1", -1
	if cfg.Listen != "" {
		h, p, err := net.SplitHostPort(cfg.Listen)
		if err != nil {
			return nil, fmt.Errorf("bus: listen address %q: %w", cfg.Listen, err)
		}
		if port, err = strconv.Atoi(p); err != nil {
			return nil, fmt.Errorf("bus: listen port %q: %w", p, err)
		}
		if h != "" {
			host = h
		}
	}
	if ip, err := netip.ParseAddr(host); err != nil || !ip.IsLoopback() {
		return nil, fmt.Errorf("bus: listen address %q: the embedded server listens on loopback only; other machines join an external NATS (--nats URL)", cfg.Listen)
	}
	srv, err := server.NewServer(&server.Options{
		ServerName:    "amphi",
		Host:          host,
		Port:          port,
		Authorization: cfg.Token,
		NoLog:         true,
		NoSigs:        true,
		// A program chunk is a few hundred bytes; the default 1 MiB payload
		// leaves room for what the scale-out work adds.
	})
	if err != nil {
		return nil, fmt.Errorf("bus: embedded server: %w", err)
	}
	srv.Start()
	if !srv.ReadyForConnections(cfg.ReadyTimeout) {
		srv.Shutdown()
		return nil, errors.New("bus: embedded server did not become ready")
	}
	return srv, nil
}

// URL returns the address other processes use to join this bus, with the
// embedded server's token: keep it as secret as the token.
func (b *Bus) URL() string { return b.url }

// RedactedURL is URL without its credentials, for logs and messages.
func (b *Bus) RedactedURL() string { return redact(b.url) }

// redact replaces a NATS URL's token or password with "xxxxx", leaving what
// does not parse as a URL out entirely.
func redact(rawURL string) string {
	u, err := url.Parse(rawURL)
	if err != nil {
		return "(a NATS URL that does not parse)"
	}
	if u.User != nil {
		if _, ok := u.User.Password(); !ok {
			u.User = url.User("xxxxx") // a lone user name is a token
		}
	}
	return u.Redacted()
}

// PublishChunk sends one chunk of a space's program. It buffers and does not
// wait for the network.
// Failures are counted (PublishErrors).
func (b *Bus) PublishChunk(spaceID string, c *program.Chunk) error {
	if f := b.knobs.Partition; f != nil && f(spaceID) {
		return nil
	}
	var err error
	if f := b.knobs.Publish; f != nil {
		err = f(spaceID)
	}
	if err == nil {
		err = b.nc.Publish(programSubject+spaceID, c.AppendWire(nil))
	}
	if err != nil {
		b.publishErrs.Add(1)
		return fmt.Errorf("bus: publish chunk %d of %s: %w", c.Seq, spaceID, err)
	}
	return nil
}

// PublishErrors returns how many chunks PublishChunk failed to send.
func (b *Bus) PublishErrors() uint64 { return b.publishErrs.Load() }

// SubscribePrograms calls fn with every chunk of every space's program, on one
// goroutine, in the order they arrive. Messages that do not decode are
// counted by the returned subscription's caller through onBad.
func (b *Bus) SubscribePrograms(fn func(spaceID string, c *program.Chunk), onBad func(error)) (*Subscription, error) {
	sub, err := b.nc.Subscribe(programSubject+"*", func(m *nats.Msg) {
		id := strings.TrimPrefix(m.Subject, programSubject)
		c, err := program.ParseWire(m.Data)
		if err != nil {
			if onBad != nil {
				onBad(fmt.Errorf("bus: chunk for %s: %w", id, err))
			}
			return
		}
		fn(id, c)
	})
	if err != nil {
		return nil, fmt.Errorf("bus: subscribe programs: %w", err)
	}
	// A slow consumer would drop chunks: give the subscription room for a
	// few seconds of every live program.
	if err := sub.SetPendingLimits(1<<16, 64<<20); err != nil {
		return nil, fmt.Errorf("bus: pending limits: %w", err)
	}
	return &Subscription{sub: sub}, nil
}

// Flush waits until the server has processed everything published so far.
func (b *Bus) Flush(ctx context.Context) error {
	return b.nc.FlushWithContext(ctx)
}

// Close drains the connection and stops the embedded server.
func (b *Bus) Close() error {
	if b.nc != nil {
		b.nc.Close()
	}
	b.shutdownServer()
	return nil
}

func (b *Bus) shutdownServer() {
	if b.srv != nil {
		b.srv.Shutdown()
		b.srv.WaitForShutdown()
	}
}

// Subscription is a live subscription; Close ends it.
type Subscription struct{ sub *nats.Subscription }

// Close unsubscribes.
func (s *Subscription) Close() error { return s.sub.Unsubscribe() }
