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
// need it (edges, the rehearsal tool's workers). In cluster mode (`amphi
// nats`) it is one node of a NATS cluster instead: see cluster.go.
package bus

import (
	"cmp"
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

// How the connection notices a node gone and finds another. A node whose
// process ends closes its connections, and the client moves at once; one
// whose machine or network fails says nothing, and only unanswered pings
// tell: pingInterval × maxPingsOut bounds that silence to a few seconds
// instead of nats.go's minutes. reconnectWait paces the retries of a node
// just tried, so that a cluster that is all down is asked four times a
// second, not hammered.
const (
	pingInterval  = 2 * time.Second
	maxPingsOut   = 2
	reconnectWait = 250 * time.Millisecond
)

// Config says which NATS to use.
type Config struct {
	// URL of an external NATS server, with its credentials if it needs
	// them (nats://token@host:port, nats://user:password@host:port), or a
	// comma-separated list of a cluster's nodes: the first is preferred
	// (list the nearest first), the others are taken when it fails, and
	// the connection moves between them forever. Open fails when none of
	// them answers. Empty means an embedded server.
	URL string
	// Listen is the embedded server's client address, so other processes
	// on this machine (edges, rehearsal workers) can join it. It must be a
	// loopback address, unless Cluster.Listen is set: a cluster's clients
	// fail over to other machines' nodes. Otherwise machines join each
	// other through an external NATS (URL). Empty means 127.0.0.1 on a
	// free port, as does port 0.
	Listen string
	// Cluster makes the embedded server one node of a NATS cluster. The
	// zero value means a single node.
	Cluster ClusterConfig
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
		nats.ReconnectWait(reconnectWait),
		nats.PingInterval(pingInterval),
		nats.MaxPingsOutstanding(maxPingsOut),
		nats.DontRandomize(),
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
	if o := discoveredCredentials(b.url); o != nil {
		opts = append(opts, o)
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
	host, port, err := hostPort("listen", cfg.Listen)
	if err != nil {
		return nil, err
	}
	opts := &server.Options{
		ServerName:    "amphi",
		Host:          host,
		Port:          port,
		Authorization: cfg.Token,
		NoLog:         true,
		NoSigs:        true,
		// A program chunk is a few hundred bytes; the default 1 MiB payload
		// leaves room for what the scale-out work adds.
	}
	if cfg.Cluster.Listen == "" {
		if !isLoopback(host) {
			return nil, fmt.Errorf("bus: listen address %q: the embedded server listens on loopback only; other machines join an external NATS (--nats URL)", cfg.Listen)
		}
	} else if err := cfg.Cluster.apply(opts); err != nil {
		return nil, err
	}
	srv, err := server.NewServer(opts)
	if err != nil {
		return nil, fmt.Errorf("bus: embedded server: %w", err)
	}
	srv.Start()
	if !srv.ReadyForConnections(cfg.ReadyTimeout) {
		srv.Shutdown()
		return nil, errors.New("bus: embedded server did not become ready (is its client or route port taken?)")
	}
	return srv, nil
}

// hostPort splits an embedded server's address; what is empty means
// 127.0.0.1 on a free port.
func hostPort(what, addr string) (host string, port int, err error) {
	if addr == "" {
		return "127.0.0.1", server.RANDOM_PORT, nil
	}
	host, p, err := net.SplitHostPort(addr)
	if err != nil {
		return "", 0, fmt.Errorf("bus: %s address %q: %w", what, addr, err)
	}
	if port, err = strconv.Atoi(p); err != nil || port < 0 {
		return "", 0, fmt.Errorf("bus: %s port %q: not a port number", what, p)
	}
	if port == 0 {
		port = server.RANDOM_PORT // nats-server reads 0 as its default port
	}
	return cmp.Or(host, "127.0.0.1"), port, nil
}

func isLoopback(host string) bool {
	ip, err := netip.ParseAddr(host)
	return err == nil && ip.IsLoopback()
}

// URL returns the address other processes use to join this bus, with the
// embedded server's token: keep it as secret as the token.
func (b *Bus) URL() string { return b.url }

// RedactedURL is URL without its credentials, for logs and messages.
func (b *Bus) RedactedURL() string { return redact(b.url) }

// redact replaces the token or password of each NATS URL in a
// comma-separated list with "xxxxx", leaving what does not parse as a URL
// out entirely.
func redact(rawURLs string) string {
	urls := strings.Split(rawURLs, ",")
	for i, raw := range urls {
		u, err := url.Parse(strings.TrimSpace(raw))
		if err != nil {
			urls[i] = "(a NATS URL that does not parse)"
			continue
		}
		if u.User != nil {
			if _, ok := u.User.Password(); !ok {
				u.User = url.User("xxxxx") // a lone user name is a token
			}
		}
		urls[i] = u.Redacted()
	}
	return strings.Join(urls, ",")
}

// discoveredCredentials gives the nodes a cluster tells the client of,
// which come without credentials, those of the first listed URL that has
// some; nil when none has.
func discoveredCredentials(rawURLs string) nats.Option {
	for raw := range strings.SplitSeq(rawURLs, ",") {
		u, err := url.Parse(strings.TrimSpace(raw))
		if err != nil || u.User == nil {
			continue
		}
		if pass, ok := u.User.Password(); ok {
			return nats.UserInfo(u.User.Username(), pass)
		}
		return nats.Token(u.User.Username())
	}
	return nil
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
