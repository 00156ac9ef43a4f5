package main

import (
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/amphi-audio/amphi"
	"github.com/amphi-audio/amphi/internal/api"
)

// The internal faults a rehearsal can make every space on air suffer
// (`amphi serve --rehearsal-faults`, POST /faults on the ops address), to
// check that /ops calls them failing_internally.
const (
	// faultMixerStall holds each 20 ms frame for the fault's delay: the
	// mixer falls behind its clock, and catches up once it ends.
	faultMixerStall = "mixer_stall"
	// faultSlowDisk holds each recording write for the delay.
	faultSlowDisk = "slow_disk"
	// faultRecorderErrors fails recording writes and syncs as a full disk
	// does: the recordings of the spaces on air stop for good.
	faultRecorderErrors = "recorder_errors"
	// faultBusLoss drops every chunk published, as a partition would.
	faultBusLoss = "bus_loss"
)

// Bounds on a fault: a rehearsal's, never a lasting one.
const (
	defaultFaultDelay = 250 * time.Millisecond
	maxFaultFor       = 10 * time.Minute
	maxFaultDelay     = 5 * time.Second
	maxFaultBody      = 4 << 10
)

// errInjectedDisk is what a recorder_errors fault makes the disk answer.
var errInjectedDisk = fmt.Errorf("rehearsal fault: %w", syscall.ENOSPC)

// faults is the switch behind the knobs installed by --rehearsal-faults:
// the knobs of every mixer, recorder and the bus read it on each frame,
// write and publish, so a fault reaches the spaces on air and the ones
// started while it lasts, and clears itself when its time is up.
type faults struct {
	logger *slog.Logger
	kinds  map[string]*fault // fixed by newFaults: read without a lock
}

// fault is one kind's state.
type fault struct {
	until atomic.Int64 // Unix ns it ends at; 0 when it never was on
	delay atomic.Int64 // ns
}

func newFaults(logger *slog.Logger) *faults {
	f := &faults{logger: logger, kinds: make(map[string]*fault)}
	for _, k := range []string{faultMixerStall, faultSlowDisk, faultRecorderErrors, faultBusLoss} {
		f.kinds[k] = new(fault)
	}
	return f
}

// on returns whether the fault of kind is on, and its delay.
func (f *faults) on(kind string) (time.Duration, bool) {
	k := f.kinds[kind]
	// The common case, no fault ever posted, costs one atomic load.
	if u := k.until.Load(); u == 0 || time.Now().UnixNano() >= u {
		return 0, false
	}
	return time.Duration(k.delay.Load()), true
}

// hold sleeps for the delay of kind while it is on.
func (f *faults) hold(kind string) {
	if d, ok := f.on(kind); ok {
		time.Sleep(d)
	}
}

// install points the knobs of cfg's mixers, recorders and bus at f,
// replacing any set before.
func (f *faults) install(cfg *Config) {
	cfg.Live.Mix.Knobs.BeforeFrame = func(uint64) { f.hold(faultMixerStall) }
	cfg.Live.Record.Knobs.Write = func() error {
		f.hold(faultSlowDisk)
		return f.diskError()
	}
	cfg.Live.Record.Knobs.Sync = f.diskError
	cfg.Bus.Knobs.Partition = func(string) bool {
		_, ok := f.on(faultBusLoss)
		return ok
	}
}

func (f *faults) diskError() error {
	if _, ok := f.on(faultRecorderErrors); ok {
		return errInjectedDisk
	}
	return nil
}

// clear ends every fault at once, so that shutting down is not held.
func (f *faults) clear() {
	for _, k := range f.kinds {
		k.until.Store(0)
	}
}

// faultRequest is POST /faults's body.
type faultRequest struct {
	Kind  string `json:"kind"`
	For   string `json:"for"`
	Delay string `json:"delay,omitempty"`
}

// ServeHTTP handles POST /faults: {"kind": "mixer_stall", "for": "10s",
// "delay": "300ms"} turns the fault on from now for that long (again from
// now if it was on) and answers when it ends.
func (f *faults) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	var req faultRequest
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, maxFaultBody))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil {
		writeFaultError(w, amphi.Errorf(amphi.EInvalid, "a fault is {\"kind\": …, \"for\": \"10s\", \"delay\": \"300ms\"}: %v", err))
		return
	}
	k, ok := f.kinds[req.Kind]
	if !ok {
		writeFaultError(w, amphi.Errorf(amphi.EInvalid, "kind %q: want %s, %s, %s or %s", req.Kind, faultMixerStall, faultSlowDisk, faultRecorderErrors, faultBusLoss))
		return
	}
	span, err := time.ParseDuration(req.For)
	if err != nil || span <= 0 || span > maxFaultFor {
		writeFaultError(w, amphi.Errorf(amphi.EInvalid, "for %q: want a duration above 0 and at most %v", req.For, maxFaultFor))
		return
	}
	delay := defaultFaultDelay
	if req.Delay != "" {
		if delay, err = time.ParseDuration(req.Delay); err != nil || delay < 0 || delay > maxFaultDelay {
			writeFaultError(w, amphi.Errorf(amphi.EInvalid, "delay %q: want a duration from 0 to %v", req.Delay, maxFaultDelay))
			return
		}
	}
	until := time.Now().Add(span)
	k.delay.Store(int64(delay))
	k.until.Store(until.UnixNano())
	f.logger.Warn("rehearsal fault on", "kind", req.Kind, "for", span, "delay", delay)
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(struct {
		Kind  string    `json:"kind"`
		Until time.Time `json:"until"`
	}{req.Kind, until})
}

// writeFaultError answers err in the API's error shape (docs/API.md).
func writeFaultError(w http.ResponseWriter, err error) {
	var body struct {
		Error struct {
			Code    string `json:"code"`
			Message string `json:"message"`
		} `json:"error"`
	}
	body.Error.Code, body.Error.Message = amphi.ErrorCode(err), amphi.ErrorMessage(err)
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(api.StatusCode(body.Error.Code))
	json.NewEncoder(w).Encode(&body)
}
