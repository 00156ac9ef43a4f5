package load

import (
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/amphi-audio/amphi/internal/attack"
	"github.com/amphi-audio/amphi/internal/latency"
)

// ProgramBytesPerSecond is the program's nominal rate: 32 kbit/s.
const ProgramBytesPerSecond = 4000

// Report is the outcome of a run, merged over its processes.
type Report struct {
	Scenario Scenario `json:"scenario"`
	// SpaceID is the space listened to (created by the run when the
	// scenario named none).
	SpaceID string    `json:"space_id"`
	Started time.Time `json:"started"`
	// Duration is how long the listening phase lasted.
	Duration Duration `json:"duration"`
	// Workers is how many worker processes ran the listeners; 0 means the
	// run's own process did.
	Workers   int            `json:"workers"`
	Listeners ListenerCounts `json:"listeners"`
	TTFA      Quantiles      `json:"ttfa"`
	Stalls    int64          `json:"stalls"`
	Bytes     Bytes          `json:"bytes"`
	Speakers  SpeakerCounts  `json:"speakers"`
	// Disconnects counts how the streams of listeners who received audio
	// ended, by cause: "ended" (by the run, at its end), "eos" (the
	// program ended cleanly), "eof" (the server closed early), "reset",
	// "timeout", "bad_stream", "error".
	Disconnects map[string]int64 `json:"disconnects"`
	// Attacks is what each of the scenario's attacks did, in its order.
	Attacks []attack.Stats `json:"attacks,omitempty"`
	// Faults is the scenario's faults, each with when it was posted.
	Faults []PostedFault `json:"faults,omitempty"`
	// Server is the server's resource use, when its PID was given.
	Server   *Server  `json:"server,omitempty"`
	Timeline []Sample `json:"timeline"`
	// TTFAHistogram holds every listener's time to first audio; TTFA is
	// read from it. Workers send it so merged quantiles are exact.
	TTFAHistogram Histogram `json:"ttfa_histogram"`
	// ListenerSeconds is the time all listeners were connected with audio
	// flowing, summed.
	ListenerSeconds float64 `json:"listener_seconds"`
	// Resumes counts the streams that broke and came back: the listener
	// asked for its stream again from the chunk after its last
	// (Scenario.Resume) and new audio came. ResumesFailed counts the
	// breaks no resume mended in time.
	Resumes       int64 `json:"resumes"`
	ResumesFailed int64 `json:"resumes_failed"`
	// ResumeTime is the time from a break to the first new audio, read
	// from ResumeHistogram, which workers send so that merged quantiles
	// are exact.
	ResumeTime      Quantiles `json:"resume_time"`
	ResumeHistogram Histogram `json:"resume_histogram"`
	// Holes counts the jumps in the chunks listeners received (page
	// sequence numbers that do not follow on), across resumes too: audio
	// that never arrived. MissedChunks is how many chunks they skipped.
	Holes        int64 `json:"holes"`
	MissedChunks int64 `json:"missed_chunks"`
	// Edges is what the listeners saw of each edge process, by the name its
	// responses give (X-Amphi-Edge; "" for a server that gives none).
	Edges map[string]EdgeCounts `json:"edges,omitempty"`
	// Errors holds one example message per failure cause.
	Errors map[string]string `json:"errors,omitempty"`
	// Latency is the mouth-to-ear latency the sampled listeners measured;
	// nil when the scenario sampled none.
	Latency *Latency `json:"latency,omitempty"`
	// LatencyListeners is how many sampled listeners received audio, in a
	// share's report; Run moves it to Latency.Listeners.
	LatencyListeners int `json:"latency_listeners,omitempty"`
	// Detections are the marks a share's sampled listeners found, on their
	// way from a worker to the run, which matches them with the marks sent
	// and leaves this empty in its report.
	Detections []latency.Detection `json:"detections,omitempty"`
	// State is what the listeners' pages' polls of the space's state got;
	// nil when the scenario's pages did not poll (Scenario.PollState).
	State *StatePolls `json:"state,omitempty"`
	// HLS is what LL-HLS listeners did; nil when the scenario's listeners
	// read the Ogg stream (Scenario.HLS).
	HLS *HLSCounts `json:"hls,omitempty"`
	// MissingWorkers are the remote workers (by share) whose report never
	// came: their listeners are not counted. Empty when none is missing.
	MissingWorkers []int `json:"missing_workers,omitempty"`
}

// Latency is the mouth-to-ear latency of a run: from the moment the
// speaker bot hands a mark's first frame to its WebRTC track to the moment
// the page holding the mark's onset arrives at a sampled listener, plus the
// onset's offset in that page's audio (package latency). It includes the
// time the edge holds pages to write them together, which the listeners'
// Scenario.Flush chooses: about a second by default, 200 ms for amphi's
// own clients.
type Latency struct {
	// N is how many marks were detected and matched, over all sampled
	// listeners.
	N   int      `json:"n"`
	P50 Duration `json:"p50"`
	P99 Duration `json:"p99"`
	Max Duration `json:"max"`
	// Sent is how many marks the bot sent.
	Sent int `json:"sent"`
	// Listeners is how many sampled listeners received audio.
	Listeners int `json:"listeners"`
	// Interval is the time between marks.
	Interval Duration `json:"interval"`
	// Worker0Only says the listeners ran in worker processes and only
	// worker 0's share was sampled.
	Worker0Only bool `json:"worker0_only,omitempty"`
}

// EdgeCounts is what listeners saw of one edge process.
type EdgeCounts struct {
	// Started counts the listeners whose stream started on the edge.
	Started int64 `json:"started"`
	// Resumed counts the resumes onto the edge.
	Resumed int64 `json:"resumed"`
	// Lost counts the streams that broke on the edge: closed, reset or
	// timed out before the program's or the run's end.
	Lost int64 `json:"lost"`
	// Stalls counts the stalls whose last audio before the player ran
	// dry came from the edge.
	Stalls int64 `json:"stalls"`
}

func (c *EdgeCounts) add(o EdgeCounts) {
	c.Started += o.Started
	c.Resumed += o.Resumed
	c.Lost += o.Lost
	c.Stalls += o.Stalls
}

// addEdge adds counts of the edge named name.
func (r *Report) addEdge(name string, c EdgeCounts) {
	if r.Edges == nil {
		r.Edges = map[string]EdgeCounts{}
	}
	e := r.Edges[name]
	e.add(c)
	r.Edges[name] = e
}

// ListenerCounts classifies the listeners. Every listener that joined is
// exactly one of OK, Stalled, Cut, Failed or Pending.
type ListenerCounts struct {
	Target int `json:"target"`
	// Joined counts listeners that started their request.
	Joined int64 `json:"joined"`
	// OK received audio, never stalled and were not cut by the server
	// before the end.
	OK int64 `json:"ok"`
	// Stalled received audio and stalled at least once.
	Stalled int64 `json:"stalled"`
	// Cut received audio without a stall but lost the stream before the
	// end (closed, reset, timed out).
	Cut int64 `json:"cut"`
	// Pending were still waiting for their first audio when the run
	// ended, without having failed.
	Pending int64 `json:"pending"`
	// Failed never received a 200 and audio.
	Failed int64 `json:"failed"`
	// FailedBy counts failures by cause: "refused", "reset", "timeout",
	// "eof" (closed before audio), "http_NNN" (the response's status),
	// "bad_response", "bad_stream", "no_files", "no_address", "error".
	FailedBy map[string]int64 `json:"failed_by,omitempty"`
}

// Quantiles summarises durations.
type Quantiles struct {
	P50 Duration `json:"p50"`
	P99 Duration `json:"p99"`
	Max Duration `json:"max"`
}

// Bytes is what listeners received.
type Bytes struct {
	Total int64 `json:"total"`
	// PerListenerSecond is Total over ListenerSeconds; about
	// ProgramBytesPerSecond plus Ogg overhead and bursts when healthy.
	PerListenerSecond float64 `json:"per_listener_second"`
	// OfBitrate is PerListenerSecond over ProgramBytesPerSecond.
	OfBitrate float64 `json:"of_bitrate"`
}

// SpeakerCounts says how the speaker bots fared.
type SpeakerCounts struct {
	Target    int   `json:"target"`
	Connected int   `json:"connected"`
	Failed    int   `json:"failed"`
	Packets   int64 `json:"packets"`
}

// Server is the server process's resource use during the run.
type Server struct {
	PID        int     `json:"pid"`
	CPUSeconds float64 `json:"cpu_seconds"`
	// CPUPerListenerSecond is CPU time over ListenerSeconds, in seconds.
	CPUPerListenerSecond float64 `json:"cpu_per_listener_second"`
	RSSBeforeBytes       int64   `json:"rss_before_bytes"`
	RSSMaxBytes          int64   `json:"rss_max_bytes"`
	// RSSPerListener is (RSS at the peak of listeners − RSS before the
	// first) / peak listeners, in bytes.
	RSSPerListener float64 `json:"rss_per_listener"`
	PeakListeners  int64   `json:"peak_listeners"`
}

// Sample is one second of a run.
type Sample struct {
	// T is the second's end, in seconds from the start.
	T int `json:"t"`
	// Live is how many listeners had their stream open.
	Live int64 `json:"live"`
	// Joins is how many listeners started during the second.
	Joins int64 `json:"joins"`
	// Stalls and Failed count since the start.
	Stalls int64 `json:"stalls"`
	Failed int64 `json:"failed"`
	// Bytes counts what listeners received since the start.
	Bytes int64 `json:"bytes"`
	// CPU is the server's CPU use over the second, in percent of a core,
	// and RSS its resident memory; both only with a PID.
	CPU float64 `json:"cpu_percent,omitempty"`
	RSS int64   `json:"rss_bytes,omitempty"`
	// Latency is the median mouth-to-ear latency of the marks that arrived
	// during the second, over the sampled listeners; zero when none did.
	// It is set on the run's merged timeline only.
	Latency Duration `json:"latency_p50,omitempty"`
}

// addCause counts one more under key, allocating the map when needed.
func addCause(m *map[string]int64, key string, n int64) {
	if *m == nil {
		*m = map[string]int64{}
	}
	(*m)[key] += n
}

// Merge adds a share's report, from this process or a worker, to r.
func (r *Report) Merge(o *Report) {
	r.Listeners.Joined += o.Listeners.Joined
	r.Listeners.OK += o.Listeners.OK
	r.Listeners.Stalled += o.Listeners.Stalled
	r.Listeners.Cut += o.Listeners.Cut
	r.Listeners.Failed += o.Listeners.Failed
	r.Listeners.Pending += o.Listeners.Pending
	for k, v := range o.Listeners.FailedBy {
		addCause(&r.Listeners.FailedBy, k, v)
	}
	for k, v := range o.Disconnects {
		addCause(&r.Disconnects, k, v)
	}
	for k, v := range o.Errors {
		if _, ok := r.Errors[k]; !ok {
			if r.Errors == nil {
				r.Errors = map[string]string{}
			}
			r.Errors[k] = v
		}
	}
	if o.State != nil {
		if r.State == nil {
			r.State = &StatePolls{}
		}
		r.State.Merge(o.State)
	}
	if o.HLS != nil {
		if r.HLS == nil {
			r.HLS = &HLSCounts{}
		}
		r.HLS.add(o.HLS)
	}
	r.LatencyListeners += o.LatencyListeners
	r.Detections = append(r.Detections, o.Detections...)
	r.TTFAHistogram.Merge(&o.TTFAHistogram)
	r.Resumes += o.Resumes
	r.ResumesFailed += o.ResumesFailed
	r.ResumeHistogram.Merge(&o.ResumeHistogram)
	r.Holes += o.Holes
	r.MissedChunks += o.MissedChunks
	for name, c := range o.Edges {
		r.addEdge(name, c)
	}
	r.Stalls += o.Stalls
	r.Bytes.Total += o.Bytes.Total
	r.ListenerSeconds += o.ListenerSeconds
	r.Timeline = mergeTimelines(r.Timeline, o.Timeline)
	r.Duration = max(r.Duration, o.Duration)
	r.summarize()
}

// mergeTimelines sums b's samples into a's, second by second. Server fields
// are kept from a.
func mergeTimelines(a, b []Sample) []Sample {
	for _, s := range b {
		i, found := slices.BinarySearchFunc(a, s.T, func(x Sample, t int) int { return x.T - t })
		if !found {
			a = slices.Insert(a, i, Sample{T: s.T})
		}
		x := &a[i]
		x.Live += s.Live
		x.Joins += s.Joins
		x.Stalls += s.Stalls
		x.Failed += s.Failed
		x.Bytes += s.Bytes
	}
	return a
}

// summarize derives the report's summary fields from its raw ones.
func (r *Report) summarize() {
	r.TTFA = r.TTFAHistogram.quantiles()
	r.ResumeTime = r.ResumeHistogram.quantiles()
	r.Bytes.PerListenerSecond, r.Bytes.OfBitrate = 0, 0
	if r.ListenerSeconds > 0 {
		r.Bytes.PerListenerSecond = float64(r.Bytes.Total) / r.ListenerSeconds
		r.Bytes.OfBitrate = r.Bytes.PerListenerSecond / ProgramBytesPerSecond
	}
	if s := r.Server; s != nil && r.ListenerSeconds > 0 {
		s.CPUPerListenerSecond = s.CPUSeconds / r.ListenerSeconds
	}
	if s := r.State; s != nil {
		s.summarize(time.Duration(r.Duration))
	}
	if h := r.HLS; h != nil {
		h.summarize(r.ListenerSeconds)
	}
}

// WriteText writes the report as a short human summary.
func (r *Report) WriteText(w io.Writer) error {
	var b strings.Builder
	l := r.Listeners
	fmt.Fprintf(&b, "amphi load: space %s, %v", r.SpaceID, r.Duration)
	if r.Workers > 0 {
		fmt.Fprintf(&b, ", %d worker processes", r.Workers)
	}
	if len(r.MissingWorkers) > 0 {
		fmt.Fprintf(&b, ", workers %v missing (their listeners are not counted)", r.MissingWorkers)
	}
	b.WriteString("\n")
	fmt.Fprintf(&b, "listeners  %d target, %d joined: %d ok, %d stalled, %d cut, %d failed, %d pending\n", l.Target, l.Joined, l.OK, l.Stalled, l.Cut, l.Failed, l.Pending)
	if len(l.FailedBy) > 0 {
		fmt.Fprintf(&b, "failed by  %s\n", formatCounts(l.FailedBy))
		for _, k := range slices.Sorted(maps.Keys(r.Errors)) {
			fmt.Fprintf(&b, "  %s: %s\n", k, r.Errors[k])
		}
	}
	fmt.Fprintf(&b, "first audio p50 %v, p99 %v, max %v\n", round(r.TTFA.P50), round(r.TTFA.P99), round(r.TTFA.Max))
	fmt.Fprintf(&b, "stalls     %d (no audio for more than %v while playing)\n", r.Stalls, StallAfter)
	fmt.Fprintf(&b, "bytes      %d, %.0f B per listener-second (%.2f× the %d B/s program)\n", r.Bytes.Total, r.Bytes.PerListenerSecond, r.Bytes.OfBitrate, ProgramBytesPerSecond)
	if h := r.HLS; h != nil {
		fmt.Fprintf(&b, "ll-hls     %d parts (%.2f per listener-second, %d skipped), %d B of parts; %d playlists (%.2f per listener-second, %d blocking reloads, %d answered 503, %d gzipped), %d B of playlists; %d requests, %d reconnects\n",
			h.Parts, h.PartsPerListenerSecond, h.Skipped, h.PartBytes, h.Playlists, h.PlaylistsPerListenerSecond, h.Reloads, h.ReloadsFailed, h.Gzipped, h.PlaylistBytes, h.Requests, h.Reconnects)
	}
	if len(r.Disconnects) > 0 {
		fmt.Fprintf(&b, "ended by   %s\n", formatCounts(r.Disconnects))
	}
	if r.Resumes > 0 || r.ResumesFailed > 0 || r.Holes > 0 {
		fmt.Fprintf(&b, "resumes    %d, %d failed; back in p50 %v, p99 %v, max %v; %d holes, %d chunks never received\n",
			r.Resumes, r.ResumesFailed, round(r.ResumeTime.P50), round(r.ResumeTime.P99), round(r.ResumeTime.Max), r.Holes, r.MissedChunks)
	}
	if len(r.Edges) > 1 {
		r.writeEdges(&b)
	}
	if l := r.Latency; l != nil {
		fmt.Fprintf(&b, "latency    p50 %v, p99 %v, max %v (%d marks, %d listeners", round(l.P50), round(l.P99), round(l.Max), l.N, l.Listeners)
		if f := r.Scenario.Flush; f > 0 {
			fmt.Fprintf(&b, ", flush %v", f)
		}
		if l.Worker0Only {
			b.WriteString(", worker 0's share only")
		}
		b.WriteString(")\n")
	}
	if s := r.State; s != nil {
		fmt.Fprintf(&b, "state      %.0f polls/s of %.0f due (every %v): %d sent, %d 200, %d 304, %d failed, %d skipped; p50 %v, p99 %v, max %v\n",
			s.PerSecond, s.TargetPerSecond, s.Interval, s.Sent, s.OK, s.NotModified, s.Failed, s.Skipped, round(s.Latency.P50), round(s.Latency.P99), round(s.Latency.Max))
		if len(s.FailedBy) > 0 {
			fmt.Fprintf(&b, "  polls failed by %s\n", formatCounts(s.FailedBy))
			for _, k := range slices.Sorted(maps.Keys(s.Errors)) {
				fmt.Fprintf(&b, "    %s: %s\n", k, s.Errors[k])
			}
		}
	}
	if s := r.Speakers; s.Target > 0 {
		fmt.Fprintf(&b, "speakers   %d of %d connected, %d failed, %d packets sent\n", s.Connected, s.Target, s.Failed, s.Packets)
	}
	for _, a := range r.Attacks {
		fmt.Fprintf(&b, "attack     %s\n", a)
	}
	for _, f := range r.Faults {
		fmt.Fprintf(&b, "fault      %s for %v, posted %v after the start\n", f.Kind, f.For, f.Posted.Sub(r.Started).Round(time.Millisecond))
	}
	if s := r.Server; s != nil {
		fmt.Fprintf(&b, "server     pid %d: %.2f s CPU, %.1f µs per listener-second; RSS max %.1f MiB, %.1f KiB per listener at the peak of %d\n",
			s.PID, s.CPUSeconds, s.CPUPerListenerSecond*1e6, float64(s.RSSMaxBytes)/(1<<20), s.RSSPerListener/1024, s.PeakListeners)
	}
	_, err := io.WriteString(w, b.String())
	return err
}

// writeEdges writes a table of r.Edges, a row per edge.
func (r *Report) writeEdges(b *strings.Builder) {
	names := slices.Sorted(maps.Keys(r.Edges))
	width := len("(unnamed)")
	for _, n := range names {
		width = max(width, len(n))
	}
	fmt.Fprintf(b, "edges      %-*s %8s %8s %8s %8s\n", width, "", "started", "resumed", "lost", "stalls")
	for _, n := range names {
		c := r.Edges[n]
		if n == "" {
			n = "(unnamed)"
		}
		fmt.Fprintf(b, "           %-*s %8d %8d %8d %8d\n", width, n, c.Started, c.Resumed, c.Lost, c.Stalls)
	}
}

func formatCounts(m map[string]int64) string {
	parts := make([]string, 0, len(m))
	for _, k := range slices.Sorted(maps.Keys(m)) {
		parts = append(parts, fmt.Sprintf("%s %d", k, m[k]))
	}
	return strings.Join(parts, ", ")
}

func round(d Duration) time.Duration {
	return time.Duration(d).Round(time.Millisecond / 10)
}
