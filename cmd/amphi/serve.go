package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/amphi-audio/amphi/internal/api"
	"github.com/amphi-audio/amphi/internal/bus"
	"github.com/amphi-audio/amphi/internal/edge"
	"github.com/amphi-audio/amphi/internal/live"
	"github.com/amphi-audio/amphi/internal/ops"
	"github.com/amphi-audio/amphi/internal/store"
	"github.com/amphi-audio/amphi/internal/web"
)

// Config is the server's configuration, nested per package.
type Config struct {
	Addr    string
	DataDir string
	Bus     bus.Config
	Edge    edge.Config
	Live    live.Config
	API     api.Config
	// StageAddr, when set, is a second listening address serving the API
	// and WHIP but not listeners: the speakers' own door, which an
	// audience flood on Addr cannot fill. Empty means none.
	StageAddr string
	// MaxConns caps the connections Addr holds at once; past it new ones
	// are accepted and closed at once, counted, so the process never runs
	// out of file descriptors. Zero means the open-files limit less 1 000
	// kept for the stage, the database and the bus.
	MaxConns int
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
		API:             defaultAPIConfig(),
		ShutdownTimeout: 10 * time.Second,
	}
}

func defaultAPIConfig() api.Config {
	c := api.DefaultConfig()
	c.Gate.Node.MaxListeners = nodeCapacity()
	return c
}

// Per-listener budgets that derive the node's default capacity.
const (
	listenerMemory  = 64 << 10 // bytes: kernel socket buffers with room to spare
	listenersPerCPU = 25000    // one write a second each (BENCHMARKS.md)
	reservedFiles   = 2000     // the stage, the database, the bus, the recorder
)

// nodeCapacity derives how many listeners this machine holds at once: the
// least of what its open-files limit, its memory and its cores allow.
func nodeCapacity() int {
	n := min(openFilesLimit()-reservedFiles, listenersPerCPU*runtime.NumCPU())
	if mem := memTotal(); mem > 0 {
		n = min(n, int(mem/listenerMemory))
	}
	return max(n, 100)
}

// memTotal reads the machine's memory from /proc/meminfo, 0 if unknown.
func memTotal() int64 {
	b, err := os.ReadFile("/proc/meminfo")
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, "MemTotal:"); ok {
			var kb int64
			fmt.Sscanf(strings.TrimSpace(rest), "%d", &kb)
			return kb << 10
		}
	}
	return 0
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
	ln    *capListener
	http  *http.Server
	serve chan error

	stageLn   *capListener
	stageHTTP *http.Server

	monitor   *ops.Monitor
	statuses  statusCounter
	badChunks atomic.Uint64
	stopBg    context.CancelFunc
	bg        sync.WaitGroup
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
	fs.StringVar(&m.Config.StageAddr, "stage-addr", "", "a second address for the API and WHIP only, kept free of listeners")
	fs.IntVar(&m.Config.MaxConns, "max-conns", 0, "connections the main address holds at once (0: the open-files limit less 1000)")
	fs.IntVar(&m.Config.API.Gate.Node.MaxListeners, "max-listeners", m.Config.API.Gate.Node.MaxListeners, "concurrent listeners on this node (default: the least of what open files, memory and cores allow)")
	fs.IntVar(&m.Config.API.Gate.Room.MaxListeners, "max-space-listeners", m.Config.API.Gate.Room.MaxListeners, "concurrent listeners in one space (0: only the node's cap)")
	fs.Float64Var(&m.Config.API.Gate.Node.JoinRate, "join-rate", m.Config.API.Gate.Node.JoinRate, "admissions per second on this node; the waiting room absorbs the rest")
	fs.BoolVar(&m.Config.API.RequireAccounts, "require-accounts", m.Config.API.RequireAccounts, "only signed-in hosts and admins may create spaces (create the first admin with: amphi admin create)")
	pow := fs.Uint("pow", 0, "arm proof of work at this many bits from the start (0: armed by attack signals)")
	trusted := fs.String("trusted-proxies", "", "comma-separated prefixes whose X-Forwarded-For is believed (default none)")
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
	if *pow > 32 {
		return fmt.Errorf("serve: --pow %d: at most 32 bits", *pow)
	}
	m.Config.API.Gate.PoWDifficulty = uint8(*pow)
	if *trusted != "" {
		for _, p := range strings.Split(*trusted, ",") {
			prefix, err := netip.ParsePrefix(strings.TrimSpace(p))
			if err != nil {
				return fmt.Errorf("serve: --trusted-proxies: %w", err)
			}
			m.Config.API.Gate.TrustedProxies = append(m.Config.API.Gate.TrustedProxies, prefix)
		}
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
		m.badChunks.Add(1)
		m.Logger.Warn("bus: bad chunk", "err", err)
	}); err != nil {
		return err
	}
	cfg.Live.Logger = m.Logger
	m.live = live.NewManager(m.bus, cfg.Live)
	cfg.API.DataDir, cfg.API.Logger = cfg.DataDir, m.Logger
	if cfg.API.Gate.Key, err = loadKey(filepath.Join(cfg.DataDir, "gate.key")); err != nil {
		return err
	}
	top := ops.NewTopPrefixes(0)
	if m.api, err = api.New(cfg.API, m.db, m.live, m.edge, top); err != nil {
		return err
	}
	if err := m.api.Recover(ctx); err != nil {
		return fmt.Errorf("recover: %w", err)
	}
	m.startOps(top)

	maxConns := cfg.MaxConns
	if maxConns == 0 {
		maxConns = openFilesLimit() - 1000
	}
	if m.ln, err = listen(cfg.Addr, maxConns); err != nil {
		return err
	}
	if link, err := m.api.FirstAdminLink(ctx); err != nil {
		return err
	} else if link != "" {
		m.Logger.Warn("no accounts yet: open this one-time link within an hour to create the first admin (or run: amphi admin create)", "url", m.URL()+link)
	}
	mux := http.NewServeMux()
	mux.Handle("/", m.statuses.wrap(m.api))
	pages := m.statuses.wrap(web.New(web.DefaultConfig()))
	for _, p := range web.Patterns() {
		mux.Handle(p, pages)
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(ops.NewCollector(m.snapshot))
	mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	mux.Handle("/ops", m.monitor.Handler())
	m.http = m.newHTTPServer(mux)
	m.serve = make(chan error, 2)
	go func() { m.serve <- m.http.Serve(m.ln) }()
	if cfg.StageAddr != "" {
		// The stage's door: the API and WHIP, with a cap of its own.
		if m.stageLn, err = listen(cfg.StageAddr, 1000); err != nil {
			return err
		}
		m.stageHTTP = m.newHTTPServer(m.statuses.wrap(m.api))
		go func() { m.serve <- m.stageHTTP.Serve(m.stageLn) }()
	}
	return nil
}

// newHTTPServer sets the timeouts that keep slow and idle clients from
// holding the server: a slowloris is cut after ReadHeaderTimeout. Without
// TLS the server speaks HTTP/1.1 only, so HTTP/2's rapid-reset and
// CONTINUATION floods do not apply; a TLS front end must bound them.
func (m *Main) newHTTPServer(h http.Handler) *http.Server {
	return &http.Server{
		Handler:           h,
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       30 * time.Second,
		IdleTimeout:       30 * time.Second,
		MaxHeaderBytes:    16 << 10,
		ErrorLog:          slog.NewLogLogger(m.Logger.Handler(), slog.LevelDebug),
	}
}

// startOps runs the ops monitor and feeds its attack signals to the
// proof-of-work policy.
func (m *Main) startOps(top *ops.TopPrefixes) {
	ocfg := ops.DefaultConfig()
	ocfg.Logger = m.Logger
	m.monitor = ops.NewMonitor(ocfg, m.snapshot, top)
	ctx, cancel := context.WithCancel(context.Background())
	m.stopBg = cancel
	m.bg.Go(func() { m.monitor.Run(ctx) })
	m.bg.Go(func() {
		tick := time.NewTicker(ocfg.Interval)
		defer tick.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
				r := m.monitor.Report()
				m.api.UpdatePoW(r.Rates.InvalidShare, r.Rates.JoinRequests)
			}
		}
	})
}

// URL returns the server's base URL.
func (m *Main) URL() string {
	if m.ln == nil {
		return ""
	}
	return "http://" + m.ln.Addr().String()
}

// StageURL returns the base URL of the stage's own address, "" if none.
func (m *Main) StageURL() string {
	if m.stageLn == nil {
		return ""
	}
	return "http://" + m.stageLn.Addr().String()
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
	for _, srv := range []*http.Server{m.http, m.stageHTTP} {
		if srv == nil {
			continue
		}
		if err := srv.Shutdown(ctx); err != nil {
			errs = append(errs, fmt.Errorf("http shutdown: %w", err))
		}
		if err := <-m.serve; err != nil && !errors.Is(err, http.ErrServerClosed) {
			errs = append(errs, err)
		}
	}
	if m.stopBg != nil {
		m.stopBg()
		m.bg.Wait()
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
