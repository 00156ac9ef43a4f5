package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"time"

	"github.com/amphi-audio/amphi/internal/api"
	"github.com/amphi-audio/amphi/internal/bus"
	"github.com/amphi-audio/amphi/internal/edge"
	"github.com/amphi-audio/amphi/internal/live"
	"github.com/amphi-audio/amphi/internal/store"
)

// Config is the server's configuration, nested per package.
type Config struct {
	Addr    string
	DataDir string
	Bus     bus.Config
	Edge    edge.Config
	Live    live.Config
	API     api.Config
	// ShutdownTimeout bounds a graceful shutdown. Zero means 10 s.
	ShutdownTimeout time.Duration
	LogLevel        slog.Level
}

// DefaultConfig is what `amphi serve` runs with no flags.
func DefaultConfig() Config {
	return Config{
		Addr:            "127.0.0.1:8080",
		DataDir:         "./amphi-data",
		Bus:             bus.DefaultConfig(),
		Edge:            edge.DefaultConfig(),
		Live:            live.DefaultConfig(),
		API:             api.DefaultConfig(),
		ShutdownTimeout: 10 * time.Second,
	}
}

// Main is the server: it builds and wires the pieces. Tests run it
// in-process on 127.0.0.1:0 with a temporary data directory.
type Main struct {
	Config Config
	Logger *slog.Logger

	db    *store.DB
	bus   *bus.Bus
	sub   *bus.Subscription
	edge  *edge.Edge
	live  *live.Manager
	api   *api.Server
	ln    net.Listener
	http  *http.Server
	serve chan error
}

// NewMain returns a Main with the default configuration.
func NewMain() *Main {
	return &Main{Config: DefaultConfig()}
}

// ParseFlags sets the configuration from `amphi serve`'s flags.
func (m *Main) ParseFlags(_ context.Context, args []string) error {
	fs := flag.NewFlagSet("amphi serve", flag.ContinueOnError)
	fs.StringVar(&m.Config.Addr, "addr", m.Config.Addr, "HTTP listen address")
	fs.StringVar(&m.Config.DataDir, "data", m.Config.DataDir, "data directory: database and recordings")
	fs.StringVar(&m.Config.Bus.URL, "nats", m.Config.Bus.URL, "external NATS URL; empty runs an embedded server")
	fs.StringVar(&m.Config.Bus.Listen, "nats-listen", m.Config.Bus.Listen, "embedded NATS client address (default 127.0.0.1 on a free port)")
	fs.DurationVar(&m.Config.Edge.Burst, "burst", m.Config.Edge.Burst, "audio sent at once to a new listener, unless the request asks (?burst=)")
	fs.IntVar(&m.Config.Live.Mix.Bitrate, "bitrate", 32000, "program bitrate in bit/s")
	level := fs.String("log", "info", "log level: debug, info, warn, error")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("serve: unexpected argument %q", fs.Arg(0))
	}
	if err := m.Config.LogLevel.UnmarshalText([]byte(*level)); err != nil {
		return fmt.Errorf("serve: --log: %w", err)
	}
	return nil
}

// Run opens the store, the bus and the edge, recovers what a crash left,
// and starts serving HTTP. It returns once the server is listening.
func (m *Main) Run(ctx context.Context) error {
	if m.Logger == nil {
		m.Logger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: m.Config.LogLevel}))
	}
	cfg := &m.Config
	if err := os.MkdirAll(filepath.Join(cfg.DataDir, "recordings"), 0o755); err != nil {
		return fmt.Errorf("data directory: %w", err)
	}
	var err error
	if m.db, err = store.Open(ctx, filepath.Join(cfg.DataDir, "amphi.db")); err != nil {
		return err
	}
	cfg.Bus.Logger = m.Logger
	if m.bus, err = bus.Open(ctx, cfg.Bus); err != nil {
		return err
	}
	cfg.Edge.Logger = m.Logger
	m.edge = edge.New(cfg.Edge)
	if m.sub, err = m.bus.SubscribePrograms(m.edge.Publish, func(err error) {
		m.Logger.Warn("bus: bad chunk", "err", err)
	}); err != nil {
		return err
	}
	cfg.Live.Logger = m.Logger
	m.live = live.NewManager(m.bus, cfg.Live)
	cfg.API.DataDir, cfg.API.Logger = cfg.DataDir, m.Logger
	m.api = api.New(cfg.API, m.db, m.live, m.edge)
	if err := m.api.Recover(ctx); err != nil {
		return fmt.Errorf("recover: %w", err)
	}
	if m.ln, err = net.Listen("tcp", cfg.Addr); err != nil {
		return err
	}
	m.http = &http.Server{
		Handler:           m.api,
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       30 * time.Second,
		IdleTimeout:       60 * time.Second,
		MaxHeaderBytes:    16 << 10,
		ErrorLog:          slog.NewLogLogger(m.Logger.Handler(), slog.LevelDebug),
	}
	m.serve = make(chan error, 1)
	go func() { m.serve <- m.http.Serve(m.ln) }()
	return nil
}

// URL returns the server's base URL.
func (m *Main) URL() string {
	if m.ln == nil {
		return ""
	}
	return "http://" + m.ln.Addr().String()
}

// BusURL returns the address of the bus other processes can join.
func (m *Main) BusURL() string {
	if m.bus == nil {
		return ""
	}
	return m.bus.URL()
}

// drainTimeout bounds the wait for listeners to receive the end of their
// program before they are cut.
const drainTimeout = 2 * time.Second

// Close shuts the server down: it stops accepting, ends the spaces on air
// (finalising their recordings), lets listeners receive the end of the
// program, then closes the edge, the bus and the store.
func (m *Main) Close() error {
	timeout := m.Config.ShutdownTimeout
	if timeout == 0 {
		timeout = 10 * time.Second
	}
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	var errs []error
	if m.http != nil {
		if err := m.http.Shutdown(ctx); err != nil {
			errs = append(errs, fmt.Errorf("http shutdown: %w", err))
		}
		if err := <-m.serve; err != nil && !errors.Is(err, http.ErrServerClosed) {
			errs = append(errs, err)
		}
	}
	if m.api != nil {
		if err := m.api.EndAll(ctx); err != nil {
			errs = append(errs, fmt.Errorf("end spaces: %w", err))
		}
	}
	if m.live != nil {
		if _, err := m.live.Close(); err != nil {
			errs = append(errs, err)
		}
	}
	if m.edge != nil {
		if m.bus != nil {
			m.bus.Flush(ctx)
		}
		drainCtx, cancel := context.WithTimeout(ctx, drainTimeout)
		m.edge.Drain(drainCtx)
		cancel()
		m.edge.Close()
	}
	if m.sub != nil {
		m.sub.Close()
	}
	if m.bus != nil {
		m.bus.Close()
	}
	if m.db != nil {
		if err := m.db.Close(); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}
