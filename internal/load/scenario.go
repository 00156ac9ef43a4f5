// Package load rehearses an event against a running amphi server: it opens
// many listeners that follow the real join flow and read the real stream as
// a player with a small jitter buffer would, resumes their streams where
// they broke as amphi's own clients do (or, asked to, play LL-HLS part by
// part as a low-latency player does: hls.go), runs speaker bots over WHIP, and
// reports time to first audio, stalls, bytes, disconnects, resumes and holes
// (per edge process when there are several) and the server's CPU and memory. Asked to, it measures mouth-to-ear latency: one speaker
// bot plays timing marks (package latency) and a sample of listeners
// decodes what they receive and finds them; sender and listeners share the
// machine's clock. Asked to, it also plays the listeners' pages, which poll
// the space's state while their stream runs, spread evenly over the
// interval and sent over a small pool of keep-alive connections, and
// reports what those polls got and how fast.
//
// All traffic goes to loopback addresses through loopnet, from source
// addresses rotating over 127.0.0.0/8 so more than 64 k connections can be
// opened. Everything is bounded in count and time and stops by itself. A
// process opens at most Scenario.PerProcess listeners (every machine here
// caps a process at 20 000 open files); past that, Run starts worker
// processes (the amphi binary itself, `amphi load --worker-stdio`), gives each
// a Share as JSON on its stdin, reads per-second Samples and a final Report
// as JSON lines from its stdout, and merges them. To exceed one machine,
// Run with Config.Bus offers the shares over NATS (package bus) to remote
// workers (ServeWorker, `amphi load --worker --nats URL`) instead.
package load

import (
	"encoding/json"
	"fmt"
	"net/url"
	"strings"
	"time"

	"github.com/amphi-audio/amphi"
	"github.com/amphi-audio/amphi/internal/attack"
	"github.com/amphi-audio/amphi/internal/loopnet"
)

// Bounds on a scenario: a rehearsal never runs away, whatever its file says.
const (
	MaxListeners    = 2_000_000
	MaxDuration     = time.Hour
	MaxJoinRate     = 100_000 // joins per second
	MaxBurst        = 10 * time.Second
	MaxPlayerBuffer = 30 * time.Second
	MaxTimeout      = time.Minute
	MaxResume       = time.Minute
	MaxSources      = 1 << 24
	// MaxPerProcess keeps a process under the 20 000 open files every
	// machine here allows, with room for the process's own files.
	MaxPerProcess = 19_000
	// MaxWorkers bounds the worker processes one run starts.
	MaxWorkers = 256
	// MaxAttacks bounds the attacks one run makes at once.
	MaxAttacks = 16
	// MaxFaults bounds the faults one run asks the server to feign.
	MaxFaults = 16
	// MaxLatencySample bounds the listeners that decode: at about 0.13 %
	// of a core each, a thousand take more than a core from the listeners
	// beside them.
	MaxLatencySample = 1000
	// MinLatencyInterval and MaxLatencyInterval bound the time between
	// marks: marks need quiet between them, and a run needs several.
	MinLatencyInterval = 200 * time.Millisecond
	MaxLatencyInterval = 10 * time.Second
)

// Duration is a time.Duration that reads and writes JSON as a string such as
// "1.5s" (a number is taken as nanoseconds), so scenario files are readable.
type Duration time.Duration

// MarshalJSON writes the duration as a string.
func (d Duration) MarshalJSON() ([]byte, error) {
	return json.Marshal(time.Duration(d).String())
}

// UnmarshalJSON reads a duration string or a number of nanoseconds.
func (d *Duration) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		var n int64
		if err := json.Unmarshal(b, &n); err != nil {
			return fmt.Errorf("load: a duration is a string such as \"30s\": %s", b)
		}
		*d = Duration(n)
		return nil
	}
	v, err := time.ParseDuration(s)
	if err != nil {
		return fmt.Errorf("load: %w", err)
	}
	*d = Duration(v)
	return nil
}

// String formats the duration as time.Duration does.
func (d Duration) String() string { return time.Duration(d).String() }

// Scenario is what to rehearse. It is read from a JSON file (--scenario)
// and flags override it; DefaultScenario gives the defaults.
type Scenario struct {
	// Server is the amphi server's base URL; it must be a loopback address.
	Server string `json:"server"`
	// ListenServer, when set, is where listeners join, listen and poll
	// the state: an edge, or the one port several edge processes share,
	// while Server (the origin) creates the space and takes the speakers.
	// Empty means Server. It must be a loopback address too.
	ListenServer string `json:"listen_server,omitempty"`
	// Stream, when set, is a path on Server serving a plain progressive Ogg
	// stream with no join flow (an Icecast mount, say): listeners GET it
	// directly, and no space or speaker is involved. It is how amphi is
	// measured beside another server in the same run.
	Stream string `json:"stream,omitempty"`
	// SpaceID is the space to listen to. Empty means Run creates a live
	// space through the API, runs the speaker bots in it and ends it after.
	SpaceID string `json:"space_id,omitempty"`
	// Token is a token of SpaceID, needed only for speaker bots in a space
	// Run did not create: a speaker token for one bot, the host token for
	// more (each bot needs its own place on the stage).
	Token string `json:"token,omitempty"`
	// Listeners is how many listeners join. Zero means none.
	Listeners int `json:"listeners"`
	// JoinRate is how many listeners join per second. Zero means a herd: all
	// join at once, at HerdAt.
	JoinRate float64 `json:"join_rate"`
	// HerdAt is when a herd joins, after the start. Zero means at once.
	HerdAt Duration `json:"herd_at,omitempty"`
	// Duration is how long the run lasts from its start (the first join
	// slot); every listener is disconnected then. Required.
	Duration Duration `json:"duration"`
	// Burst is the ?burst= each listener asks for. Zero means the server's
	// default.
	Burst Duration `json:"burst,omitempty"`
	// Flush is the ?flush= each listener asks for: how long the server may
	// hold chunks to write them together. Zero means the server's default
	// (about a second, as for plain players); amphi's own low-latency
	// clients ask for 200 ms.
	Flush Duration `json:"flush,omitempty"`
	// PlayerBuffer is the audio a listener's player waits for before it
	// plays, and again after running dry, like a small client jitter
	// buffer. Zero means DefaultPlayerBuffer.
	PlayerBuffer Duration `json:"player_buffer,omitempty"`
	// Resume is how long a listener whose amphi stream breaks before the
	// program's end (its edge process died, say) asks for it again, every
	// 250 ms, from the chunk after the last one it received (from_seq), as
	// amphi's own clients do. Zero means DefaultResume; negative means
	// never. A plain Stream is never resumed.
	Resume Duration `json:"resume,omitempty"`
	// Speakers is how many speaker bots stream over WHIP. Negative means
	// one when Run creates the space and none otherwise.
	Speakers int `json:"speakers"`
	// SpeakFile is a WAV or Ogg Opus file the speakers loop. Empty means a
	// sine tone per speaker.
	SpeakFile string `json:"speak_file,omitempty"`
	// Sources is how many loopback source addresses connections rotate
	// over, each new one in another /24 (loopnet.Dialer). Zero means one
	// per listener, as in a real crowd, so the gate's per-source and
	// per-prefix limits see what they would in production.
	Sources int `json:"sources,omitempty"`
	// PerPrefix, when set, puts that many consecutive listeners (at most
	// 253) in one /24, each with its own address, before the next /24: a
	// crowd behind a carrier's NAT. Zero gives each listener another /24.
	PerPrefix int `json:"per_prefix,omitempty"`
	// PerProcess is the most listeners one process opens; more are split
	// over worker processes. Zero means DefaultPerProcess.
	PerProcess int `json:"per_process,omitempty"`
	// Timeout bounds a listener's wait for its connection, its response,
	// its first audio and each later read. Zero means DefaultTimeout.
	Timeout Duration `json:"timeout,omitempty"`
	// Attacks run from the start alongside the listeners, in the run's own
	// process (package attack). An attack's empty Target means Server; its
	// Duration, when zero or longer than the run's, is the run's. Nil means
	// none.
	Attacks []attack.Config `json:"attacks,omitempty"`
	// Ops is the server's ops address (`amphi serve --ops-addr`), a
	// loopback URL such as http://127.0.0.1:8081, where Faults are posted.
	// Empty means none; Faults need it.
	Ops string `json:"ops,omitempty"`
	// Faults are internal faults the server is asked to feign during the
	// run, each posted to Ops's /faults at its time; the server must run
	// with --rehearsal-faults. Nil means none.
	Faults []Fault `json:"faults,omitempty"`
	// PID is the server's process id when it runs on this machine: its CPU
	// time and memory are sampled each second. Zero means not sampled.
	PID int `json:"pid,omitempty"`
	// LatencySample is how many listeners measure mouth-to-ear latency:
	// the first speaker bot plays timing marks (package latency) instead of
	// its tone, and the first LatencySample listeners of worker 0's share
	// decode what they receive and find the marks. Each costs about 0.13 %
	// of a core (BenchmarkEarPage). Zero means no latency is measured; it
	// needs a speaker bot.
	LatencySample int `json:"latency_sample,omitempty"`
	// LatencyInterval is the time between two marks. Zero means
	// DefaultLatencyInterval, which walks the marks through every position
	// of the program's 5-packet pages, so the batching's spread is part of
	// the result. A multiple of 100 ms puts every mark at the same position:
	// one fixed point of that spread, for comparing two paths.
	LatencyInterval Duration `json:"latency_interval,omitempty"`
	// PollState, when set, makes every listener's page poll GET
	// /spaces/{id}/state this often, with the ETag it last got in
	// If-None-Match, from its admission to the end of its stream, as
	// amphi's pages do every 2 s. Listener i of N polls at i·PollState/N
	// into each interval, and a process sends at most 64 at once over as
	// many connections (Report.State). Zero means pages do not poll; it
	// needs an amphi space, not a plain Stream.
	PollState Duration `json:"poll_state,omitempty"`
	// HLS makes every listener play LL-HLS instead of the Ogg stream: it
	// joins as others do, then follows its admission's hls_url (the
	// multivariant playlist's first rendition, Opus) as a low-latency
	// player does: blocking reloads (_HLS_msn, _HLS_part) and each part
	// once listed, over one keep-alive connection, playlists asked for
	// gzipped. Report.HLS counts parts and playlists. False means the Ogg
	// stream; it needs an amphi space, and measures no latency.
	HLS bool `json:"hls,omitempty"`
}

// Defaults of a Scenario's zero fields.
const (
	DefaultPlayerBuffer = time.Second
	DefaultPerProcess   = 15_000
	DefaultTimeout      = 10 * time.Second
	DefaultResume       = 10 * time.Second
	// DefaultLatencyInterval is a mark every 1.02 s: 51 packets, one more
	// than a multiple of the page's five, so consecutive marks land in
	// consecutive page positions.
	DefaultLatencyInterval = 1020 * time.Millisecond
)

// DefaultScenario returns a scenario with every default filled in but the
// required Duration and Listeners.
func DefaultScenario() Scenario {
	return Scenario{
		Server:       "http://127.0.0.1:8080",
		Speakers:     -1,
		PlayerBuffer: Duration(DefaultPlayerBuffer),
		PerProcess:   DefaultPerProcess,
		Timeout:      Duration(DefaultTimeout),
		Resume:       Duration(DefaultResume),
	}
}

// Normalize checks the scenario against its bounds and fills in defaults.
// Its errors are amphi EInvalid errors that say which field is wrong.
func (s *Scenario) Normalize() error {
	bad := func(format string, args ...any) error {
		return amphi.Errorf(amphi.EInvalid, "load: "+format, args...)
	}
	if s.Server == "" {
		return bad("a server URL is required")
	}
	s.Server = strings.TrimRight(s.Server, "/")
	u, err := url.Parse(s.Server)
	if err != nil || u.Scheme != "http" || u.Host == "" {
		return bad("server %q: want an http:// URL", s.Server)
	}
	if err := loopnet.CheckURL(s.Server); err != nil {
		return amphi.Errorf(amphi.EInvalid, "load: %v", err)
	}
	if s.ListenServer == "" {
		s.ListenServer = s.Server
	}
	s.ListenServer = strings.TrimRight(s.ListenServer, "/")
	if u, err := url.Parse(s.ListenServer); err != nil || u.Scheme != "http" || u.Host == "" {
		return bad("listen_server %q: want an http:// URL", s.ListenServer)
	}
	if err := loopnet.CheckURL(s.ListenServer); err != nil {
		return amphi.Errorf(amphi.EInvalid, "load: %v", err)
	}
	if s.Stream != "" && (!strings.HasPrefix(s.Stream, "/") || strings.ContainsAny(s.Stream, " \r\n")) {
		return bad("stream %q: want a path such as /amphi.opus", s.Stream)
	}
	if s.Stream != "" {
		s.SpaceID, s.Speakers = "", 0
	}
	if s.SpaceID != "" && (strings.ContainsAny(s.SpaceID, "/?#% ") || len(s.SpaceID) > 64) {
		return bad("space id %q is not an id", s.SpaceID)
	}
	if s.Listeners < 0 || s.Listeners > MaxListeners {
		return bad("listeners %d: want 0 to %d", s.Listeners, MaxListeners)
	}
	d := time.Duration(s.Duration)
	if d <= 0 || d > MaxDuration {
		return bad("duration %v: want more than 0 and at most %v", d, MaxDuration)
	}
	if s.JoinRate < 0 || s.JoinRate > MaxJoinRate || s.JoinRate != s.JoinRate {
		return bad("join rate %v/s: want 0 (a herd) to %d", s.JoinRate, MaxJoinRate)
	}
	if s.JoinRate > 0 && s.Listeners > 1 {
		last := time.Duration(float64(s.Listeners-1) / s.JoinRate * float64(time.Second))
		if last >= d {
			return bad("at %v/s the last of %d listeners would join after %v, not within the duration %v", s.JoinRate, s.Listeners, last.Round(time.Millisecond), d)
		}
	}
	if h := time.Duration(s.HerdAt); h < 0 || h >= d {
		return bad("herd at %v: want 0 or more and before the duration %v", h, d)
	}
	if f := time.Duration(s.Flush); f < 0 || f > 2*time.Second {
		return bad("flush %v: want 0 (the server's default) to 2s", f)
	}
	if b := time.Duration(s.Burst); b < 0 || b > MaxBurst {
		return bad("burst %v: want 0 (the server's default) to %v", b, MaxBurst)
	}
	if s.PlayerBuffer == 0 {
		s.PlayerBuffer = Duration(DefaultPlayerBuffer)
	}
	if b := time.Duration(s.PlayerBuffer); b < 0 || b > MaxPlayerBuffer {
		return bad("player buffer %v: want up to %v", b, MaxPlayerBuffer)
	}
	if s.Speakers < 0 {
		s.Speakers = 0
		if s.SpaceID == "" {
			s.Speakers = 1
		}
	}
	if s.Speakers > amphi.MaxSpeakers {
		return bad("speakers %d: a stage holds at most %d", s.Speakers, amphi.MaxSpeakers)
	}
	if s.Speakers > 0 && s.SpaceID != "" && s.Token == "" {
		return bad("speaker bots in space %s need a speaker or host token", s.SpaceID)
	}
	if s.Sources == 0 {
		s.Sources = max(s.Listeners, 1)
	}
	if s.Sources < 0 || s.Sources > MaxSources {
		return bad("sources %d: want 1 to %d", s.Sources, MaxSources)
	}
	if s.PerPrefix < 0 || s.PerPrefix > 253 {
		return bad("per prefix %d: want 0 to 253 addresses in a /24", s.PerPrefix)
	}
	if s.PerProcess == 0 {
		s.PerProcess = DefaultPerProcess
	}
	if s.PerProcess < 0 || s.PerProcess > MaxPerProcess {
		return bad("per process %d: want 1 to %d (a process may open 20 000 files)", s.PerProcess, MaxPerProcess)
	}
	if w := s.Workers(); w > MaxWorkers {
		return bad("%d listeners at %d per process need %d worker processes, more than %d", s.Listeners, s.PerProcess, w, MaxWorkers)
	}
	if s.Timeout == 0 {
		s.Timeout = Duration(DefaultTimeout)
	}
	if t := time.Duration(s.Timeout); t < 0 || t > MaxTimeout {
		return bad("timeout %v: want up to %v", t, MaxTimeout)
	}
	if s.Resume == 0 {
		s.Resume = Duration(DefaultResume)
	}
	if time.Duration(s.Resume) > MaxResume {
		return bad("resume %v: want up to %v, or negative for never", time.Duration(s.Resume), MaxResume)
	}
	if len(s.Attacks) > MaxAttacks {
		return bad("%d attacks: at most %d", len(s.Attacks), MaxAttacks)
	}
	for i := range s.Attacks {
		a := &s.Attacks[i]
		if a.Target == "" {
			a.Target = s.Server
		}
		if err := loopnet.CheckURL(a.Target); err != nil {
			return amphi.Errorf(amphi.EInvalid, "load: attack %d: %v", i, err)
		}
		if a.Duration <= 0 || a.Duration > d {
			a.Duration = d
		}
	}
	if s.Ops != "" {
		s.Ops = strings.TrimRight(s.Ops, "/")
		if u, err := url.Parse(s.Ops); err != nil || u.Scheme != "http" || u.Host == "" {
			return bad("ops %q: want an http:// URL", s.Ops)
		}
		if err := loopnet.CheckURL(s.Ops); err != nil {
			return amphi.Errorf(amphi.EInvalid, "load: ops: %v", err)
		}
	}
	if len(s.Faults) > 0 && s.Ops == "" {
		return bad("faults are posted to the server's ops address: set ops (--ops)")
	}
	if len(s.Faults) > MaxFaults {
		return bad("%d faults: at most %d", len(s.Faults), MaxFaults)
	}
	for i, f := range s.Faults {
		if f.Kind == "" || time.Duration(f.At) < 0 || time.Duration(f.At) >= d || f.For <= 0 || time.Duration(f.For) > MaxDuration || f.Delay < 0 {
			return bad("fault %d %+v: want a kind, at from 0 to before the duration %v, for above 0", i, f, d)
		}
	}
	if s.PID < 0 {
		return bad("pid %d", s.PID)
	}
	if s.LatencySample < 0 || s.LatencySample > MaxLatencySample {
		return bad("latency sample %d: want 0 to %d listeners", s.LatencySample, MaxLatencySample)
	}
	if s.LatencyInterval == 0 {
		s.LatencyInterval = Duration(DefaultLatencyInterval)
	}
	if i := time.Duration(s.LatencyInterval); i < MinLatencyInterval || i > MaxLatencyInterval {
		return bad("latency interval %v: want %v to %v", i, MinLatencyInterval, MaxLatencyInterval)
	}
	if p := time.Duration(s.PollState); p != 0 && (p < MinPollState || p > MaxPollState) {
		return bad("poll state %v: want 0 (no polls) or %v to %v", p, MinPollState, MaxPollState)
	}
	if s.HLS && s.Stream != "" {
		return bad("hls: a plain stream has no LL-HLS playlist")
	}
	if t := time.Duration(s.Timeout); s.HLS && t <= hlsMaxBlock {
		return bad("hls: timeout %v: a blocking reload may wait %v at the server, want more", t, hlsMaxBlock)
	}
	if s.HLS && s.LatencySample > 0 {
		return bad("hls: HLS listeners do not measure latency: latency sample 0")
	}
	if s.PollState != 0 && s.Stream != "" {
		return bad("poll state: a plain stream has no space whose state pages would poll")
	}
	return nil
}

// Workers returns how many worker processes the scenario needs: 0 when one
// process holds every listener.
func (s *Scenario) Workers() int {
	if s.PerProcess <= 0 || s.Listeners <= s.PerProcess {
		return 0
	}
	return (s.Listeners + s.PerProcess - 1) / s.PerProcess
}
