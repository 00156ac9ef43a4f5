package load

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"strconv"
	"sync"
	"time"
)

// sampleLag is how long after each whole second the run reads its shares'
// samples and the server: time for workers' lines to arrive.
const sampleLag = 300 * time.Millisecond

// progress keeps the latest sample of each share, samples the server each
// second and writes the progress line.
type progress struct {
	cfg    Config
	target int
	start  time.Time
	srv    *serverSampler

	mu        sync.Mutex
	latest    []Sample
	lastPlain time.Time
	wrote     bool
}

func newProgress(cfg Config, sc Scenario, shares int, start time.Time, srv *serverSampler) *progress {
	return &progress{cfg: cfg, target: sc.Listeners, start: start, srv: srv, latest: make([]Sample, shares)}
}

// update records share w's newest sample.
func (p *progress) update(w int, s Sample) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if s.T >= p.latest[w].T {
		p.latest[w] = s
	}
}

// run ticks once a second until ctx is done.
func (p *progress) run(ctx context.Context) {
	timer := time.NewTimer(0)
	<-timer.C
	defer timer.Stop()
	for t := 1; ; t++ {
		timer.Reset(time.Until(p.start.Add(time.Duration(t)*time.Second + sampleLag)))
		select {
		case <-ctx.Done():
			return
		case <-timer.C:
		}
		var sum Sample
		p.mu.Lock()
		for _, s := range p.latest {
			sum.Live += s.Live
			sum.Joins += s.Joins
			sum.Stalls += s.Stalls
			sum.Failed += s.Failed
			sum.Bytes += s.Bytes
		}
		p.mu.Unlock()
		sum.T = t
		if p.srv != nil {
			sum.CPU, sum.RSS = p.srv.sample(t)
		}
		p.write(sum)
	}
}

func (p *progress) write(s Sample) {
	if p.cfg.Progress == nil {
		return
	}
	now := time.Now()
	if !p.cfg.Terminal && now.Sub(p.lastPlain) < progressEvery {
		return
	}
	p.lastPlain = now
	var b bytes.Buffer
	if p.cfg.Terminal {
		b.WriteString("\r")
	}
	fmt.Fprintf(&b, "%4ds  listeners %d/%d  joins/s %d  stalls %d  failed %d", s.T, s.Live, p.target, s.Joins, s.Stalls, s.Failed)
	if p.srv != nil {
		fmt.Fprintf(&b, "  server cpu %.0f%% rss %.0f MiB", s.CPU, float64(s.RSS)/(1<<20))
	}
	if p.cfg.Terminal {
		b.WriteString("\x1b[K") // clear what a longer previous line left
	} else {
		b.WriteString("\n")
	}
	p.cfg.Progress.Write(b.Bytes())
	p.wrote = true
}

// done ends the progress line.
func (p *progress) done() {
	if p.cfg.Progress != nil && p.cfg.Terminal && p.wrote {
		p.cfg.Progress.Write([]byte("\n"))
	}
}

// procTicks is the unit of /proc/PID/stat's CPU times: USER_HZ, which
// Linux fixes at 100 for user space.
const procTicks = 100

// procStat is a process's CPU time and resident memory.
type procStat struct {
	cpu time.Duration
	rss int64
}

// readProc reads pid's CPU time from /proc/PID/stat and VmRSS from
// /proc/PID/status.
func readProc(pid int) (procStat, error) {
	var st procStat
	dir := "/proc/" + strconv.Itoa(pid) + "/"
	b, err := os.ReadFile(dir + "stat")
	if err != nil {
		return st, fmt.Errorf("load: server process: %w", err)
	}
	// The command name in parentheses may hold spaces: fields are counted
	// after its closing parenthesis, from field 3 (state).
	i := bytes.LastIndexByte(b, ')')
	f := bytes.Fields(b[i+1:])
	if i < 0 || len(f) < 13 {
		return st, fmt.Errorf("load: server process: cannot read %sstat", dir)
	}
	utime, err1 := strconv.ParseInt(string(f[11]), 10, 64)
	stime, err2 := strconv.ParseInt(string(f[12]), 10, 64)
	if err1 != nil || err2 != nil {
		return st, fmt.Errorf("load: server process: cannot read %sstat", dir)
	}
	st.cpu = time.Duration(utime+stime) * time.Second / procTicks
	b, err = os.ReadFile(dir + "status")
	if err != nil {
		return st, fmt.Errorf("load: server process: %w", err)
	}
	for line := range bytes.Lines(b) {
		if v, ok := bytes.CutPrefix(line, []byte("VmRSS:")); ok {
			kb, err := strconv.ParseInt(string(bytes.TrimSuffix(bytes.TrimSpace(v), []byte(" kB"))), 10, 64)
			if err != nil {
				return st, fmt.Errorf("load: server process: VmRSS %q", v)
			}
			st.rss = kb << 10
		}
	}
	return st, nil
}

// serverSampler samples the server process each second of the run.
type serverSampler struct {
	pid    int
	before procStat

	mu     sync.Mutex
	last   procStat
	lastAt time.Time
	points map[int]procPoint
}

type procPoint struct {
	cpu float64 // percent of a core
	rss int64
}

// newServerSampler reads the server's state before the first listener.
func newServerSampler(pid int) (*serverSampler, error) {
	st, err := readProc(pid)
	if err != nil {
		return nil, err
	}
	return &serverSampler{pid: pid, before: st, last: st, lastAt: time.Now(), points: map[int]procPoint{}}, nil
}

// sample reads the server at second t: its CPU use since the last sample,
// in percent of a core, and its RSS. Zeros when it cannot be read.
func (s *serverSampler) sample(t int) (cpu float64, rss int64) {
	st, err := readProc(s.pid)
	if err != nil {
		return 0, 0
	}
	now := time.Now()
	s.mu.Lock()
	defer s.mu.Unlock()
	if dt := now.Sub(s.lastAt); dt > 0 {
		cpu = 100 * float64(st.cpu-s.last.cpu) / float64(dt)
	}
	s.last, s.lastAt = st, now
	s.points[t] = procPoint{cpu: cpu, rss: st.rss}
	return cpu, st.rss
}

// summarize puts the server's samples on rep's timeline and sums up.
func (s *serverSampler) summarize(rep *Report) *Server {
	s.mu.Lock()
	defer s.mu.Unlock()
	end := s.last
	if st, err := readProc(s.pid); err == nil {
		end = st
	}
	out := &Server{PID: s.pid, CPUSeconds: (end.cpu - s.before.cpu).Seconds(), RSSBeforeBytes: s.before.rss, RSSMaxBytes: max(s.before.rss, end.rss)}
	var peakRSS int64
	for i := range rep.Timeline {
		x := &rep.Timeline[i]
		pt, ok := s.points[x.T]
		if !ok {
			continue
		}
		x.CPU, x.RSS = pt.cpu, pt.rss
		out.RSSMaxBytes = max(out.RSSMaxBytes, pt.rss)
		if x.Live > out.PeakListeners {
			out.PeakListeners, peakRSS = x.Live, pt.rss
		}
	}
	if out.PeakListeners > 0 {
		out.RSSPerListener = float64(peakRSS-s.before.rss) / float64(out.PeakListeners)
	}
	return out
}
