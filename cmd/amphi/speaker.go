package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"sync/atomic"
	"time"

	"github.com/pion/webrtc/v4"

	"github.com/amphi-audio/amphi/internal/feed"
	"github.com/amphi-audio/amphi/internal/whip"
)

// The speaker's backoff between dials: from a quarter second, so a server
// restarting (a few seconds) is found soon after it is back, doubling up to
// 5 s, so a server that is gone for long is not hammered.
const (
	firstRedial = 250 * time.Millisecond
	maxRedial   = 5 * time.Second
	// boundedDials is how many dials in a row `amphi speak` without --loop
	// tries before giving up: about 25 s of backoff.
	boundedDials = 9
)

// The speaker's ICE timeouts: it notices a server gone (killed, restarted)
// once nothing has come from it for 2 s (ICE calls the connection
// disconnected after the first, failed after both), checking four times a
// second. A server that is up answers each check within milliseconds and
// sends RTCP every second or so; a false alarm on a busy machine costs one
// dial, the new session replacing the old on the stage.
const (
	disconnectedAfter = time.Second
	failedAfter       = time.Second
	checkEvery        = 250 * time.Millisecond
)

// errEnded stops a speaker whose space ended while it was off the stage:
// the end of its talk, not a failure.
var errEnded = errors.New("the space has ended")

// speaker keeps `amphi speak` on a space's stage: it dials the WHIP
// endpoint and, whenever the session fails (the server went away), dials
// again with backoff until the server is back, as a person whose call
// dropped would. What it plays meanwhile is lost, as a live microphone's
// would be: the file keeps its real-time pace.
type speaker struct {
	endpoint, token string
	out             io.Writer
	// dials bounds the dials in a row one connection may take; 0 is no
	// bound.
	dials int
	sess  atomic.Pointer[whip.Session] // nil while connecting
}

// run plays pkts (again and again if loop) to the stage until they end,
// ctx is done or the stage cannot be reached again.
func (s *speaker) run(ctx context.Context, pkts []feed.Packet, loop bool) error {
	sess, err := s.connect(ctx)
	if err != nil || sess == nil {
		return err
	}
	s.sess.Store(sess)
	fmt.Fprintln(s.out, "on the stage")
	ctx, cancel := context.WithCancelCause(ctx)
	kept := make(chan struct{})
	go func() {
		defer close(kept)
		if err := s.keep(ctx, sess); err != nil {
			cancel(err)
		}
	}()
	start := time.Now()
	err = feed.Play(ctx, pkts, loop, s.send)
	cause := context.Cause(ctx)
	cancel(nil)
	<-kept
	fmt.Fprintf(s.out, "spoke for %s\n", time.Since(start).Round(time.Millisecond))
	if sess := s.sess.Load(); sess != nil {
		closeCtx, cancel := context.WithTimeout(context.Background(), apiTimeout)
		defer cancel()
		sess.Close(closeCtx)
	}
	switch {
	case errors.Is(cause, errEnded):
		fmt.Fprintln(s.out, "the space has ended")
	case err == nil && !errors.Is(cause, context.Canceled):
		err = cause // keep gave up
	}
	return err
}

// send sends one packet to the stage, or drops it while off the stage. A
// write that fails because the session is failing or was replaced is no
// error: keep is dialling again.
func (s *speaker) send(p feed.Packet) error {
	sess := s.sess.Load()
	if sess == nil {
		return nil
	}
	err := sess.WriteOpus(p.Data, p.Duration)
	select {
	case <-sess.Done():
		return nil
	default:
	}
	if s.sess.Load() != sess {
		return nil
	}
	return err
}

// keep dials again each time the session fails, until ctx is done. It
// fails when the stage cannot be reached again.
func (s *speaker) keep(ctx context.Context, sess *whip.Session) error {
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-sess.Done():
		}
		s.sess.Store(nil)
		sess.Abandon() // the server that held it is gone, or dropped it
		lost := time.Now()
		fmt.Fprintln(s.out, "lost the stage: dialling again")
		var err error
		var st *whip.StatusError
		if sess, err = s.connect(ctx); errors.As(err, &st) && st.StatusCode == http.StatusGone {
			return errEnded
		} else if err != nil || sess == nil {
			return err
		}
		s.sess.Store(sess)
		fmt.Fprintf(s.out, "back on the stage after %s\n", time.Since(lost).Round(time.Millisecond))
	}
}

// connect dials until a session is connected, with backoff; it returns
// nil, nil once ctx is done. An answer a new dial would not change (a
// token refused, a space not live) ends it, as does the bound on dials.
func (s *speaker) connect(ctx context.Context) (*whip.Session, error) {
	wait := firstRedial
	for n := 1; ; n++ {
		sess, err := s.dial(ctx)
		if err == nil {
			return sess, nil
		}
		var st *whip.StatusError
		switch {
		case ctx.Err() != nil:
			return nil, nil
		case errors.As(err, &st) && st.StatusCode < 500 && st.StatusCode != http.StatusTooManyRequests:
			return nil, err
		case s.dials > 0 && n >= s.dials:
			return nil, fmt.Errorf("the stage did not answer in %d tries: %w", n, err)
		}
		fmt.Fprintf(s.out, "dial %d: %v; again in %s\n", n, err, wait)
		select {
		case <-ctx.Done():
			return nil, nil
		case <-time.After(wait):
		}
		wait = min(2*wait, maxRedial)
	}
}

// dial makes one WHIP session and waits for its media to flow.
func (s *speaker) dial(ctx context.Context) (*whip.Session, error) {
	dialCtx, cancel := context.WithTimeout(ctx, apiTimeout)
	defer cancel()
	sess, err := whip.Dial(dialCtx, s.endpoint, s.token, whip.Config{Slots: -1, ConfigureSettings: func(se *webrtc.SettingEngine) {
		se.SetICETimeouts(disconnectedAfter, failedAfter, checkEvery)
	}})
	if err != nil {
		return nil, err
	}
	select {
	case <-sess.Connected():
		return sess, nil
	case <-sess.Done():
		err = errors.New("the WebRTC connection failed")
	case <-dialCtx.Done():
		err = errors.New("the WebRTC connection did not come up")
	}
	sess.Abandon()
	return nil, err
}
