package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"time"

	"github.com/amphi-audio/amphi"
	"github.com/amphi-audio/amphi/internal/bus"
	"github.com/amphi-audio/amphi/internal/load"
)

// maxScenarioFile bounds a scenario file: a few fields of JSON.
const maxScenarioFile = 1 << 20

// loadOutputs are `amphi load`'s flags that are not part of the scenario.
type loadOutputs struct {
	scenario string
	json     string
	chart    string
	quiet    bool
	worker   bool
	// remote is --worker: a long-lived remote worker on --nats.
	remote  bool
	nats    string
	workers int
}

func loadFlags(sc *load.Scenario, o *loadOutputs) *flag.FlagSet {
	fs := flag.NewFlagSet("amphi load", flag.ContinueOnError)
	fs.StringVar(&o.scenario, "scenario", "", "read the scenario from this JSON file; flags override it")
	fs.StringVar(&o.json, "json", "", "write the report as JSON to this file")
	fs.StringVar(&o.chart, "chart", "", "write the report as a self-contained HTML chart to this file")
	fs.BoolVar(&o.quiet, "quiet", false, "no progress line on stderr")
	fs.BoolVar(&o.worker, "worker-stdio", false, "run as a worker process of another amphi load (internal)")
	fs.BoolVar(&o.remote, "worker", false, "run as a remote worker on --nats: take shares of other amphi loads' scenarios, one at a time, until interrupted")
	fs.StringVar(&o.nats, "nats", "", "NATS URL that remote workers and their coordinator meet on; with --workers, run the listeners on remote workers")
	fs.IntVar(&o.workers, "workers", 0, "remote workers (amphi load --worker --nats URL) to split the listeners over; needs --nats")
	fs.StringVar(&sc.Server, "server", sc.Server, "amphi server URL (loopback only)")
	fs.StringVar(&sc.ListenServer, "listen-server", sc.ListenServer, "where listeners join and listen, such as the port edge processes share (default --server)")
	fs.StringVar(&sc.SpaceID, "space", sc.SpaceID, "space to listen to; empty creates one, with a speaker bot, and ends it after")
	fs.StringVar(&sc.Stream, "stream", sc.Stream, "a plain progressive Ogg stream path on --server (an Icecast mount such as /amphi.opus), listened to without the join flow")
	fs.StringVar(&sc.Token, "token", sc.Token, "speaker or host token of --space, for speaker bots")
	fs.IntVar(&sc.Listeners, "listeners", sc.Listeners, "how many listeners join")
	fs.Float64Var(&sc.JoinRate, "rate", sc.JoinRate, "joins per second; 0 is a herd: all at once")
	fs.DurationVar((*time.Duration)(&sc.HerdAt), "herd-at", time.Duration(sc.HerdAt), "when a herd joins, after the start")
	fs.DurationVar((*time.Duration)(&sc.Duration), "duration", time.Duration(sc.Duration), "how long the run lasts (required, at most 1h)")
	fs.DurationVar((*time.Duration)(&sc.Burst), "burst", time.Duration(sc.Burst), "?burst= each listener asks for; 0 is the server's default")
	fs.DurationVar((*time.Duration)(&sc.Flush), "flush", time.Duration(sc.Flush), "?flush= each listener asks for (200ms for low latency); 0 is the server's default, about a second")
	fs.IntVar(&sc.LatencySample, "latency-sample", sc.LatencySample, "listeners (of worker 0's share) that decode and measure mouth-to-ear latency; 0 is none")
	fs.DurationVar((*time.Duration)(&sc.LatencyInterval), "latency-interval", time.Duration(sc.LatencyInterval), "time between latency marks; 0 is 1.02s")
	fs.DurationVar((*time.Duration)(&sc.PlayerBuffer), "buffer", time.Duration(sc.PlayerBuffer), "audio a listener's player buffers before playing")
	fs.IntVar(&sc.Speakers, "speakers", sc.Speakers, "speaker bots over WHIP; -1 is one when the run creates the space, else none")
	fs.StringVar(&sc.SpeakFile, "speak-file", sc.SpeakFile, "WAV or Ogg Opus file the speaker bots loop; empty is a tone")
	fs.IntVar(&sc.Sources, "sources", sc.Sources, "loopback source addresses to rotate over; 0 is one per 10 000 listeners, plus one")
	fs.IntVar(&sc.PerPrefix, "per-prefix", sc.PerPrefix, "listeners that share a /24, each from its own address, before the next /24 (a carrier's NAT); 0 is a new /24 each")
	fs.IntVar(&sc.PerProcess, "per-process", sc.PerProcess, "most listeners in one process; more run in worker processes")
	fs.DurationVar((*time.Duration)(&sc.Timeout), "timeout", time.Duration(sc.Timeout), "a listener's wait for its connection, first audio and each read")
	fs.DurationVar((*time.Duration)(&sc.Resume), "resume", time.Duration(sc.Resume), "how long a listener whose stream breaks asks for it again from where it was (from_seq); negative is never")
	fs.BoolVar(&sc.HLS, "hls", sc.HLS, "listeners play LL-HLS from their hls_url (blocking reloads and parts, as a low-latency player) instead of the Ogg stream")
	fs.IntVar(&sc.PID, "pid", sc.PID, "the server's process id, when local: its CPU and memory are sampled")
	fs.StringVar(&sc.Ops, "ops", sc.Ops, "the server's ops address (loopback only), where the scenario's faults are posted; the server needs --rehearsal-faults")
	return fs
}

// runLoad rehearses a scenario against a server and reports: a progress
// line on stderr, a summary on stdout, and the JSON and chart files asked
// for. With --worker-stdio it is a worker process of another runLoad.
func runLoad(ctx context.Context, args []string, stdout io.Writer) error {
	sc := load.DefaultScenario()
	var o loadOutputs
	if err := parseFlags(loadFlags(&sc, &o), args, 0); err != nil {
		return err
	}
	if o.worker {
		return load.RunWorker(ctx, os.Stdin, stdout)
	}
	logger := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	var nb *bus.Bus
	if o.remote || o.workers != 0 || o.nats != "" {
		switch {
		case o.nats == "":
			return amphi.Errorf(amphi.EInvalid, "load: --worker and --workers need --nats URL")
		case !o.remote && o.workers < 1:
			return amphi.Errorf(amphi.EInvalid, "load: --nats needs --worker, or --workers with 1 or more")
		}
		bc := bus.DefaultConfig()
		bc.URL, bc.Logger = o.nats, logger
		var err error
		if nb, err = bus.Open(ctx, bc); err != nil {
			return fmt.Errorf("load: --nats: %w", err)
		}
		defer nb.Close()
	}
	if o.remote {
		cfg := load.DefaultConfig()
		cfg.Logger, cfg.Progress = logger, stdout
		return load.ServeWorker(ctx, nb, cfg)
	}
	if o.scenario != "" {
		b, err := readLimited(o.scenario, maxScenarioFile)
		if err != nil {
			return fmt.Errorf("load: --scenario: %w", err)
		}
		sc = load.DefaultScenario()
		dec := json.NewDecoder(bytes.NewReader(b))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&sc); err != nil {
			return fmt.Errorf("load: --scenario %s: %w", o.scenario, err)
		}
		// Flags override the file: parse them again over it.
		if err := parseFlags(loadFlags(&sc, &o), args, 0); err != nil {
			return err
		}
	}
	cfg := load.DefaultConfig()
	cfg.Logger = logger
	cfg.Bus, cfg.RemoteWorkers = nb, o.workers
	if !o.quiet {
		cfg.Progress = os.Stderr
		if fi, err := os.Stderr.Stat(); err == nil && fi.Mode()&os.ModeCharDevice != 0 {
			cfg.Terminal = true
		}
	}
	// With remote workers missing, the report of the others is written
	// and the error returned after it.
	rep, runErr := load.Run(ctx, sc, cfg)
	if rep == nil {
		return runErr
	}
	if o.json != "" {
		b, err := json.MarshalIndent(rep, "", "  ")
		if err != nil {
			return fmt.Errorf("load: %w", err)
		}
		if err := os.WriteFile(o.json, append(b, '\n'), 0o644); err != nil {
			return fmt.Errorf("load: --json: %w", err)
		}
	}
	if o.chart != "" {
		var b bytes.Buffer
		if err := load.WriteChart(&b, rep); err != nil {
			return fmt.Errorf("load: chart: %w", err)
		}
		if err := os.WriteFile(o.chart, b.Bytes(), 0o644); err != nil {
			return fmt.Errorf("load: --chart: %w", err)
		}
	}
	return errors.Join(rep.WriteText(stdout), runErr)
}

// readLimited reads a file of at most limit bytes.
func readLimited(path string, limit int64) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, limit+1))
	if err != nil {
		return nil, err
	}
	if int64(len(b)) > limit {
		return nil, fmt.Errorf("%s is over %d bytes", path, limit)
	}
	return b, nil
}
