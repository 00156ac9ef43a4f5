// Package ops tells the operator, with evidence, whether amphi is healthy,
// overloaded, under attack or failing internally (DESIGN.md, principle 5).
//
// The server's wiring hands ops a func() Snapshot: cumulative counters and
// gauges read from the gate, the edge, the mixer, the recorder, the bus and
// the stage at one instant. From it ops serves two views:
//
//   - NewCollector exposes each Snapshot as Prometheus metrics (amphi_*) for
//     dashboards and alerts, registered on a registry the caller owns.
//   - Monitor samples a Snapshot every Interval (2 s), keeps the last
//     History (5 min) of them, and at each sample judges the last Window
//     (10 s) from the difference between the newest snapshot and the one a
//     Window older. Its Handler serves the judgement at GET /ops as a page
//     that refreshes itself, or as JSON with a top-level "verdict".
//
// # The rules
//
// Each rule below is a condition; every condition that holds is listed in
// Report.Conditions with the evidence that made it hold, and the verdict is
// the most severe of them: failing_internally, then under_attack, then
// overloaded, then healthy. A flood and an internal fault at the same time
// therefore show as the verdict failing_internally with both conditions
// named: the fault is ours to fix even while we are attacked.
//
// failing_internally: something that is our own fault happened in the
// window. Any increase of Errors or Stalls of an internal component
// (Config.InternalComponents: the mixer fell behind and had to catch up
// frames, the recorder dropped a chunk, fell behind or failed a write, the
// bus failed to publish or lost chunks on the way), or HTTP 5xx responses
// other than 503 above Config.ServerErrorRate per second. 503 is how amphi
// sheds load on purpose, so it counts as overload, not as a fault.
// Components outside the list (the stage losing a speaker's network, the
// edge cutting slow listeners) are shown but judged elsewhere: they happen
// to healthy servers.
//
// under_attack: the traffic is mostly garbage, or one source is hammering.
// Either the invalid share — refusals for an invalid reason
// (Config.InvalidReasons, which the server takes from gate.Refusal: forged,
// expired, malformed or misdirected tickets, wrong, stale or replayed proof
// of work, rate limits, bad requests, probing for spaces that do not
// exist) over all join and listen requests —
// is at least Config.AttackShare (50 %) while requests arrive at
// Config.AttackMinRate (20/s) or more; or a single source prefix holds at
// least Config.PrefixShare (50 %) of the recent invalid refusals while
// those arrive at AttackMinRate or more. The evidence gives the share, the
// rate and the top prefixes. Legitimate clients do not forge signatures or
// fail proof of work at scale, which is what makes this line defensible.
//
// overloaded: real people want in faster than we admit them. The waiting
// room is not empty, or requests were refused for capacity
// (Config.CapacityReasons, e.g. room_full) in the window, while the invalid
// share stays below AttackShare. When most traffic is invalid, a full room
// is the attack's effect and the verdict says under_attack. The evidence
// gives the waiting room's size and admissions per second against requests
// per second.
//
// healthy: none of the above.
//
// A window is the span between two snapshots; until History holds a
// snapshot a Window old, the judgement uses the oldest one it has and
// Report.Window says how long that really was.
package ops

import (
	"log/slog"
	"runtime"
	"runtime/metrics"
	"syscall"
	"time"
)

// Verdicts and conditions, from the most severe to the least.
const (
	FailingInternally = "failing_internally"
	UnderAttack       = "under_attack"
	Overloaded        = "overloaded"
	Healthy           = "healthy"
)

// severity orders the conditions; Report.Conditions follows it.
var severity = []string{FailingInternally, UnderAttack, Overloaded, Healthy}

// Component names the Monitor knows how to explain. Others may appear in
// Snapshot.Components and are shown as they are.
const (
	ComponentMixer    = "mixer"
	ComponentRecorder = "recorder"
	ComponentBus      = "bus"
	ComponentStage    = "stage"
	ComponentEdge     = "edge"
)

// Config holds the Monitor's thresholds: the product's judgement, each one
// explained in the package comment.
type Config struct {
	// Interval is how often Run samples a snapshot. Zero means 2 s.
	Interval time.Duration
	// Window is the span rates and increases are computed over. Zero
	// means 10 s: long enough to smooth a burst, short enough that a
	// flood or a stall shows within one refresh of the page.
	Window time.Duration
	// History is how long samples are kept. Zero means 5 min.
	History time.Duration
	// Calm is how long a condition must stay away before the verdict
	// lets it go, so that a flood in waves or a crowd arriving in bursts
	// does not make the verdict flap. Zero means 60 s.
	Calm time.Duration
	// AttackShare is the invalid share of requests at or above which the
	// traffic counts as an attack. Zero means 0.5.
	AttackShare float64
	// AttackMinRate is the request rate (per second) below which no share
	// counts as an attack: a handful of bad tickets is noise, not a flood.
	// It also applies to invalid refusals for the single-prefix rule.
	// Zero means 20.
	AttackMinRate float64
	// PrefixShare is the share of recent invalid refusals one source
	// prefix must hold to be named an attacker by itself. Zero means 0.5.
	PrefixShare float64
	// ServerErrorRate is the rate of 5xx responses other than 503 (per
	// second) above which the server counts as failing. Zero means 0.2,
	// i.e. more than 2 in a 10 s window.
	ServerErrorRate float64
	// InvalidReasons are the refusal reasons (Snapshot.Refusals' keys)
	// that count as invalid traffic. Nil means none; the server passes
	// those gate.Refusal.Invalid reports, so the names have one home.
	InvalidReasons []string
	// CapacityReasons are the refusal reasons that mean legitimate demand
	// beyond capacity. Nil means none; the server passes those
	// gate.Refusal.Capacity reports.
	CapacityReasons []string
	// InternalComponents are the components any of whose errors or stalls
	// means failing internally. Nil means mixer, recorder and bus.
	InternalComponents []string
	// Logger receives a line each time the verdict changes. Nil means
	// slog.Default().
	Logger *slog.Logger
	// Now stamps snapshots that come without At. Nil means time.Now.
	Now func() time.Time
}

// DefaultConfig returns the defaults described on Config's fields.
func DefaultConfig() Config {
	return Config{
		Interval:           2 * time.Second,
		Window:             10 * time.Second,
		History:            5 * time.Minute,
		Calm:               time.Minute,
		AttackShare:        0.5,
		AttackMinRate:      20,
		PrefixShare:        0.5,
		ServerErrorRate:    0.2,
		InternalComponents: []string{ComponentMixer, ComponentRecorder, ComponentBus},
	}
}

func (c *Config) setDefaults() {
	d := DefaultConfig()
	if c.Interval <= 0 {
		c.Interval = d.Interval
	}
	if c.Window <= 0 {
		c.Window = d.Window
	}
	if c.History <= 0 {
		c.History = d.History
	}
	if c.History < c.Window {
		c.History = c.Window
	}
	if c.Calm <= 0 {
		c.Calm = d.Calm
	}
	if c.AttackShare == 0 {
		c.AttackShare = d.AttackShare
	}
	if c.AttackMinRate == 0 {
		c.AttackMinRate = d.AttackMinRate
	}
	if c.PrefixShare == 0 {
		c.PrefixShare = d.PrefixShare
	}
	if c.ServerErrorRate == 0 {
		c.ServerErrorRate = d.ServerErrorRate
	}
	if c.InternalComponents == nil {
		c.InternalComponents = d.InternalComponents
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	if c.Now == nil {
		c.Now = time.Now
	}
}

// Snapshot is amphi's counters and gauges at one instant, filled by the
// server's wiring. Counters are cumulative since the process started (the
// Monitor takes differences; a counter that goes down is taken as reset).
// Gauges are values now. A field the wiring cannot fill stays zero; maps may
// be nil. The Monitor copies the maps, so the wiring may build them fresh
// each call or hand over ones it no longer changes.
type Snapshot struct {
	// At is when the snapshot was taken. Zero means the Monitor's clock.
	At time.Time

	// Listeners is the number of listener streams open now (gauge).
	Listeners int64
	// ListenersServed counts listener streams started.
	ListenersServed uint64
	// EgressBytes counts bytes written to listeners.
	EgressBytes uint64
	// ChunksMissed counts program chunks lost on the bus on the way here
	// (gaps in a space's sequence); ChunksFilled those of them fetched
	// again in time, so that no listener heard a hole.
	ChunksMissed, ChunksFilled uint64
	// HLSSkipped counts program pages the LL-HLS segmenter refused (they
	// went back, or broke Opus framing).
	HLSSkipped uint64

	// JoinRequests counts join attempts that reached the gate, whatever
	// became of them: admitted, queued or refused.
	JoinRequests uint64
	// ListenRequests counts listen requests that reached the gate,
	// refused ones included. Leave it zero if JoinRequests counts them.
	ListenRequests uint64
	// Joins counts admissions: joins that got a ticket.
	Joins uint64
	// Refusals counts refused requests by reason (the Refusal* names).
	Refusals map[string]uint64
	// TicketsVerified counts tickets whose signature checked out.
	TicketsVerified uint64
	// Waiting is the number of people in the waiting room now (gauge), in
	// line for spaces that are open.
	Waiting int64
	// WaitingForStart is the people in line for scheduled spaces that
	// have not started (gauge): a herd that is expected, not overload.
	WaitingForStart int64
	// Polls counts the polls of people in line: not demand for new
	// places, so not in JoinRequests.
	Polls uint64
	// PoWDifficulty is the proof-of-work difficulty asked now, in bits
	// (gauge).
	PoWDifficulty float64
	// HTTPResponses counts responses by status code. A wiring that counts
	// by class uses the class's x00 code (500 for all 5xx), so 503 is
	// then indistinguishable from other 5xx.
	HTTPResponses map[int]uint64

	// Components holds each component's fault counters by name
	// (Component* names).
	Components map[string]ComponentHealth

	// Spaces lists the spaces on air now.
	Spaces []SpaceSnapshot
	// Edges lists the edge processes that reported their load recently,
	// on an origin; none elsewhere.
	Edges []EdgeSnapshot
	// RecordingBytes and ClipBytes are what recordings and clips take on
	// disk, on a node with a store.
	RecordingBytes, ClipBytes uint64

	// Goroutines, HeapBytes and CPUSeconds describe the process; ReadProcess
	// fills them.
	Goroutines int
	HeapBytes  uint64
	CPUSeconds float64
}

// ComponentHealth is one component's fault counters (cumulative).
//
// What counts as an error or a stall, by component:
//
//	mixer     Stalls: times the mixing clock fell 100 ms or more behind;
//	          Errors: encode/decode failures. MaxFrame: longest frame.
//	recorder  Errors: write or fsync failures; Stalls: chunks dropped
//	          because the recorder's queue was full, and times the disk
//	          fell 2 s behind the program.
//	bus       Errors: publish failures; Stalls: chunks lost on the way
//	          (gaps) and bad chunks received.
//	stage     Errors: RTP packets dropped; Stalls: speakers lost.
//	edge      Errors: listeners cut (slow, behind, write errors).
type ComponentHealth struct {
	Errors uint64
	Stalls uint64
	// MaxFrame is the longest one unit of work took recently (the mixer:
	// one 20 ms frame). It is a gauge; zero means not measured.
	MaxFrame time.Duration
	// Detail is a short line for people, e.g. errors by kind.
	Detail string
}

// EdgeSnapshot is one edge process as its last load report on the bus
// showed it: what the origin's /ops shows of the fleet.
type EdgeSnapshot struct {
	Node      string `json:"node"`
	URL       string `json:"url"`
	Listeners int    `json:"listeners"`
	Capacity  int    `json:"capacity"`
	Waiting   int    `json:"waiting"`
	// Verdict is the edge's own.
	Verdict string `json:"verdict"`
	// AgeSeconds is how old the report is: past a few seconds the edge is
	// gone or cut off.
	AgeSeconds float64 `json:"age_seconds"`
}

// SpaceSnapshot is one space on air.
type SpaceSnapshot struct {
	ID        string `json:"id"`
	Speakers  int    `json:"speakers"`
	Listeners int64  `json:"listeners"`
}

// ReadProcess fills s's Goroutines, HeapBytes and CPUSeconds from the
// running process.
func (s *Snapshot) ReadProcess() {
	s.Goroutines = runtime.NumGoroutine()
	sample := []metrics.Sample{{Name: "/memory/classes/heap/objects:bytes"}}
	metrics.Read(sample)
	if sample[0].Value.Kind() == metrics.KindUint64 {
		s.HeapBytes = sample[0].Value.Uint64()
	}
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err == nil {
		s.CPUSeconds = tvSeconds(ru.Utime) + tvSeconds(ru.Stime)
	}
}

func tvSeconds(tv syscall.Timeval) float64 {
	return float64(tv.Sec) + float64(tv.Usec)/1e6
}
