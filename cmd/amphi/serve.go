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
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/amphi-audio/amphi/internal/api"
	"github.com/amphi-audio/amphi/internal/bus"
	"github.com/amphi-audio/amphi/internal/edge"
	"github.com/amphi-audio/amphi/internal/gate"
	"github.com/amphi-audio/amphi/internal/live"
	"github.com/amphi-audio/amphi/internal/ops"
	"github.com/amphi-audio/amphi/internal/program"
	"github.com/amphi-audio/amphi/internal/space"
	"github.com/amphi-audio/amphi/internal/store"
	"github.com/amphi-audio/amphi/internal/web"
)

// Config is the server's configuration, nested per package.
type Config struct {
	// Role is what this process does: RoleAll (the default), RoleOrigin or
	// RoleEdge (roles.go).
	Role string
	// Standby makes an origin wait for its data directory's lock and take
	// over when the server holding it stops or dies (standby.go).
	Standby bool
	// RetentionDays deletes the recordings and clips of spaces that ended
	// longer ago (housekeeping.go); 0 keeps them.
	RetentionDays int
	Addr          string
	DataDir       string
	// GateKeyFile holds the keys tickets are signed with, the same file on
	// every node of a fleet, so a ticket works at any edge. Empty means
	// gate.key in DataDir; an edge must be given one.
	GateKeyFile string
	// Node names this process on the bus and in its streams' headers.
	// Empty means the host name and the process id.
	Node string
	Bus  bus.Config
	Edge edge.Config
	Live live.Config
	API  api.Config
	// StageAddr, when set, is a second listening address serving the API
	// and WHIP but not listeners: the speakers' own door, which an
	// audience flood on Addr cannot fill. Empty means none.
	StageAddr string
	// MaxConns caps the connections Addr holds at once; past it new ones
	// are accepted and closed at once, counted, so the process never runs
	// out of file descriptors. Zero means the open-files limit less 1 000
	// kept for the stage, the database and the bus.
	MaxConns int
	// MaxConnsPerSource caps the connections one source address (an IPv6
	// /64) holds at once on Addr and StageAddr, so that one host cannot
	// take every place; the trusted proxies have no such cap. Zero means
	// 256; negative means no cap.
	MaxConnsPerSource int
	// OpsAddr serves /ops and /metrics, which Addr does not: they name the
	// sources refused. Empty means neither is served.
	OpsAddr string
	// RehearsalFaults serves POST /faults on OpsAddr, which makes every
	// space on air feign an internal fault for a while (faults.go): for
	// rehearsals on a staging server only. False means no /faults.
	RehearsalFaults bool
	// ReusePort lets other processes listen on Addr too (SO_REUSEPORT):
	// the kernel spreads new connections over them. False means Addr is
	// this process's alone.
	ReusePort bool
	// Procs, past 1, makes `amphi serve` a supervisor of that many edge
	// processes sharing Addr (procs.go). Only an edge may run so.
	Procs int
	// ShutdownTimeout bounds a graceful shutdown. Zero means 10 s.
	ShutdownTimeout time.Duration
	LogLevel        slog.Level
}

// DefaultConfig is what `amphi serve` runs with no flags.
func DefaultConfig() Config {
	return Config{
		Role:            RoleAll,
		Addr:            "127.0.0.1:8080",
		OpsAddr:         "127.0.0.1:8081",
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
	c.Gate.Node.JoinRate = float64(joinsPerCPU * runtime.NumCPU())
	c.Gate.Node.JoinBurst = int(c.Gate.Node.JoinRate)
	return c
}

// Per-listener budgets that derive the node's default capacity.
const (
	listenerMemory  = 64 << 10 // bytes: kernel socket buffers with room to spare
	listenersPerCPU = 25000    // one write a second each (BENCHMARKS.md)
	// joinsPerCPU is the admissions per second one core takes on top of
	// its listeners: on 2 cores, 18 000 listeners joining at 900/s were
	// all admitted with 0 stalls and first audio p99 20 ms at 1 000/s
	// (DESIGN.md; re-measured in docs/BENCHMARKS.md).
	joinsPerCPU = 500
	// reservedFiles is kept twice from the open-files limit: the main
	// address leaves it to the process's own files (the stage and its
	// door, the database, the bus, the recorders), and its listeners leave
	// it to connections that are not listening (joins, pages, the API), so
	// a full node still answers those.
	reservedFiles = 1000
)

// nodeCapacity derives how many listeners this machine holds at once: the
// least of what its open-files limit, its memory and its cores allow.
func nodeCapacity() int {
	n := min(defaultMaxConns()-reservedFiles, listenersPerCPU*runtime.NumCPU())
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

	db *store.DB // nil on an edge
	// dirLock holds the data directory for this process (lockDataDir);
	// nil on an edge.
	dirLock *os.File
	bus     *bus.Bus
	sub     *bus.Subscription
	// node names this process (Config.Node); dir is the spaces it knows;
	// fleet, on an origin, the edges that report.
	node  string
	dir   *space.Directory
	fleet *fleet
	// announcements (an edge's) and loads (an origin's) are the fleet's
	// subscriptions; announced counts down the announcements an ended
	// space still gets (announce).
	announcements, loads, lookups *bus.Subscription
	announced                     map[string]int
	lookupGuard                   *lookupGuard // an edge's
	// grants are the rounds of grants in each space with limits across
	// the fleet, by space (grantRound).
	grantsMu sync.Mutex
	grants   map[string]*spaceGrants
	// fetches answers edges' fetches of the chunks they missed.
	fetches *bus.Subscription
	// history answers edges' reads of the recordings made here (rewind).
	history *bus.Subscription
	edge    *edge.Edge
	live    *live.Manager
	api     *api.Server
	ln      *capListener
	http    *http.Server
	serve   chan error

	stageLn   *capListener
	stageHTTP *http.Server
	opsLn     *capListener
	opsHTTP   *http.Server
	// refusedAtAccept counts what the addresses refused at accept.
	refusedAtAccept acceptRefusals
	// top counts refused requests by source prefix, for /ops.
	top *ops.TopPrefixes

	monitor   *ops.Monitor
	faults    *faults // nil without RehearsalFaults
	statuses  statusCounter
	badChunks atomic.Uint64
	// recordingBytes and clipBytes are the storage they take, counted by
	// the housekeeping.
	recordingBytes, clipBytes atomic.Uint64
	stopBg                    context.CancelFunc
	bg                        sync.WaitGroup
	closeOnce                 sync.Once
	closeErr                  error
}

// NewMain returns a Main with the default configuration.
func NewMain() *Main {
	return &Main{Config: DefaultConfig()}
}

// ParseFlags sets the configuration from `amphi serve`'s flags.
func (m *Main) ParseFlags(_ context.Context, args []string) error {
	fs := flag.NewFlagSet("amphi serve", flag.ContinueOnError)
	fs.StringVar(&m.Config.Role, "role", m.Config.Role, "all: everything in one process; origin: the same, for a fleet with edges; edge: listeners only, fed by an origin over --nats")
	fs.StringVar(&m.Config.Addr, "addr", m.Config.Addr, "HTTP listen address")
	fs.StringVar(&m.Config.GateKeyFile, "gate-key-file", m.Config.GateKeyFile, "the ticket keys, one hex key per line (new first): the same file on every node (default gate.key in --data; an edge needs it)")
	fs.StringVar(&m.Config.Node, "node", m.Config.Node, "this process's name on the bus and in its streams' headers (default host name and pid)")
	fs.StringVar(&m.Config.DataDir, "data", m.Config.DataDir, "data directory: database and recordings")
	fs.StringVar(&m.Config.Bus.URL, "nats", m.Config.Bus.URL, "external NATS URL; empty runs an embedded server")
	fs.StringVar(&m.Config.Bus.Listen, "nats-listen", m.Config.Bus.Listen, "embedded NATS client address, loopback only, with the token in the data directory (default 127.0.0.1 on a free port)")
	fs.DurationVar(&m.Config.Edge.Burst, "burst", m.Config.Edge.Burst, "audio sent at once to a new listener, unless the request asks (?burst=)")
	fs.IntVar(&m.Config.Live.Mix.Bitrate, "bitrate", m.Config.Live.Mix.Bitrate, "program bitrate in bit/s")
	fs.BoolFunc("hls-aac", "offer LL-HLS in AAC-LC as well as Opus, for Apple devices before iOS 17, at about 1 % of a core per space (default true; --hls-aac=false turns it off)", func(v string) error {
		on, err := strconv.ParseBool(v)
		m.Config.Edge.NoHLSAAC = !on
		return err
	})
	fs.BoolVar(&m.Config.ReusePort, "reuse-port", false, "share --addr with other processes (SO_REUSEPORT): the kernel spreads connections over them")
	fs.IntVar(&m.Config.RetentionDays, "retention-days", 0, "delete the recordings and clips of spaces that ended more than this many days ago (0: keep them)")
	fs.BoolVar(&m.Config.Standby, "standby", false, "wait for the server on this --data directory to stop or die, then take over its spaces (with --role origin or all); a server stopped while a standby waits hands its spaces over instead of ending them")
	fs.IntVar(&m.Config.Procs, "procs", 1, "run this many edge processes on --addr (with --role edge), each with --ops-addr's port plus its index")
	fs.StringVar(&m.Config.StageAddr, "stage-addr", "", "a second address for the API and WHIP only, kept free of listeners")
	fs.IntVar(&m.Config.MaxConns, "max-conns", 0, fmt.Sprintf("connections the main address holds at once (0: the open-files limit less %d)", reservedFiles))
	fs.IntVar(&m.Config.MaxConnsPerSource, "max-conns-per-source", defaultConnsPerSource, "connections one source address (IPv6: one /64) holds at once; --trusted-proxies are exempt (-1: no cap)")
	fs.StringVar(&m.Config.OpsAddr, "ops-addr", m.Config.OpsAddr, "address serving /ops and /metrics, which the main address does not (empty: none)")
	fs.IntVar(&m.Config.API.Gate.Node.MaxListeners, "max-listeners", m.Config.API.Gate.Node.MaxListeners, "concurrent listeners on this node (default: the least of what open files, memory and cores allow)")
	fs.IntVar(&m.Config.API.Gate.Room.MaxListeners, "max-space-listeners", m.Config.API.Gate.Room.MaxListeners, "concurrent listeners in one space (0: only the node's cap)")
	fs.Float64Var(&m.Config.API.Gate.Node.JoinRate, "join-rate", m.Config.API.Gate.Node.JoinRate, "admissions per second on this node; the waiting room absorbs the rest")
	fs.Float64Var(&m.Config.API.Gate.Room.JoinRate, "space-join-rate", m.Config.API.Gate.Room.JoinRate, "admissions per second in one space, across the origin and all its edges (0: only each node's --join-rate)")
	fs.StringVar(&m.Config.API.PublicURL, "public-url", m.Config.API.PublicURL, "the base URL people reach this server at, e.g. https://amphi.example.org behind a TLS proxy: links use it, and https makes cookies Secure")
	fs.IntVar(&m.Config.Live.MaxLive, "max-live-spaces", m.Config.Live.MaxLive, "spaces on air on this node at once (default from the cores: a quarter of them for mixers; 0: no cap)")
	fs.DurationVar(&m.Config.Live.IdleEnd, "idle-end", m.Config.Live.IdleEnd, "end a live space after this long with nobody on its stage (0: never)")
	fs.BoolVar(&m.Config.RehearsalFaults, "rehearsal-faults", false, "serve POST /faults on --ops-addr, making every space on air feign an internal fault for a while: for rehearsals on a staging server only")
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

// Run locks the data directory, opens the store, the bus and the edge,
// puts back on air the spaces a crash left live, and starts serving HTTP.
// It returns once the server is listening. An edge (Config.Role) opens no
// store: it learns the spaces from the bus.
func (m *Main) Run(ctx context.Context) error {
	if m.Logger == nil {
		m.Logger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: m.Config.LogLevel}))
	}
	cfg := &m.Config
	if err := cfg.checkRole(); err != nil {
		return err
	}
	if cfg.RehearsalFaults {
		if cfg.OpsAddr == "" {
			return errors.New("serve: --rehearsal-faults serves /faults on the ops address: it needs --ops-addr")
		}
		m.faults = newFaults(m.Logger)
		m.faults.install(cfg)
	}
	edgeOnly := cfg.Role == RoleEdge
	var err error
	if !edgeOnly {
		if err := secureDataDir(cfg.DataDir, m.Logger); err != nil {
			return err
		}
		if cfg.Standby {
			m.Logger.Warn("standing by: taking over when the server on this data directory stops", "data", cfg.DataDir)
			m.dirLock, err = waitDataDir(ctx, cfg.DataDir)
		} else {
			m.dirLock, err = lockDataDir(cfg.DataDir)
		}
		if err != nil {
			return err
		}
		if m.db, err = store.Open(ctx, filepath.Join(cfg.DataDir, "amphi.db")); err != nil {
			return err
		}
		if cfg.GateKeyFile == "" {
			cfg.GateKeyFile = filepath.Join(cfg.DataDir, "gate.key")
		}
	}
	if cfg.API.Gate.Key, cfg.API.Gate.PreviousKeys, err = loadKeys(cfg.GateKeyFile, !edgeOnly); err != nil {
		return fmt.Errorf("gate %w", err)
	}
	cfg.Bus.Logger = m.Logger
	if cfg.Bus.URL == "" && cfg.Bus.Token == "" {
		if cfg.Bus.Token, err = busToken(cfg.DataDir); err != nil {
			return err
		}
	}
	if m.bus, err = bus.Open(ctx, cfg.Bus); err != nil {
		return err
	}
	m.node = nodeName(cfg.Node)
	cfg.API.Gate.Signer.Issuer = issuer(m.node)
	m.dir = space.NewDirectory(cfg.API.Gate.Room, gate.NewCapacity(cfg.API.Gate.Node))
	cfg.Edge.Logger, cfg.Edge.Fetch, cfg.Edge.Node = m.Logger, m.bus.Fetch, m.node
	cfg.Edge.Lookup = m.spaceProgram
	if edgeOnly {
		cfg.Edge.Lookup = m.announcedProgram
	}
	m.edge = edge.New(cfg.Edge)
	if m.sub, err = m.bus.SubscribePrograms(m.edge.Publish, func(err error) {
		m.badChunks.Add(1)
		m.Logger.Warn("bus: bad chunk", "err", err)
	}); err != nil {
		return err
	}
	if edgeOnly {
		err = m.learnSpaces()
	} else {
		err = m.openOrigin()
	}
	if err != nil {
		return err
	}
	cfg.API.DataDir, cfg.API.Logger, cfg.API.Directory = cfg.DataDir, m.Logger, m.dir
	// The monitor starts below, before anything is served.
	cfg.API.Verdict = func() string { return m.monitor.Report().Verdict }
	m.top = ops.NewTopPrefixes(0)
	cfg.API.History = m.bus.History
	if m.api, err = api.New(cfg.API, m.db, m.live, m.edge, m.top); err != nil {
		return err
	}
	if !edgeOnly {
		if m.history, err = m.bus.ServeHistory(m.api.History); err != nil {
			return err
		}
		if err := m.api.Recover(ctx); err != nil {
			return fmt.Errorf("recover: %w", err)
		}
		// Before anything is served, so no cut is under way.
		if n, err := m.api.SweepClips(ctx); err != nil {
			m.Logger.Warn("clips: remove what a crash left", "err", err)
		} else if n > 0 {
			m.Logger.Info("clips: removed the files of cuts a crash interrupted", "files", n)
		}
	}
	m.startOps(m.top)

	maxConns := cfg.MaxConns
	if maxConns == 0 {
		maxConns = defaultMaxConns()
	}
	perSource := cfg.MaxConnsPerSource
	if perSource == 0 {
		perSource = defaultConnsPerSource
	}
	if m.ln, err = listen(cfg.Addr, cfg.ReusePort, maxConns, perSource, cfg.API.Gate.TrustedProxies, &m.refusedAtAccept); err != nil {
		return err
	}
	m.ln.wrap = m.api.LeanConn
	if !edgeOnly { // an edge has no accounts: they live at the origin
		if err := m.warnFirstAdmin(ctx); err != nil {
			return err
		}
	}
	mux := http.NewServeMux()
	mux.Handle("/", m.statuses.wrap(m.api))
	webCfg := web.DefaultConfig()
	webCfg.Space = m.pageSpace
	pages := m.statuses.wrap(web.New(webCfg))
	for _, p := range web.Patterns() {
		mux.Handle(p, pages)
	}
	m.http = m.newHTTPServer(mux)
	m.serve = make(chan error, 3)
	go func() { m.serve <- m.http.Serve(m.ln) }()
	if cfg.OpsAddr != "" {
		if err := m.serveOps(cfg.OpsAddr); err != nil {
			return err
		}
	}
	if cfg.StageAddr != "" {
		// The stage's door: the API and WHIP, with a cap of its own, within
		// the files the main address leaves.
		if m.stageLn, err = listen(cfg.StageAddr, false, reservedFiles, perSource, cfg.API.Gate.TrustedProxies, &m.refusedAtAccept); err != nil {
			return err
		}
		m.stageHTTP = m.newHTTPServer(m.statuses.wrap(m.api))
		go func() { m.serve <- m.stageHTTP.Serve(m.stageLn) }()
	}
	m.startFleet(edgeOnly)
	if !edgeOnly {
		m.startHousekeeping()
	}
	return nil
}

// pageSpace is what a space's page says of the space to link previews:
// from the store, or on an edge from the origin's announcements.
func (m *Main) pageSpace(ctx context.Context, id string) (web.SpaceMeta, bool) {
	known := m.dir.Known
	if m.db != nil {
		known = m.db.Space
	}
	sp, err := known(ctx, id)
	if err != nil {
		return web.SpaceMeta{}, false
	}
	meta := web.SpaceMeta{Title: sp.Title, Description: sp.Description}
	if u := m.Config.API.PublicURL; u != "" {
		meta.URL = strings.TrimSuffix(u, "/") + "/s/" + sp.ID
	}
	return meta, true
}

// warnFirstAdmin logs the one-time link that creates the first admin, while
// there is no account.
func (m *Main) warnFirstAdmin(ctx context.Context) error {
	link, err := m.api.FirstAdminLink(ctx)
	if err != nil || link == "" {
		return err
	}
	m.Logger.Warn("no accounts yet: open this one-time link within an hour to create the first admin (or run: amphi admin create)", "url", m.publicURL()+link)
	return nil
}

// newHTTPServer sets the timeouts that keep slow and idle clients from
// holding the server: a slowloris is cut after ReadHeaderTimeout. Without
// TLS the server speaks HTTP/1.1 only, so HTTP/2's rapid-reset and
// CONTINUATION floods do not apply; a TLS front end must bound them.
func (m *Main) newHTTPServer(h http.Handler) *http.Server {
	return &http.Server{
		Handler:           markComplete(h),
		ConnContext:       connContext,
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       30 * time.Second,
		IdleTimeout:       30 * time.Second,
		MaxHeaderBytes:    16 << 10,
		ErrorLog:          slog.NewLogLogger(m.Logger.Handler(), slog.LevelDebug),
		ConnState:         m.countIncomplete,
	}
}

// serveOps serves /ops and /metrics on their own address, kept off the
// public one: they show the refused sources.
func (m *Main) serveOps(addr string) error {
	var err error
	if m.opsLn, err = listen(addr, false, opsConns, 0, nil, &m.refusedAtAccept); err != nil {
		return fmt.Errorf("--ops-addr: %w (a second amphi on this machine needs an --ops-addr of its own)", err)
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(ops.NewCollector(m.snapshot))
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	mux.Handle("/ops", m.monitor.Handler())
	if m.faults != nil {
		mux.Handle("POST /faults", m.faults)
	}
	m.opsHTTP = m.newHTTPServer(mux)
	go func() { m.serve <- m.opsHTTP.Serve(m.opsLn) }()
	return nil
}

// opsConns caps the ops address's connections: a few operators and a
// Prometheus.
const opsConns = 64

// startOps runs the ops monitor and feeds its evidence of abuse to the
// proof-of-work policy.
func (m *Main) startOps(top *ops.TopPrefixes) {
	ocfg := ops.DefaultConfig()
	ocfg.Logger = m.Logger
	ocfg.InvalidReasons = gate.RefusalNames(gate.Refusal.Invalid)
	ocfg.CapacityReasons = gate.RefusalNames(gate.Refusal.Capacity)
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
				m.api.UpdatePoW(r.Rates.InvalidShare, r.Rates.Invalid)
			}
		}
	})
}

// recentChunks returns the chunks of a space mixed here numbered from up to
// to that its session still has, none for a space not on air here.
func (m *Main) recentChunks(spaceID string, from, to uint64) []*program.Chunk {
	if sess := m.live.Session(spaceID); sess != nil {
		return sess.Chunks(from, to)
	}
	return nil
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

// OpsURL returns the base URL of /ops and /metrics, "" if none.
func (m *Main) OpsURL() string {
	if m.opsLn == nil {
		return ""
	}
	return "http://" + m.opsLn.Addr().String()
}

// BusURL returns the address of the bus other processes can join, with its
// credentials.
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
// It is safe to call more than once: later calls return the first's error.
func (m *Main) Close() error {
	m.closeOnce.Do(func() { m.closeErr = m.close() })
	return m.closeErr
}

func (m *Main) close() error {
	timeout := m.Config.ShutdownTimeout
	if timeout == 0 {
		timeout = 10 * time.Second
	}
	// With a standby waiting, the spaces on air go on there: hand over
	// quickly rather than end them.
	handover := m.db != nil && standbyWaits(m.Config.DataDir)
	if handover {
		m.Logger.Warn("handing the spaces on air over to the standby")
		timeout = min(timeout, handoverTimeout)
	}
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	if m.faults != nil {
		m.faults.clear()
	}
	var errs []error
	for _, srv := range []*http.Server{m.http, m.stageHTTP, m.opsHTTP} {
		if srv == nil {
			continue
		}
		stop := srv.Shutdown
		if handover {
			// The standby starts once this process lets go: cut the
			// listeners' streams rather than wait for them (they resume
			// there), and the speakers' sessions, which dial it.
			stop = func(context.Context) error { return srv.Close() }
		}
		if err := stop(ctx); err != nil {
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
	if m.api != nil && m.db != nil && !handover {
		if err := m.api.EndAll(ctx); err != nil {
			errs = append(errs, fmt.Errorf("end spaces: %w", err))
		}
	}
	if m.live != nil {
		stop := m.live.Close
		if handover {
			stop = m.live.HandOver
		}
		if _, err := stop(); err != nil {
			errs = append(errs, err)
		}
	}
	if m.api != nil && m.db != nil {
		m.api.Wait() // idle ends under way, before the store closes
	}
	if m.edge != nil {
		if m.bus != nil {
			m.bus.Flush(ctx)
		}
		if !handover { // no end is coming: the listeners resume at the standby
			drainCtx, cancel := context.WithTimeout(ctx, drainTimeout)
			m.edge.Drain(drainCtx)
			cancel()
		}
		m.edge.Close()
	}
	for _, sub := range []*bus.Subscription{m.sub, m.fetches, m.history, m.announcements, m.loads, m.lookups} {
		if sub != nil {
			sub.Close()
		}
	}
	if m.bus != nil {
		m.bus.Close()
	}
	if m.db != nil {
		if err := m.db.Close(); err != nil {
			errs = append(errs, err)
		}
	}
	if m.dirLock != nil {
		m.dirLock.Close() // the lock goes with the file
	}
	return errors.Join(errs...)
}
