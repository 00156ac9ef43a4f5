package load

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/amphi-audio/amphi"
	"github.com/amphi-audio/amphi/internal/client"
	"github.com/amphi-audio/amphi/internal/feed"
	"github.com/amphi-audio/amphi/internal/latency"
	"github.com/amphi-audio/amphi/internal/tone"
	"github.com/amphi-audio/amphi/internal/wav"
	"github.com/amphi-audio/amphi/internal/whip"
	"gopkg.in/hraban/opus.v2"
)

// Speaker bots' audio when no file is given: a tone per speaker, each its
// own frequency, looped.
const (
	toneBase      = 330.0 // Hz, the first speaker's tone
	toneStep      = 110.0 // Hz between speakers' tones
	toneLevel     = 0.3   // amplitude, of full scale
	toneLength    = 2 * time.Second
	speakBitrate  = 32000
	connectWithin = 15 * time.Second
	// maxOpusPacket bounds one encoded packet (libopus never makes one
	// larger than 1275 bytes per frame).
	maxOpusPacket = 1500
)

// speakerBots are a run's speakers: WHIP sessions looping a file or a tone,
// the first one playing latency marks instead when the run measures
// latency.
type speakerBots struct {
	target    int
	connected atomic.Int64
	failed    atomic.Int64
	packets   atomic.Int64

	cancel   context.CancelFunc
	wg       sync.WaitGroup
	mu       sync.Mutex
	sessions []*whip.Session
	// marker makes the first bot's audio when the run measures latency;
	// nil otherwise.
	marker *latency.Marker
	// sent holds mark k's send time at index k.
	sent []time.Time
}

// startSpeakers connects sc.Speakers bots with token and starts them
// speaking until stop. It returns once each has connected or failed; a bot
// that fails is counted, not an error. ctx bounds the connecting.
func startSpeakers(ctx context.Context, sc Scenario, api *client.Client, token string, logger *slog.Logger) (*speakerBots, error) {
	b := &speakerBots{target: sc.Speakers, cancel: func() {}}
	if sc.Speakers == 0 {
		return b, nil
	}
	if sc.LatencySample > 0 {
		b.marker = latency.NewMarker(markerConfig(&sc))
	}
	var file []feed.Packet
	if sc.SpeakFile != "" {
		var err error
		if file, err = feed.Load(sc.SpeakFile, speakBitrate); err != nil {
			return nil, fmt.Errorf("load: speaker audio: %w", err)
		}
	}
	audio := make([][]feed.Packet, sc.Speakers)
	for i := range audio {
		if i == 0 && b.marker != nil {
			continue // bot 0 plays the marks
		}
		var err error
		if file != nil {
			audio[i] = file
		} else {
			pcm, _ := tone.Sine(make([]int16, int(toneLength/time.Millisecond)*amphi.SampleRate/1000), toneBase+toneStep*float64(i), toneLevel, amphi.SampleRate, 0)
			audio[i], err = feed.Encode(&wav.Audio{SampleRate: amphi.SampleRate, Channels: 1, Samples: pcm}, speakBitrate)
		}
		if err != nil {
			return nil, fmt.Errorf("load: speaker audio: %w", err)
		}
	}
	tokens, err := botTokens(ctx, sc, api, token)
	if err != nil {
		return nil, err
	}
	runCtx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	b.cancel = cancel
	var dial sync.WaitGroup
	for i := range sc.Speakers {
		play := func(ctx context.Context, sess *whip.Session) error {
			return feed.Play(ctx, audio[i], true, func(p feed.Packet) error {
				b.packets.Add(1)
				return sess.WriteOpus(p.Data, p.Duration)
			})
		}
		if i == 0 && b.marker != nil {
			play = b.playMarks
		}
		dial.Go(func() {
			if err := b.speak(ctx, runCtx, api, sc.SpaceID, tokens[i], play, logger); err != nil {
				b.failed.Add(1)
				logger.Warn("load: speaker bot", "n", i, "err", err)
			}
		})
	}
	dial.Wait()
	return b, nil
}

// botTokens gives each bot its own speaker token: a token is one place on
// the stage, so bots sharing one would replace each other. One bot uses
// token as it is; more need token to be the host's, to mint theirs.
func botTokens(ctx context.Context, sc Scenario, api *client.Client, token string) ([]string, error) {
	if sc.Speakers == 1 {
		return []string{token}, nil
	}
	tokens := make([]string, sc.Speakers)
	for i := range tokens {
		t, err := api.MintSpeakerToken(ctx, sc.SpaceID, token)
		if err != nil {
			return nil, fmt.Errorf("load: %d speakers need a token each, minted with the space's host token: %w", sc.Speakers, err)
		}
		tokens[i] = t
	}
	return tokens, nil
}

// speak connects one bot and, once connected, runs play on a goroutine
// until runCtx is done.
func (b *speakerBots) speak(ctx, runCtx context.Context, api *client.Client, space, token string, play func(context.Context, *whip.Session) error, logger *slog.Logger) error {
	sess, err := whip.Dial(ctx, api.WHIPURL(space), token, whip.Config{Slots: -1, HTTPClient: api.HTTP, Logger: logger})
	if err != nil {
		return err
	}
	b.mu.Lock()
	b.sessions = append(b.sessions, sess)
	b.mu.Unlock()
	select {
	case <-sess.Connected():
	case <-time.After(connectWithin):
		return errors.New("load: the speaker's WebRTC connection did not come up")
	case <-ctx.Done():
		return ctx.Err()
	}
	b.connected.Add(1)
	b.wg.Go(func() {
		if err := play(runCtx, sess); err != nil {
			logger.Warn("load: speaker bot stopped", "err", err)
		}
	})
	return nil
}

// playMarks plays the marker's stream on sess in real time until ctx is
// done, encoding each frame as it goes, and records each mark's send time:
// the moment the frame with its first sample is handed to the track.
// Frames are due on an absolute schedule, as feed.Play's packets are, so a
// late wake-up does not delay the frames after it.
func (b *speakerBots) playMarks(ctx context.Context, sess *whip.Session) error {
	enc, err := opus.NewEncoder(amphi.SampleRate, 1, opus.AppAudio)
	if err != nil {
		return fmt.Errorf("load: mark encoder: %w", err)
	}
	if err := enc.SetBitrate(speakBitrate); err != nil {
		return fmt.Errorf("load: mark encoder: %w", err)
	}
	var pcm []int16
	buf := make([]byte, maxOpusPacket)
	sch := feed.NewSchedule()
	defer sch.Stop()
	for i := 0; ; i++ {
		if !sch.Wait(ctx) {
			return nil
		}
		var mark bool
		pcm, _, mark = b.marker.Frame(pcm, i)
		n, err := enc.Encode(pcm, buf)
		if err != nil {
			return fmt.Errorf("load: encoding mark frame %d: %w", i, err)
		}
		// The track may keep the packet (for retransmission), so each
		// gets its own bytes; 50 small allocations a second for one bot.
		pkt := append([]byte(nil), buf[:n]...)
		if mark {
			now := time.Now()
			b.mu.Lock()
			b.sent = append(b.sent, now)
			b.mu.Unlock()
		}
		b.packets.Add(1)
		if err := sess.WriteOpus(pkt, amphi.FrameDuration); err != nil {
			return err
		}
		sch.Advance(amphi.FrameDuration)
	}
}

// sentMarks returns the send time of each mark sent so far, mark k at k.
func (b *speakerBots) sentMarks() []time.Time {
	b.mu.Lock()
	defer b.mu.Unlock()
	return slices.Clone(b.sent)
}

// stop stops the bots and leaves the stage.
func (b *speakerBots) stop() {
	b.cancel()
	b.wg.Wait()
	ctx, cancel := context.WithTimeout(context.Background(), teardownTimeout)
	defer cancel()
	b.mu.Lock()
	defer b.mu.Unlock()
	for _, s := range b.sessions {
		s.Close(ctx)
	}
	b.sessions = nil
}

func (b *speakerBots) counts() SpeakerCounts {
	return SpeakerCounts{
		Target:    b.target,
		Connected: int(b.connected.Load()),
		Failed:    int(b.failed.Load()),
		Packets:   b.packets.Load(),
	}
}
