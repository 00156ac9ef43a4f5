package load

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"time"

	"github.com/amphi-audio/amphi"
	"github.com/amphi-audio/amphi/internal/client"
	"github.com/amphi-audio/amphi/internal/gate"
)

// maxJoinSteps bounds one listener's exchanges in the join flow; the
// waiting itself is bounded by the run's duration.
const maxJoinSteps = 10000

// joinFlow follows the join flow on conn as a browser would, on the same
// keep-alive connection the stream then uses: it solves a challenge when
// asked and polls while it waits. It returns the ticket, or "" and the
// outcome of a listener that never got one, with the LL-HLS entry URL
// the admission names (hls_url), which HLS listeners play.
func (r *shareRun) joinFlow(ctx context.Context, conn net.Conn) (ticket, hlsURL string, o outcome) {
	br := bufio.NewReaderSize(conn, 2048)
	var body []byte
	for range maxJoinSteps {
		if err := conn.SetDeadline(time.Now().Add(r.timeout)); err != nil {
			return "", "", outcome{cause: classify(err), err: err}
		}
		req := fmt.Appendf(nil, "POST %s HTTP/1.1\r\nHost: %s\r\nUser-Agent: amphi-load\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s",
			r.join, r.host, len(body), body)
		if _, err := conn.Write(req); err != nil {
			return "", "", r.ended(ctx, outcome{}, err, false)
		}
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			return "", "", r.ended(ctx, outcome{}, err, false)
		}
		raw, err := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
		resp.Body.Close()
		if err != nil {
			return "", "", r.ended(ctx, outcome{}, err, false)
		}
		if resp.StatusCode != http.StatusOK {
			return "", "", outcome{cause: "join_http_" + strconv.Itoa(resp.StatusCode), err: fmt.Errorf("load: join: %s: %s", resp.Status, raw)}
		}
		if resp.Close || br.Buffered() > 0 {
			return "", "", outcome{cause: causeBadResponse, err: errors.New("load: join: the server did not keep the connection for the stream")}
		}
		var a client.JoinAnswer
		if err := json.Unmarshal(raw, &a); err != nil {
			return "", "", outcome{cause: causeBadResponse, err: fmt.Errorf("load: join answer: %w", err)}
		}
		switch a.Status {
		case amphi.JoinAdmitted:
			return a.Ticket, a.HLSURL, outcome{}
		case amphi.JoinChallenge:
			nonce, err := gate.Solve(ctx, a.Challenge)
			if err != nil {
				return "", "", outcome{cause: causeEnded}
			}
			body, _ = json.Marshal(map[string]string{"challenge": a.Challenge, "nonce": nonce})
		case amphi.JoinWaiting:
			body, _ = json.Marshal(map[string]string{"listener": a.Listener})
			select {
			case <-ctx.Done():
				return "", "", outcome{cause: causeEnded}
			case <-time.After(max(time.Duration(a.PollAfter)*time.Millisecond, 100*time.Millisecond)):
			}
		default:
			return "", "", outcome{cause: causeBadResponse, err: fmt.Errorf("load: join status %q", a.Status)}
		}
	}
	return "", "", outcome{cause: causeBadResponse, err: errors.New("load: join: no admission")}
}
