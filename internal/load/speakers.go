package load

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/amphi-audio/amphi/internal/client"
	"github.com/amphi-audio/amphi/internal/feed"
	"github.com/amphi-audio/amphi/internal/tone"
	"github.com/amphi-audio/amphi/internal/wav"
	"github.com/amphi-audio/amphi/internal/whip"
)

// Speaker bots' audio when no file is given: a tone per speaker, each its
// own frequency, looped.
const (
	toneBase      = 330.0 // Hz, the first speaker's tone
	toneStep      = 110.0 // Hz between speakers' tones
	toneLevel     = 0.3   // amplitude, of full scale
	toneLength    = 2 * time.Second
	speakBitrate  = 32000
	speakerRate   = 48000
	connectWithin = 15 * time.Second
)

// speakerBots are a run's speakers: WHIP sessions looping a file or a tone.
type speakerBots struct {
	target    int
	connected atomic.Int64
	failed    atomic.Int64
	packets   atomic.Int64

	cancel   context.CancelFunc
	wg       sync.WaitGroup
	mu       sync.Mutex
	sessions []*whip.Session
}

// startSpeakers connects sc.Speakers bots with token and starts them
// speaking until stop. It returns once each has connected or failed; a bot
// that fails is counted, not an error. ctx bounds the connecting.
func startSpeakers(ctx context.Context, sc Scenario, api *client.Client, token string, logger *slog.Logger) (*speakerBots, error) {
	b := &speakerBots{target: sc.Speakers, cancel: func() {}}
	if sc.Speakers == 0 {
		return b, nil
	}
	audio := make([][]feed.Packet, sc.Speakers)
	for i := range audio {
		var err error
		if sc.SpeakFile != "" {
			if i == 0 {
				audio[i], err = feed.Load(sc.SpeakFile, speakBitrate)
			} else {
				audio[i] = audio[0]
			}
		} else {
			pcm, _ := tone.Sine(make([]int16, int(toneLength/time.Millisecond)*speakerRate/1000), toneBase+toneStep*float64(i), toneLevel, speakerRate, 0)
			audio[i], err = feed.Encode(&wav.Audio{SampleRate: speakerRate, Channels: 1, Samples: pcm}, speakBitrate)
		}
		if err != nil {
			return nil, fmt.Errorf("load: speaker audio: %w", err)
		}
	}
	runCtx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	b.cancel = cancel
	var dial sync.WaitGroup
	for i := range sc.Speakers {
		dial.Go(func() {
			if err := b.speak(ctx, runCtx, api, sc.SpaceID, token, audio[i], logger); err != nil {
				b.failed.Add(1)
				logger.Warn("load: speaker bot", "n", i, "err", err)
			}
		})
	}
	dial.Wait()
	return b, nil
}

// speak connects one bot and, once connected, plays pkts in a loop on a
// goroutine until runCtx is done.
func (b *speakerBots) speak(ctx, runCtx context.Context, api *client.Client, space, token string, pkts []feed.Packet, logger *slog.Logger) error {
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
		err := feed.Play(runCtx, pkts, true, func(p feed.Packet) error {
			b.packets.Add(1)
			return sess.WriteOpus(p.Data, p.Duration)
		})
		if err != nil {
			logger.Warn("load: speaker bot stopped", "err", err)
		}
	})
	return nil
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
