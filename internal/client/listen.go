package client

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"time"

	"github.com/amphi-audio/amphi"
	"github.com/amphi-audio/amphi/internal/ogg"
	"github.com/amphi-audio/amphi/internal/opuspkt"
)

// ListenOptions tune a listen.
type ListenOptions struct {
	// Burst asks the server for this much audio at once on connect. Zero
	// means the server's default.
	Burst time.Duration
	// Flush asks the server to write at least this often. Zero means 200
	// ms: amphi's own clients want low latency; plain players get the
	// server's default of about a second.
	Flush time.Duration
	// Out receives the stream's bytes as they arrive. Nil means none.
	Out io.Writer
	// OnPacket receives each audio packet (not the headers) with the granule
	// position of the page it ends on. The packet is only valid during the
	// call.
	OnPacket func(pkt []byte, granule int64)
	// Now is the clock. Nil means time.Now.
	Now func() time.Time
}

// ListenStats describe what a listener received.
type ListenStats struct {
	Bytes   int64
	Packets int64
	// Audio is the playable time received.
	Audio time.Duration
	// FirstAudio is the time from the request to the first audio packet.
	FirstAudio time.Duration
	// LongestGap is the longest wall-clock time without new audio after the
	// first packet: what a player with no buffer would hear as silence.
	LongestGap time.Duration
	// Holes counts jumps in the program's timeline (granule positions
	// that do not follow on): audio the listener never received.
	Holes int
	// Ended reports that the stream ended with the program (an EOS page).
	Ended bool
}

// Listen joins a space (Join) and receives its live stream until the
// program ends, ctx is done, or the connection fails; ctx ending is not an
// error.
func (c *Client) Listen(ctx context.Context, spaceID string, opts ListenOptions) (*ListenStats, error) {
	if opts.Now == nil {
		opts.Now = time.Now
	}
	adm, err := c.Join(ctx, spaceID, nil)
	if err != nil {
		return nil, err
	}
	if opts.Flush == 0 {
		opts.Flush = 200 * time.Millisecond
	}
	url := adm.ListenURL + "&flush=" + opts.Flush.String()
	if opts.Burst > 0 {
		url += "&burst=" + opts.Burst.String()
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, err
	}
	start := opts.Now()
	resp, err := c.HTTP.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, ResponseError(resp)
	}
	st := &ListenStats{}
	var body io.Reader = &countingReader{r: resp.Body, n: &st.Bytes}
	if opts.Out != nil {
		body = io.TeeReader(body, opts.Out)
	}
	err = readProgram(ctx, ogg.NewReader(body), st, start, opts)
	if ctx.Err() != nil {
		err = nil
	}
	return st, err
}

// readProgram reads pages rather than packets so it sees the EOS flag. An
// amphi program never splits a packet across pages.
func readProgram(ctx context.Context, rd *ogg.Reader, st *ListenStats, start time.Time, opts ListenOptions) error {
	var (
		headers     int
		last        time.Time
		nextGranule int64 = -1
	)
	for {
		page, err := rd.ReadPage()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("listen: %w", err)
		}
		if headers < 2 { // OpusHead, OpusTags
			if headers == 0 && len(page.Packets) > 0 {
				if _, err := ogg.ParseOpusHead(page.Packets[0]); err != nil {
					return fmt.Errorf("listen: %w", err)
				}
			}
			headers++
			continue
		}
		var samples int64
		for _, pkt := range page.Packets {
			n, ok := opuspkt.Samples(pkt)
			if !ok {
				return fmt.Errorf("listen: packet %d is not Opus", st.Packets)
			}
			samples += int64(n)
		}
		if len(page.Packets) > 0 {
			now := opts.Now()
			if st.Packets == 0 {
				st.FirstAudio = now.Sub(start)
			} else if gap := now.Sub(last); gap > st.LongestGap {
				st.LongestGap = gap
			}
			last = now
			// A page's granule is the end of its last packet.
			if nextGranule >= 0 && page.Granule-samples != nextGranule {
				st.Holes++
			}
			nextGranule = page.Granule
		}
		st.Packets += int64(len(page.Packets))
		st.Audio += time.Duration(samples) * time.Second / amphi.SampleRate
		if opts.OnPacket != nil {
			for _, pkt := range page.Packets {
				opts.OnPacket(pkt, page.Granule)
			}
		}
		if page.Flags&ogg.FlagEOS != 0 {
			st.Ended = true
			return nil
		}
		if ctx.Err() != nil {
			return nil
		}
	}
}

type countingReader struct {
	r io.Reader
	n *int64
}

func (c *countingReader) Read(b []byte) (int, error) {
	n, err := c.r.Read(b)
	*c.n += int64(n)
	return n, err
}
