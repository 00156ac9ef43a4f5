package load

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"time"
)

// Fault is an internal fault a run asks the server to feign, for a
// rehearsal of what /ops says about it (`amphi serve --rehearsal-faults`).
type Fault struct {
	// At is when it is posted, after the start.
	At Duration `json:"at"`
	// Kind is what fails: mixer_stall, slow_disk, recorder_errors or
	// bus_loss (docs/API.md); the server checks it.
	Kind string `json:"kind"`
	// For is how long it lasts. Required.
	For Duration `json:"for"`
	// Delay is how long the server holds each stalled frame or slow write.
	// Zero means the server's default.
	Delay Duration `json:"delay,omitempty"`
}

// PostedFault is a fault of the scenario and when it was posted.
type PostedFault struct {
	Fault
	Posted time.Time `json:"posted"`
}

// maxFaultAnswer bounds what is read of the server's answer to a fault.
const maxFaultAnswer = 4 << 10

// postFault asks the server at ops to feign f from now.
func postFault(ctx context.Context, hc *http.Client, ops string, f Fault) (PostedFault, error) {
	body, err := json.Marshal(struct {
		Kind  string   `json:"kind"`
		For   Duration `json:"for"`
		Delay Duration `json:"delay,omitempty"`
	}{f.Kind, f.For, f.Delay})
	if err != nil {
		return PostedFault{}, err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, ops+"/faults", bytes.NewReader(body))
	if err != nil {
		return PostedFault{}, fmt.Errorf("load: fault %s: %w", f.Kind, err)
	}
	req.Header.Set("Content-Type", "application/json")
	posted := time.Now()
	resp, err := hc.Do(req)
	if err != nil {
		return PostedFault{}, fmt.Errorf("load: fault %s: %w", f.Kind, err)
	}
	defer resp.Body.Close()
	answer, _ := io.ReadAll(io.LimitReader(resp.Body, maxFaultAnswer))
	switch {
	case resp.StatusCode == http.StatusNotFound:
		return PostedFault{}, fmt.Errorf("load: fault %s: %s has no /faults: run the server with --rehearsal-faults", f.Kind, ops)
	case resp.StatusCode != http.StatusOK:
		return PostedFault{}, fmt.Errorf("load: fault %s: %s: %s", f.Kind, resp.Status, bytes.TrimSpace(answer))
	}
	return PostedFault{Fault: f, Posted: posted}, nil
}
