package load

// Remote workers: a rehearsal bigger than one machine runs its listeners in
// worker processes on other machines (`amphi load --worker --nats URL`),
// coordinated over the bus. The coordinator (Run with Config.Bus) offers
// each share on WorkSubject as a request; one idle worker of WorkQueue takes
// it, runs RunShare as a local worker process would, and publishes its
// per-second samples and its report as the same JSON lines on the share's
// own subject. A worker runs one share at a time: it is a process's worth
// of listeners.

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/amphi-audio/amphi"
	"github.com/amphi-audio/amphi/internal/bus"
)

const (
	// WorkSubject is the subject coordinators offer shares to remote
	// workers on.
	WorkSubject = "amphi.load.work"
	// WorkQueue is the queue remote workers share WorkSubject in, so each
	// offer goes to one of them.
	WorkQueue = "workers"
	// runSubjects prefixes the subjects of one run's shares; a worker
	// publishes nowhere else.
	runSubjects = "amphi.load.run."
	// remoteLead is how far ahead of the start shares are offered to remote
	// workers: time for offers to a busy worker to be retried elsewhere.
	remoteLead = 3 * time.Second
	// offerTimeout bounds one offer; offerRetry is the pause before the
	// next, when no worker took it.
	offerTimeout = time.Second
	offerRetry   = 100 * time.Millisecond
	// reportGrace is how long after a share's end the coordinator waits for
	// its report before counting its worker missing.
	reportGrace = 30 * time.Second
	// cancelGrace is how long a cancelled coordinator waits for the reports
	// of the shares it told to stop.
	cancelGrace = 5 * time.Second
	// maxShareAhead is how far in the future a worker accepts a share's
	// start: further is a mistake or a stale clock.
	maxShareAhead = time.Minute
	// flushTimeout bounds a worker's wait for its last lines to leave.
	flushTimeout = 10 * time.Second
)

// remoteShare is the offer of a share to a remote worker.
type remoteShare struct {
	Share Share `json:"share"`
	// Lines is the subject the worker publishes its workerLines on.
	Lines string `json:"lines"`
	// Cancel is the subject on which the coordinator stops the share early.
	Cancel string `json:"cancel"`
}

// offerAnswer is a worker's answer to an offer: exactly one field is set.
type offerAnswer struct {
	Accepted bool   `json:"accepted,omitempty"`
	Busy     bool   `json:"busy,omitempty"`
	Error    string `json:"error,omitempty"`
}

// newRunID returns a random id for a run's subjects.
func newRunID() string {
	b := make([]byte, 8)
	rand.Read(b)
	return hex.EncodeToString(b)
}

// runRemoteShare offers a share to the remote workers and returns its
// report, calling onSample with its samples as they come. Its errors say
// why the share's worker is missing from the run.
func runRemoteShare(ctx context.Context, b *bus.Bus, runID string, sh Share, onSample func(Sample)) (*Report, error) {
	base := runSubjects + runID + "." + strconv.Itoa(sh.Worker)
	msg := remoteShare{Share: sh, Lines: base + ".lines", Cancel: base + ".cancel"}
	done := make(chan workerLine, 1)
	finish := func(l workerLine) {
		select {
		case done <- l:
		default: // a duplicate report: the first one counts
		}
	}
	sub, err := b.Subscribe(msg.Lines, func(data []byte) {
		var l workerLine
		if err := json.Unmarshal(data, &l); err != nil {
			finish(workerLine{Error: fmt.Sprintf("wrote %.100q: %v", data, err)})
			return
		}
		if l.Sample != nil {
			onSample(*l.Sample)
			return
		}
		finish(l)
	})
	if err != nil {
		return nil, fmt.Errorf("load: remote worker %d: %w", sh.Worker, err)
	}
	defer sub.Close()
	if err := offerShare(ctx, b, msg); err != nil {
		return nil, err
	}
	result := func(l workerLine) (*Report, error) {
		if l.Report != nil {
			return l.Report, nil
		}
		return nil, fmt.Errorf("load: remote worker %d: %s", sh.Worker, l.Error)
	}
	wait := time.NewTimer(time.Until(sh.Start.Add(time.Duration(sh.Scenario.Duration) + reportGrace)))
	defer wait.Stop()
	select {
	case l := <-done:
		return result(l)
	case <-wait.C:
		b.Publish(msg.Cancel, nil)
		return nil, fmt.Errorf("load: remote worker %d sent no report within %v of the end", sh.Worker, reportGrace)
	case <-ctx.Done():
	}
	// Stopped early: the worker stops too and sends what it has.
	b.Publish(msg.Cancel, nil)
	select {
	case l := <-done:
		return result(l)
	case <-time.After(cancelGrace):
		return nil, fmt.Errorf("load: remote worker %d: %w", sh.Worker, ctx.Err())
	}
}

// offerShare offers the share on WorkSubject until a worker takes it, and
// fails if none has by the share's start.
func offerShare(ctx context.Context, b *bus.Bus, msg remoteShare) error {
	data, err := json.Marshal(msg)
	if err != nil {
		return fmt.Errorf("load: share %d: %w", msg.Share.Worker, err)
	}
	ctx, cancel := context.WithDeadline(ctx, msg.Share.Start)
	defer cancel()
	retry := time.NewTimer(0)
	defer retry.Stop()
	last := errors.New("not offered")
	for {
		octx, ocancel := context.WithTimeout(ctx, offerTimeout)
		ans, err := b.Request(octx, WorkSubject, data)
		ocancel()
		var a offerAnswer
		switch {
		case err != nil:
			last = err
		case json.Unmarshal(ans, &a) != nil:
			last = fmt.Errorf("a worker answered %.100q", ans)
		case a.Accepted:
			return nil
		case a.Error != "":
			return fmt.Errorf("load: a remote worker refused share %d: %s", msg.Share.Worker, a.Error)
		default:
			last = errors.New("the worker asked was busy")
		}
		retry.Reset(offerRetry)
		select {
		case <-ctx.Done():
			return fmt.Errorf("load: no remote worker took share %d by its start: %w", msg.Share.Worker, last)
		case <-retry.C:
		}
	}
}

// ServeWorker is a remote worker: it takes shares offered on WorkSubject
// over b, one at a time, runs each with RunShare and publishes its samples
// and report to the coordinator, until ctx is done. It runs only shares
// whose scenario passes Normalize, which keeps every target on loopback.
// cfg.Progress, when set, gets a line when the worker waits for a share and
// when it takes and ends one.
func ServeWorker(ctx context.Context, b *bus.Bus, cfg Config) error {
	if cfg.Logger == nil {
		cfg.Logger = DefaultConfig().Logger
	}
	say := func(format string, args ...any) {
		if cfg.Progress != nil {
			fmt.Fprintf(cfg.Progress, "amphi load worker: "+format+"\n", args...)
		}
	}
	for {
		jobs := make(chan remoteShare, 1)
		taken := false // only the subscription's goroutine uses it
		sub, err := b.QueueSubscribe(WorkSubject, WorkQueue, func(data []byte, reply string) {
			var ans offerAnswer
			msg, err := acceptShare(data, time.Now())
			switch {
			case err != nil:
				ans.Error = err.Error()
			case taken:
				ans.Busy = true
			default:
				taken = true
				jobs <- msg
				ans.Accepted = true
			}
			if reply == "" {
				return
			}
			a, _ := json.Marshal(ans)
			if err := b.Publish(reply, a); err != nil {
				cfg.Logger.Warn("load: answering an offer", "err", err)
			}
		})
		if err != nil {
			return fmt.Errorf("load: worker: %w", err)
		}
		// The subscription reaches the server before the worker says it
		// waits.
		fctx, fcancel := context.WithTimeout(ctx, flushTimeout)
		err = b.Flush(fctx)
		fcancel()
		if err != nil {
			sub.Close()
			if ctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("load: worker: %w", err)
		}
		say("waiting for a share on %s", WorkSubject)
		var msg remoteShare
		select {
		case <-ctx.Done():
			sub.Close()
			return nil
		case msg = <-jobs:
		}
		// No more offers while this one runs: they go to idle workers.
		sub.Close()
		say("share %d of %d: %d listeners from %s", msg.Share.Worker, msg.Share.Workers, msg.Share.count(), msg.Share.Start.Format(time.RFC3339))
		serveShare(ctx, b, msg, cfg)
		say("share %d of %d done", msg.Share.Worker, msg.Share.Workers)
	}
}

// serveShare runs an accepted share and publishes its lines.
func serveShare(ctx context.Context, b *bus.Bus, msg remoteShare, cfg Config) {
	sh := msg.Share
	ctx, cancel := context.WithDeadline(ctx, sh.Start.Add(time.Duration(sh.Scenario.Duration)+teardownTimeout))
	defer cancel()
	if stop, err := b.Subscribe(msg.Cancel, func([]byte) { cancel() }); err != nil {
		cfg.Logger.Warn("load: worker: the share cannot be cancelled", "err", err)
	} else {
		defer stop.Close()
	}
	publish := func(l workerLine) error {
		data, err := json.Marshal(l)
		if err != nil {
			return err
		}
		return b.Publish(msg.Lines, data)
	}
	rep, err := RunShare(ctx, sh, func(s Sample) {
		if err := publish(workerLine{Sample: &s}); err != nil {
			cfg.Logger.Warn("load: worker: sending a sample", "err", err)
		}
	})
	if err == nil {
		// A report over the bus's payload limit fails here: say so instead.
		err = publish(workerLine{Report: rep})
	}
	if err != nil {
		if perr := publish(workerLine{Error: err.Error()}); perr != nil {
			cfg.Logger.Warn("load: worker: sending the share's error", "err", perr, "share_err", err)
		}
	}
	fctx, fcancel := context.WithTimeout(context.WithoutCancel(ctx), flushTimeout)
	defer fcancel()
	if err := b.Flush(fctx); err != nil {
		cfg.Logger.Warn("load: worker: flushing the share's report", "err", err)
	}
}

// acceptShare reads and checks an offered share. A worker runs what anyone
// on the bus sends it, so it checks the scenario itself: its targets must
// be on loopback, its bounds those of any scenario, and its subjects the
// run's own.
func acceptShare(data []byte, now time.Time) (remoteShare, error) {
	var msg remoteShare
	if err := json.Unmarshal(data, &msg); err != nil {
		return msg, amphi.Errorf(amphi.EInvalid, "load: an offered share: %v", err)
	}
	sh := &msg.Share
	for _, s := range []string{msg.Lines, msg.Cancel} {
		if !strings.HasPrefix(s, runSubjects) || strings.ContainsAny(s, "*> \t\r\n") || len(s) > 128 {
			return msg, amphi.Errorf(amphi.EInvalid, "load: an offered share's subject %.130q is not a run's", s)
		}
	}
	if sh.Workers < 1 || sh.Workers > MaxWorkers || sh.Worker < 0 || sh.Worker >= sh.Workers {
		return msg, amphi.Errorf(amphi.EInvalid, "load: share %d of %d is not a share", sh.Worker, sh.Workers)
	}
	if err := sh.Scenario.Normalize(); err != nil {
		return msg, err
	}
	if sh.Scenario.SpaceID == "" && sh.Scenario.Stream == "" {
		return msg, amphi.Errorf(amphi.EInvalid, "load: an offered share names no space or stream")
	}
	// The coordinator runs the speakers and the attacks.
	sh.Scenario.Speakers, sh.Scenario.Token, sh.Scenario.Attacks = 0, "", nil
	if c := sh.count(); c > sh.Scenario.PerProcess {
		return msg, amphi.Errorf(amphi.EInvalid, "load: share %d holds %d listeners, more than %d per process", sh.Worker, c, sh.Scenario.PerProcess)
	}
	if sh.Start.After(now.Add(maxShareAhead)) || now.After(sh.Start.Add(time.Duration(sh.Scenario.Duration))) {
		return msg, amphi.Errorf(amphi.EInvalid, "load: share %d starts at %v, not within %v of %v", sh.Worker, sh.Start, maxShareAhead, now)
	}
	return msg, nil
}
