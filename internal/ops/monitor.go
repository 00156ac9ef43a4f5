package ops

import (
	"cmp"
	"context"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Report is the Monitor's judgement of the last window, with the evidence
// and the numbers it was made from. Its JSON form is what GET /ops serves
// to clients that accept application/json.
type Report struct {
	// Verdict is the most severe condition that holds: failing_internally,
	// under_attack, overloaded or healthy.
	Verdict string `json:"verdict"`
	// Conditions lists every condition that holds, most severe first;
	// Conditions[0] == Verdict. "healthy" holds only alone. A condition
	// holds from the first window that shows it until Config.Calm after
	// the last one did: its evidence then says it is clearing.
	Conditions []string `json:"conditions"`
	// Since is when the verdict last changed (or the first sample).
	Since time.Time `json:"since"`
	// Evidence says why each condition holds, and for a healthy server
	// what was checked.
	Evidence []Evidence `json:"evidence"`

	// At is the newest snapshot's time; Window the span the rates cover.
	At     time.Time     `json:"at"`
	Window time.Duration `json:"-"`
	// WindowSeconds is Window in seconds, for JSON.
	WindowSeconds float64 `json:"window_seconds"`
	// Samples is how many snapshots the history holds.
	Samples int `json:"samples"`

	Rates       Rates             `json:"rates"`
	TopPrefixes []PrefixCount     `json:"top_prefixes"`
	Components  []ComponentReport `json:"components"`

	Listeners       int64           `json:"listeners"`
	Waiting         int64           `json:"waiting"`
	WaitingForStart int64           `json:"waiting_for_start"`
	PoWDifficulty   float64         `json:"pow_difficulty"`
	Spaces          []SpaceSnapshot `json:"spaces"`
	Edges           []EdgeSnapshot  `json:"edges,omitempty"`
	// FleetListeners is the listeners of this process and of every edge
	// in Edges.
	FleetListeners int64 `json:"fleet_listeners"`
	// RecordingBytes and ClipBytes are the storage recordings and clips
	// take.
	RecordingBytes uint64 `json:"recording_bytes"`
	ClipBytes      uint64 `json:"clip_bytes"`
	Goroutines     int    `json:"goroutines"`
	HeapBytes      uint64 `json:"heap_bytes"`
}

// Evidence is one signal behind a condition: what was measured, its value,
// the threshold it was held against, and a sentence for the operator.
type Evidence struct {
	Condition string  `json:"condition"`
	Signal    string  `json:"signal"`
	Value     float64 `json:"value"`
	Threshold float64 `json:"threshold"`
	Text      string  `json:"text"`
}

// Rates are per-second rates over the report's window.
type Rates struct {
	JoinRequests float64 `json:"join_requests_per_second"`
	// Polls is the polls of people in line, not counted in Requests.
	Polls          float64 `json:"polls_per_second"`
	ListenRequests float64 `json:"listen_requests_per_second"`
	// Requests is join plus listen requests, or all refusals if more
	// were counted than requests (a wiring that counts them apart).
	Requests float64 `json:"requests_per_second"`
	Joins    float64 `json:"joins_per_second"`
	// Refusals is refusals per second by reason, for reasons that grew.
	Refusals map[string]float64 `json:"refusals_per_second"`
	// Invalid is refusals per second for invalid reasons; InvalidShare is
	// their share of Requests (0 to 1).
	Invalid      float64 `json:"invalid_per_second"`
	InvalidShare float64 `json:"invalid_share"`
	// Capacity is refusals per second for capacity reasons.
	Capacity        float64 `json:"capacity_refusals_per_second"`
	TicketsVerified float64 `json:"tickets_verified_per_second"`
	ListenersServed float64 `json:"listeners_served_per_second"`
	EgressBytes     float64 `json:"egress_bytes_per_second"`
	// ServerErrors is 5xx responses per second other than 503; Shed is
	// 503 responses per second.
	ServerErrors float64 `json:"server_errors_per_second"`
	Shed         float64 `json:"shed_per_second"`
	// CPU is CPU seconds used per second: busy cores.
	CPU float64 `json:"cpu_cores"`
}

// ComponentReport is one component's counters and what changed in the
// window.
type ComponentReport struct {
	Name           string  `json:"name"`
	Errors         uint64  `json:"errors"`
	Stalls         uint64  `json:"stalls"`
	ErrorsInWindow uint64  `json:"errors_in_window"`
	StallsInWindow uint64  `json:"stalls_in_window"`
	MaxFrameSecs   float64 `json:"max_frame_seconds,omitempty"`
	Detail         string  `json:"detail,omitempty"`
	// Internal says whether this component's faults count as failing
	// internally (Config.InternalComponents).
	Internal bool `json:"internal"`
	// Failing says whether it had errors or stalls in the window.
	Failing bool `json:"failing"`
}

// Point is one sample of the history, for a timeline.
type Point struct {
	At           time.Time `json:"at"`
	Verdict      string    `json:"verdict"`
	Requests     float64   `json:"requests_per_second"`
	Joins        float64   `json:"joins_per_second"`
	InvalidShare float64   `json:"invalid_share"`
	Listeners    int64     `json:"listeners"`
	Waiting      int64     `json:"waiting"`
}

// Monitor samples snapshots, keeps a bounded history and judges each window.
// Run drives it in production; Observe lets tests feed snapshots with
// explicit times.
type Monitor struct {
	cfg  Config
	snap func() Snapshot
	top  *TopPrefixes

	invalid, capacity, internal map[string]bool

	mu         sync.Mutex // serializes Observe; guards the fields below
	hist       []Snapshot // oldest first, within cfg.History of the newest
	points     []Point
	lastRotate time.Time
	since      time.Time
	lastSeen   map[string]time.Time // when each condition last held in a window

	report atomic.Pointer[Report]
}

// NewMonitor returns a Monitor that reads snapshots from snap and source
// prefixes from top (nil: no prefix evidence). snap must return quickly: it
// is called on the Monitor's goroutine every Interval and by the first
// request if none ran yet.
func NewMonitor(cfg Config, snap func() Snapshot, top *TopPrefixes) *Monitor {
	cfg.setDefaults()
	set := func(names []string) map[string]bool {
		m := make(map[string]bool, len(names))
		for _, n := range names {
			m[n] = true
		}
		return m
	}
	return &Monitor{
		cfg: cfg, snap: snap, top: top,
		invalid:  set(cfg.InvalidReasons),
		capacity: set(cfg.CapacityReasons),
		internal: set(cfg.InternalComponents),
	}
}

// Run samples a snapshot every Interval until ctx is done, then returns nil.
func (m *Monitor) Run(ctx context.Context) error {
	t := time.NewTicker(m.cfg.Interval)
	defer t.Stop()
	m.Sample()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
			m.Sample()
		}
	}
}

// Sample takes a snapshot now, judges it and returns the new report.
func (m *Monitor) Sample() Report {
	return m.Observe(m.snap())
}

// Report returns the latest report. Before the first sample it samples
// once, so a page asked for early is never empty.
func (m *Monitor) Report() Report {
	if r := m.report.Load(); r != nil {
		return *r
	}
	return m.Sample()
}

// History returns the verdict and key rates of each sample kept, oldest
// first.
func (m *Monitor) History() []Point {
	m.mu.Lock()
	defer m.mu.Unlock()
	return slices.Clone(m.points)
}

// Observe adds s to the history, judges the window ending at s and returns
// the report, which Report returns until the next one.
func (m *Monitor) Observe(s Snapshot) Report {
	if s.At.IsZero() {
		s.At = m.cfg.Now()
	}
	s.Refusals = maps.Clone(s.Refusals)
	s.HTTPResponses = maps.Clone(s.HTTPResponses)
	s.Components = maps.Clone(s.Components)
	s.Spaces = slices.Clone(s.Spaces)
	s.Edges = slices.Clone(s.Edges)

	m.mu.Lock()
	defer m.mu.Unlock()

	m.hist = append(m.hist, s)
	// Keep History of samples, and never more than twice the samples Run
	// would take in it, however fast Observe is called.
	maxSamples := 2*int(m.cfg.History/m.cfg.Interval) + 2
	cut := 0
	for cut < len(m.hist)-1 && (s.At.Sub(m.hist[cut].At) > m.cfg.History || len(m.hist)-cut > maxSamples) {
		cut++
	}
	m.hist = m.hist[cut:]

	if m.top != nil {
		if m.lastRotate.IsZero() {
			m.lastRotate = s.At
		} else if s.At.Sub(m.lastRotate) >= m.cfg.Window {
			m.top.Rotate()
			m.lastRotate = s.At
		}
	}

	// The baseline is the newest sample at least a Window old, or the
	// oldest there is.
	base := m.hist[0]
	for _, h := range m.hist {
		if s.At.Sub(h.At) < m.cfg.Window {
			break
		}
		base = h
	}
	r := m.judge(base, s)
	m.holdForCalm(&r)

	prev := m.report.Load()
	switch {
	case prev == nil:
		m.since = s.At
	case prev.Verdict != r.Verdict:
		m.since = s.At
		m.cfg.Logger.Warn("ops: verdict changed", "from", prev.Verdict, "to", r.Verdict,
			"conditions", strings.Join(r.Conditions, ","), "evidence", evidenceLine(r.Evidence))
	}
	r.Since = m.since
	r.Samples = len(m.hist)

	m.points = append(m.points, Point{
		At: s.At, Verdict: r.Verdict, Requests: r.Rates.Requests, Joins: r.Rates.Joins,
		InvalidShare: r.Rates.InvalidShare, Listeners: r.Listeners, Waiting: r.Waiting,
	})
	if len(m.points) > len(m.hist) {
		m.points = m.points[len(m.points)-len(m.hist):]
	}
	m.report.Store(&r)
	return r
}

// holdForCalm keeps each condition that held within Config.Calm in r,
// with evidence that it is clearing, so the verdict clears only after a
// full minute of calm.
func (m *Monitor) holdForCalm(r *Report) {
	if m.lastSeen == nil {
		m.lastSeen = map[string]time.Time{}
	}
	held := map[string]bool{}
	for _, c := range r.Conditions {
		held[c] = true
		m.lastSeen[c] = r.At
	}
	changed := false
	for _, c := range severity {
		seen, ok := m.lastSeen[c]
		if c == Healthy || held[c] || !ok {
			continue
		}
		calm := r.At.Sub(seen)
		if calm >= m.cfg.Calm {
			delete(m.lastSeen, c)
			continue
		}
		held[c], changed = true, true
		r.Evidence = append(r.Evidence, Evidence{c, "calm_seconds", calm.Seconds(), m.cfg.Calm.Seconds(),
			fmt.Sprintf("clearing: no sign of %s for %s; the verdict clears after %s of calm", c, fmtDuration(calm), fmtDuration(m.cfg.Calm))})
	}
	if !changed {
		return
	}
	r.Conditions = r.Conditions[:0]
	for _, c := range severity {
		if held[c] && c != Healthy {
			r.Conditions = append(r.Conditions, c)
		}
	}
	// Healthy's own evidence goes: it no longer holds.
	r.Evidence = slices.DeleteFunc(r.Evidence, func(e Evidence) bool { return e.Condition == Healthy })
	r.Verdict = r.Conditions[0]
}

func evidenceLine(ev []Evidence) string {
	var b strings.Builder
	for i, e := range ev {
		if i > 0 {
			b.WriteString("; ")
		}
		b.WriteString(e.Text)
	}
	return b.String()
}

// delta is a counter's increase; a counter that went down was reset, so
// all of its value is new.
func delta(cur, prev uint64) uint64 {
	if cur < prev {
		return cur
	}
	return cur - prev
}

// judge applies the rules of the package comment to the window from base
// to s.
func (m *Monitor) judge(base, s Snapshot) Report {
	cfg := &m.cfg
	window := s.At.Sub(base.At)
	secs := window.Seconds()
	rate := func(d uint64) float64 {
		if secs <= 0 {
			return 0
		}
		return float64(d) / secs
	}

	r := Report{
		At: s.At, Window: window, WindowSeconds: secs,
		Listeners: s.Listeners, Waiting: s.Waiting, WaitingForStart: s.WaitingForStart, PoWDifficulty: s.PoWDifficulty,
		Spaces: s.Spaces, Edges: s.Edges, FleetListeners: s.Listeners + fleetListeners(s.Edges),
		RecordingBytes: s.RecordingBytes, ClipBytes: s.ClipBytes,
		Goroutines: s.Goroutines, HeapBytes: s.HeapBytes,
	}
	if r.Spaces == nil {
		r.Spaces = []SpaceSnapshot{}
	}

	// Rates.
	rt := &r.Rates
	rt.JoinRequests = rate(delta(s.JoinRequests, base.JoinRequests))
	rt.Polls = rate(delta(s.Polls, base.Polls))
	rt.ListenRequests = rate(delta(s.ListenRequests, base.ListenRequests))
	rt.Joins = rate(delta(s.Joins, base.Joins))
	rt.TicketsVerified = rate(delta(s.TicketsVerified, base.TicketsVerified))
	rt.ListenersServed = rate(delta(s.ListenersServed, base.ListenersServed))
	rt.EgressBytes = rate(delta(s.EgressBytes, base.EgressBytes))
	if secs > 0 && s.CPUSeconds >= base.CPUSeconds {
		rt.CPU = (s.CPUSeconds - base.CPUSeconds) / secs
	}
	requests := delta(s.JoinRequests, base.JoinRequests) + delta(s.ListenRequests, base.ListenRequests)
	var refused, invalid, capacity uint64
	rt.Refusals = map[string]float64{}
	for reason, n := range s.Refusals {
		d := delta(n, base.Refusals[reason])
		if d == 0 {
			continue
		}
		rt.Refusals[reason] = rate(d)
		refused += d
		if m.invalid[reason] {
			invalid += d
		}
		if m.capacity[reason] {
			capacity += d
		}
	}
	requests = max(requests, refused)
	rt.Requests = rate(requests)
	rt.Invalid = rate(invalid)
	rt.Capacity = rate(capacity)
	if requests > 0 {
		rt.InvalidShare = float64(invalid) / float64(requests)
	}
	var serverErrors uint64
	codes := map[int]uint64{}
	for code, n := range s.HTTPResponses {
		d := delta(n, base.HTTPResponses[code])
		switch {
		case d == 0:
		case code == 503:
			rt.Shed += rate(d)
		case code >= 500 && code <= 599:
			serverErrors += d
			codes[code] = d
		}
	}
	rt.ServerErrors = rate(serverErrors)

	if m.top != nil {
		r.TopPrefixes = m.top.Top(10)
	}
	if r.TopPrefixes == nil {
		r.TopPrefixes = []PrefixCount{}
	}

	// Components, by name.
	names := slices.Sorted(maps.Keys(s.Components))
	r.Components = make([]ComponentReport, 0, len(names))
	for _, name := range names {
		c := s.Components[name]
		b := base.Components[name]
		cr := ComponentReport{
			Name: name, Errors: c.Errors, Stalls: c.Stalls,
			ErrorsInWindow: delta(c.Errors, b.Errors), StallsInWindow: delta(c.Stalls, b.Stalls),
			MaxFrameSecs: c.MaxFrame.Seconds(), Detail: c.Detail, Internal: m.internal[name],
		}
		cr.Failing = cr.ErrorsInWindow > 0 || cr.StallsInWindow > 0
		r.Components = append(r.Components, cr)
	}

	held := map[string]bool{}
	add := func(e Evidence) {
		held[e.Condition] = true
		r.Evidence = append(r.Evidence, e)
	}
	win := fmtDuration(window)

	// failing_internally.
	for _, c := range r.Components {
		if !c.Internal || !c.Failing {
			continue
		}
		if c.StallsInWindow > 0 {
			text := fmt.Sprintf("%s: %d %s in the last %s", c.Name, c.StallsInWindow, faultKind(c.Name, true), win)
			if c.MaxFrameSecs > 0 {
				text += fmt.Sprintf(" (longest frame %s)", fmtDuration(time.Duration(c.MaxFrameSecs*float64(time.Second))))
			}
			add(Evidence{FailingInternally, "component." + c.Name + ".stalls", float64(c.StallsInWindow), 0, text})
		}
		if c.ErrorsInWindow > 0 {
			add(Evidence{FailingInternally, "component." + c.Name + ".errors", float64(c.ErrorsInWindow), 0,
				fmt.Sprintf("%s: %d %s in the last %s", c.Name, c.ErrorsInWindow, faultKind(c.Name, false), win)})
		}
	}
	if rt.ServerErrors > cfg.ServerErrorRate {
		add(Evidence{FailingInternally, "server_errors_per_second", rt.ServerErrors, cfg.ServerErrorRate,
			fmt.Sprintf("%s 5xx responses/s besides 503 shedding (%s), above %s/s", fmtRate(rt.ServerErrors), fmtCodes(codes), fmtRate(cfg.ServerErrorRate))})
	}

	// under_attack.
	attacked := false
	if rt.InvalidShare >= cfg.AttackShare && rt.Requests >= cfg.AttackMinRate {
		attacked = true
		add(Evidence{UnderAttack, "invalid_share", rt.InvalidShare, cfg.AttackShare,
			fmt.Sprintf("%s of requests were invalid (%s), at or above %s", fmtPercent(rt.InvalidShare), m.fmtReasons(rt.Refusals, m.invalid), fmtPercent(cfg.AttackShare))})
		add(Evidence{UnderAttack, "requests_per_second", rt.Requests, cfg.AttackMinRate,
			fmt.Sprintf("%s requests/s (join %s/s, listen %s/s), at or above %s/s", fmtRate(rt.Requests), fmtRate(rt.JoinRequests), fmtRate(rt.ListenRequests), fmtRate(cfg.AttackMinRate))})
	}
	if len(r.TopPrefixes) > 0 && rt.Invalid >= cfg.AttackMinRate {
		top := r.TopPrefixes[0]
		if top.Share >= cfg.PrefixShare || attacked {
			attacked = true
			add(Evidence{UnderAttack, "top_prefix_share", top.Share, cfg.PrefixShare,
				fmt.Sprintf("%s drew %s of recent invalid refusals (threshold %s); top sources: %s", top.Prefix, fmtPercent(top.Share), fmtPercent(cfg.PrefixShare), fmtPrefixes(r.TopPrefixes, 5))})
		}
	}
	if attacked && (s.Waiting > 0 || capacity > 0) {
		add(Evidence{UnderAttack, "waiting", float64(s.Waiting), 0,
			fmt.Sprintf("%d waiting and %s/s refused for capacity: counted as the attack's effect while most traffic is invalid", s.Waiting, fmtRate(rt.Capacity))})
	}

	// overloaded.
	if !attacked && rt.InvalidShare < cfg.AttackShare && (s.Waiting > 0 || capacity > 0) {
		if s.Waiting > 0 {
			add(Evidence{Overloaded, "waiting", float64(s.Waiting), 0,
				fmt.Sprintf("%d people in the waiting room", s.Waiting)})
		}
		if capacity > 0 {
			add(Evidence{Overloaded, "capacity_refusals_per_second", rt.Capacity, 0,
				fmt.Sprintf("%s/s refused for capacity (%s)", fmtRate(rt.Capacity), m.fmtReasons(rt.Refusals, m.capacity))})
		}
		add(Evidence{Overloaded, "joins_per_second", rt.Joins, rt.JoinRequests,
			fmt.Sprintf("admitted %s/s of %s join requests/s; invalid share %s, below %s: this is demand, not an attack",
				fmtRate(rt.Joins), fmtRate(rt.JoinRequests), fmtPercent(rt.InvalidShare), fmtPercent(cfg.AttackShare))})
	}

	for _, c := range severity {
		if held[c] {
			r.Conditions = append(r.Conditions, c)
		}
	}
	if len(r.Conditions) == 0 {
		r.Conditions = []string{Healthy}
		r.Evidence = append(r.Evidence,
			Evidence{Healthy, "components", 0, 0, fmt.Sprintf("no errors or stalls in %s in the last %s", strings.Join(cfg.InternalComponents, ", "), win)},
			Evidence{Healthy, "invalid_share", rt.InvalidShare, cfg.AttackShare, fmt.Sprintf("invalid share %s at %s requests/s (attack: %s at %s/s or more)", fmtPercent(rt.InvalidShare), fmtRate(rt.Requests), fmtPercent(cfg.AttackShare), fmtRate(cfg.AttackMinRate))},
			Evidence{Healthy, "waiting", float64(s.Waiting), 0, "waiting room empty, nobody refused for capacity"},
		)
	}
	if s.WaitingForStart > 0 {
		// Whatever the verdict: the herd is expected, and the operator
		// wants to know its size before pressing start.
		r.Evidence = append(r.Evidence, Evidence{r.Conditions[0], "waiting_for_start", float64(s.WaitingForStart), 0,
			fmt.Sprintf("%d people wait for a scheduled start (%s polls/s): expected, not overload", s.WaitingForStart, fmtRate(rt.Polls))})
	}
	r.Verdict = r.Conditions[0]
	return r
}

// faultKind names what a component's stalls or errors are, for people.
func faultKind(component string, stalls bool) string {
	kinds := map[string][2]string{
		ComponentMixer:    {"mixer stalls of 100 ms or more", "mixer errors"},
		ComponentRecorder: {"chunks dropped by the recorder", "recorder write errors"},
		ComponentBus:      {"bad chunks on the bus", "bus publish errors"},
		ComponentStage:    {"speakers lost", "RTP packets dropped"},
		ComponentEdge:     {"stalls", "listeners cut"},
	}
	k, ok := kinds[component]
	if !ok {
		k = [2]string{"stalls", "errors"}
	}
	if stalls {
		return k[0]
	}
	return k[1]
}

// fmtReasons lists the reasons of set that grew, largest first.
func (m *Monitor) fmtReasons(rates map[string]float64, set map[string]bool) string {
	var reasons []string
	for r := range rates {
		if set[r] {
			reasons = append(reasons, r)
		}
	}
	slices.SortFunc(reasons, func(a, b string) int {
		if c := cmp.Compare(rates[b], rates[a]); c != 0 {
			return c
		}
		return strings.Compare(a, b)
	})
	parts := make([]string, len(reasons))
	for i, r := range reasons {
		parts[i] = fmt.Sprintf("%s %s/s", r, fmtRate(rates[r]))
	}
	return strings.Join(parts, ", ")
}

func fmtPrefixes(top []PrefixCount, n int) string {
	parts := make([]string, 0, n)
	for i, p := range top {
		if i == n {
			break
		}
		parts = append(parts, fmt.Sprintf("%s %s", p.Prefix, fmtPercent(p.Share)))
	}
	return strings.Join(parts, ", ")
}

func fmtCodes(codes map[int]uint64) string {
	parts := make([]string, 0, len(codes))
	for _, c := range slices.Sorted(maps.Keys(codes)) {
		parts = append(parts, fmt.Sprintf("%d×%d", c, codes[c]))
	}
	return strings.Join(parts, ", ")
}

func fmtRate(f float64) string {
	switch {
	case f >= 100 || f == float64(int64(f)):
		return fmt.Sprintf("%.0f", f)
	case f >= 10:
		return fmt.Sprintf("%.1f", f)
	default:
		return fmt.Sprintf("%.2g", f)
	}
}

func fmtPercent(f float64) string { return fmt.Sprintf("%.0f %%", 100*f) }

func fmtDuration(d time.Duration) string {
	if d >= time.Second {
		return d.Round(100 * time.Millisecond).String()
	}
	return d.Round(time.Millisecond).String()
}

// fleetListeners sums the edges' listeners.
func fleetListeners(edges []EdgeSnapshot) int64 {
	var n int64
	for _, e := range edges {
		n += int64(e.Listeners)
	}
	return n
}
