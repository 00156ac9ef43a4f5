package client

import (
	"context"
	"fmt"
	"net/http"
	"time"

	"github.com/amphi-audio/amphi"
	"github.com/amphi-audio/amphi/internal/gate"
)

// Admission is a listener's way in: a ticket and the URL to listen with it.
type Admission struct {
	Listener  string
	Ticket    string
	ListenURL string
	// HLSURL is the LL-HLS playlist with the same ticket.
	HLSURL string
	// Waited is the time spent in the waiting room and solving challenges.
	Waited time.Duration
	// Position is the first place the waiting room gave, 0 if none.
	Position int
	// Difficulty is the proof of work solved, 0 if none was asked.
	Difficulty uint8
}

// JoinAnswer is the server's answer to POST /spaces/{id}/join (api.JoinResponse).
type JoinAnswer struct {
	Status     amphi.JoinStatus `json:"status"`
	Listener   string           `json:"listener"`
	Ticket     string           `json:"ticket"`
	ListenURL  string           `json:"listen_url"`
	HLSURL     string           `json:"hls_url"`
	Position   int              `json:"position"`
	ETASeconds float64          `json:"eta_seconds"`
	PollAfter  int64            `json:"poll_after_ms"`
	Challenge  string           `json:"challenge"`
	Difficulty uint8            `json:"difficulty"`
}

// maxJoinSteps bounds the exchanges of one join, so a confused server
// cannot keep a client forever; waiting is bounded by ctx.
const maxJoinSteps = 100000

// Join follows the join flow as a browser does: it solves a proof-of-work
// challenge when asked, waits in the waiting room polling when told to, and
// returns once admitted. onWait, when not nil, sees every waiting answer.
func (c *Client) Join(ctx context.Context, spaceID string, onWait func(position int, eta time.Duration)) (*Admission, error) {
	start := time.Now()
	adm := &Admission{}
	req := map[string]string{}
	for range maxJoinSteps {
		var resp JoinAnswer
		if err := c.do(ctx, http.MethodPost, "/spaces/"+spaceID+"/join", "", req, &resp); err != nil {
			return nil, err
		}
		switch resp.Status {
		case amphi.JoinAdmitted:
			adm.Listener, adm.Ticket, adm.ListenURL, adm.HLSURL = resp.Listener, resp.Ticket, resp.ListenURL, resp.HLSURL
			adm.Waited = time.Since(start)
			return adm, nil
		case amphi.JoinChallenge:
			nonce, err := gate.Solve(ctx, resp.Challenge)
			if err != nil {
				return nil, fmt.Errorf("join: solving the challenge: %w", err)
			}
			adm.Difficulty = resp.Difficulty
			req = map[string]string{"challenge": resp.Challenge, "nonce": nonce}
		case amphi.JoinWaiting:
			if adm.Position == 0 {
				adm.Position = resp.Position
			}
			if onWait != nil {
				onWait(resp.Position, time.Duration(resp.ETASeconds*float64(time.Second)))
			}
			req = map[string]string{"listener": resp.Listener}
			wait := max(time.Duration(resp.PollAfter)*time.Millisecond, 100*time.Millisecond)
			select {
			case <-ctx.Done():
				return nil, ctx.Err()
			case <-time.After(wait):
			}
		default:
			return nil, fmt.Errorf("join: unknown status %q", resp.Status)
		}
	}
	return nil, fmt.Errorf("join: no admission after %d exchanges", maxJoinSteps)
}
