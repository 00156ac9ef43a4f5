package load

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"os/exec"
	"slices"
	"sync"
	"time"

	"github.com/amphi-audio/amphi"
	"github.com/amphi-audio/amphi/internal/attack"
	"github.com/amphi-audio/amphi/internal/bus"
	"github.com/amphi-audio/amphi/internal/client"
	"github.com/amphi-audio/amphi/internal/loopnet"
)

// Bounds on the parts of a run around its listening phase.
const (
	// setupTimeout bounds creating the space and connecting the speakers.
	setupTimeout = 30 * time.Second
	// teardownTimeout bounds ending the space, stopping the speakers and
	// waiting for worker processes after the listening phase.
	teardownTimeout = 30 * time.Second
	// workerLead is how far ahead of the start worker processes are given
	// their share, so they are running when it begins.
	workerLead = time.Second
	// maxWorkerLine bounds one JSON line from a worker: a report with an
	// hour of samples is a few hundred KiB.
	maxWorkerLine = 16 << 20
	// progressEvery is how often a plain (non-terminal) progress line is
	// written.
	progressEvery = 5 * time.Second
)

// Config is how Run runs, as opposed to what it rehearses (the Scenario).
type Config struct {
	// Progress receives one progress line a second. Nil means none.
	Progress io.Writer
	// Terminal says Progress is a terminal: the line is rewritten in place
	// each second. False means a plain line every 5 s.
	Terminal bool
	// WorkerCommand returns the command of one worker process, which runs
	// RunWorker on its stdin and stdout. Nil means this executable with the
	// arguments "load --worker-stdio".
	WorkerCommand func(ctx context.Context) (*exec.Cmd, error)
	// Logger receives the speaker bots' and workers' events. Nil means
	// slog.Default().
	Logger *slog.Logger
	// Bus, when set, runs the listeners in RemoteWorkers remote workers
	// (ServeWorker, `amphi load --worker --nats URL`) reached over it,
	// instead of this process and its worker processes. Nil means local.
	Bus *bus.Bus
	// RemoteWorkers is how many shares the listeners are split into for
	// remote workers, when Bus is set. Zero means 1.
	RemoteWorkers int
}

// DefaultConfig returns the Config Run uses for zero fields.
func DefaultConfig() Config {
	return Config{WorkerCommand: selfWorker, Logger: slog.Default()}
}

// selfWorker runs this executable as a worker.
func selfWorker(ctx context.Context) (*exec.Cmd, error) {
	exe, err := os.Executable()
	if err != nil {
		return nil, fmt.Errorf("load: finding the worker executable: %w", err)
	}
	cmd := exec.CommandContext(ctx, exe, "load", "--worker-stdio")
	cmd.Stderr = os.Stderr
	return cmd, nil
}

// workerLine is one line a worker writes: a sample, its report, or the
// error that stopped it.
type workerLine struct {
	Sample *Sample `json:"sample,omitempty"`
	Report *Report `json:"report,omitempty"`
	Error  string  `json:"error,omitempty"`
}

// Run runs the scenario and returns its report. Listener failures are in
// the report; errors are for a scenario that cannot run at all. With remote
// workers (Config.Bus), a report and an error together mean some workers'
// shares are missing from the report (Report.MissingWorkers); the error
// says why.
func Run(ctx context.Context, sc Scenario, cfg Config) (*Report, error) {
	def := DefaultConfig()
	if cfg.WorkerCommand == nil {
		cfg.WorkerCommand = def.WorkerCommand
	}
	if cfg.Logger == nil {
		cfg.Logger = def.Logger
	}
	if err := sc.Normalize(); err != nil {
		return nil, err
	}
	// Shares run no speakers (this process does), so this is checked here
	// rather than in Normalize, which shares run too.
	if sc.LatencySample > 0 && sc.Speakers == 0 {
		return nil, amphi.Errorf(amphi.EInvalid, "load: measuring latency needs a speaker bot to send the marks: speakers 1 or more, in an amphi space")
	}
	workers := max(sc.Workers(), 1)
	if cfg.Bus != nil {
		workers = max(cfg.RemoteWorkers, 1)
		if workers > MaxWorkers {
			return nil, amphi.Errorf(amphi.EInvalid, "load: %d remote workers: at most %d", workers, MaxWorkers)
		}
		if per := (sc.Listeners + workers - 1) / workers; per > sc.PerProcess {
			return nil, amphi.Errorf(amphi.EInvalid, "load: %d listeners over %d remote workers is %d each, more than %d per process", sc.Listeners, workers, per, sc.PerProcess)
		}
	}
	ctx, cancel := context.WithTimeout(ctx, setupTimeout+time.Duration(sc.Duration)+teardownTimeout)
	defer cancel()

	hc := &http.Client{
		Transport: &http.Transport{DialContext: (&loopnet.Dialer{Sources: 1}).DialContext},
		Timeout:   setupTimeout,
	}
	defer hc.CloseIdleConnections()
	api := client.New(sc.Server)
	api.HTTP = hc

	rep := &Report{Scenario: sc, Workers: sc.Workers()}
	if cfg.Bus != nil {
		rep.Workers = workers
	}
	rep.Scenario.Token = "" // reports get shared; tokens should not be
	rep.Listeners.Target = sc.Listeners
	rep.Speakers.Target = sc.Speakers

	setup, cancelSetup := context.WithTimeout(ctx, setupTimeout)
	defer cancelSetup()
	token := sc.Token
	if sc.SpaceID == "" && sc.Stream == "" {
		sp, err := api.Create(setup, "amphi load rehearsal", nil)
		if err != nil {
			return nil, fmt.Errorf("load: creating a space: %w", err)
		}
		sc.SpaceID, token = sp.ID, sp.HostToken
		defer func() {
			endCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), teardownTimeout)
			defer cancel()
			if _, err := api.End(endCtx, sp.ID, sp.HostToken); err != nil {
				cfg.Logger.Warn("load: ending the rehearsal space", "space", sp.ID, "err", err)
			}
		}()
	}
	rep.SpaceID = sc.SpaceID

	spk, err := startSpeakers(setup, sc, api, token, cfg.Logger)
	if err != nil {
		return nil, err
	}
	defer spk.stop()
	cancelSetup()

	var srv *serverSampler
	if sc.PID > 0 {
		if srv, err = newServerSampler(sc.PID); err != nil {
			return nil, err
		}
	}

	lead := time.Duration(0)
	switch {
	case cfg.Bus != nil:
		lead = remoteLead
	case sc.Workers() > 0:
		lead = workerLead
	}
	runID := newRunID()
	start := time.Now().Add(lead)
	rep.Started = start
	prog := newProgress(cfg, sc, workers, start, srv)
	progCtx, stopProgress := context.WithCancel(ctx)
	var progWG sync.WaitGroup
	progWG.Go(func() { prog.run(progCtx) })

	shares := make([]*Report, workers)
	errs := make([]error, workers)
	var wg sync.WaitGroup
	for w := range workers {
		sh := Share{Scenario: sc, Worker: w, Workers: workers, Start: start}
		// This process runs the speakers and the attacks, and posts the
		// faults.
		sh.Scenario.Speakers, sh.Scenario.Token, sh.Scenario.Attacks, sh.Scenario.Faults = 0, "", nil, nil
		onSample := func(s Sample) { prog.update(w, s) }
		wg.Go(func() {
			switch {
			case cfg.Bus != nil:
				shares[w], errs[w] = runRemoteShare(ctx, cfg.Bus, runID, sh, onSample)
			case sc.Workers() == 0:
				shares[w], errs[w] = RunShare(ctx, sh, onSample)
			default:
				shares[w], errs[w] = runWorkerProcess(ctx, cfg, sh, onSample)
			}
		})
	}
	attacks := make([]attack.Stats, len(sc.Attacks))
	attackErrs := make([]error, len(sc.Attacks))
	for i, a := range sc.Attacks {
		wg.Go(func() {
			select {
			case <-time.After(time.Until(start)):
			case <-ctx.Done():
			}
			attacks[i], attackErrs[i] = attack.Run(ctx, a)
			if attackErrs[i] != nil {
				attackErrs[i] = fmt.Errorf("load: attack %d: %w", i, attackErrs[i])
			}
		})
	}
	faults := make([]PostedFault, len(sc.Faults))
	faultErrs := make([]error, len(sc.Faults))
	for i, f := range sc.Faults {
		wg.Go(func() {
			select {
			case <-time.After(time.Until(start.Add(time.Duration(f.At)))):
				faults[i], faultErrs[i] = postFault(ctx, hc, sc.Ops, f)
			case <-ctx.Done():
				faultErrs[i] = ctx.Err()
			}
		})
	}
	wg.Wait()
	stopProgress()
	progWG.Wait()
	prog.done()
	// A remote worker can be gone, or its machine slow: the run reports
	// what the others did, and which are missing.
	var missing []error
	if cfg.Bus != nil {
		for w, err := range errs {
			if err != nil {
				rep.MissingWorkers = append(rep.MissingWorkers, w)
				missing = append(missing, err)
				errs[w] = nil
			}
		}
	}
	if err := errors.Join(slices.Concat(errs, attackErrs, faultErrs)...); err != nil {
		return nil, err
	}
	for _, s := range shares {
		if s != nil {
			rep.Merge(s)
		}
	}
	if sc.LatencySample > 0 {
		rep.measureLatency(&sc, spk.sentMarks(), start)
	}
	rep.Speakers = spk.counts()
	rep.Attacks = attacks
	if len(faults) > 0 {
		rep.Faults = faults
	}
	if srv != nil {
		rep.Server = srv.summarize(rep)
	}
	rep.summarize()
	if len(missing) > 0 {
		return rep, fmt.Errorf("load: %d of %d remote workers missing from the report: %w", len(missing), workers, errors.Join(missing...))
	}
	return rep, nil
}

// runWorkerProcess runs a share in a worker process and returns its report.
func runWorkerProcess(ctx context.Context, cfg Config, sh Share, onSample func(Sample)) (*Report, error) {
	cmd, err := cfg.WorkerCommand(ctx)
	if err != nil {
		return nil, err
	}
	in, err := cmd.StdinPipe()
	if err != nil {
		return nil, fmt.Errorf("load: worker %d: %w", sh.Worker, err)
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		return nil, fmt.Errorf("load: worker %d: %w", sh.Worker, err)
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("load: starting worker %d: %w", sh.Worker, err)
	}
	// stdin stays open while the worker runs: its closing tells the worker
	// to stop, should this process go away.
	defer in.Close()
	if err := json.NewEncoder(in).Encode(sh); err != nil {
		cmd.Process.Kill()
		cmd.Wait()
		return nil, fmt.Errorf("load: worker %d: sending its share: %w", sh.Worker, err)
	}
	var rep *Report
	var werr error
	sc := bufio.NewScanner(out)
	sc.Buffer(make([]byte, 64<<10), maxWorkerLine)
	for sc.Scan() {
		var l workerLine
		if err := json.Unmarshal(sc.Bytes(), &l); err != nil {
			werr = fmt.Errorf("load: worker %d wrote %.100q: %w", sh.Worker, sc.Bytes(), err)
			break
		}
		switch {
		case l.Sample != nil:
			onSample(*l.Sample)
		case l.Report != nil:
			rep = l.Report
		case l.Error != "":
			werr = fmt.Errorf("load: worker %d: %s", sh.Worker, l.Error)
		}
	}
	in.Close()
	if werr != nil {
		cmd.Process.Kill()
	}
	io.Copy(io.Discard, out)
	if err := cmd.Wait(); err != nil && werr == nil && rep == nil {
		werr = fmt.Errorf("load: worker %d: %w", sh.Worker, err)
	}
	if werr == nil && rep == nil {
		werr = fmt.Errorf("load: worker %d ended without a report", sh.Worker)
	}
	return rep, werr
}

// RunWorker is a worker process's side of Run: it reads its Share as JSON
// from stdin, runs it, and writes JSON lines to stdout: a sample each
// second, then the report (or the error). It stops early when stdin
// closes, as it does when the coordinating process goes away.
func RunWorker(ctx context.Context, stdin io.Reader, stdout io.Writer) error {
	var sh Share
	dec := json.NewDecoder(stdin)
	if err := dec.Decode(&sh); err != nil {
		return fmt.Errorf("load: reading the worker's share: %w", err)
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	// The goroutine ends when stdin does, at the latest when the process
	// exits: a worker is its own process.
	go func() {
		io.Copy(io.Discard, io.MultiReader(dec.Buffered(), stdin))
		cancel()
	}()
	enc := json.NewEncoder(stdout)
	rep, err := RunShare(ctx, sh, func(s Sample) { enc.Encode(workerLine{Sample: &s}) })
	if err != nil {
		enc.Encode(workerLine{Error: err.Error()})
		return err
	}
	return enc.Encode(workerLine{Report: rep})
}
