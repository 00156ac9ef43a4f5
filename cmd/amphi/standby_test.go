package main

import (
	"context"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/amphi-audio/amphi"
	"github.com/amphi-audio/amphi/internal/client"
)

// TestAStandbyTakesOverAndTheOldActiveStandsBy runs an active server and a
// standby on one data directory and address, with a speaker process and a
// listener. kill -9 of the active: the standby has the space live within
// 5 s, the speaker back by itself, the tone heard again. The old active
// comes back with --standby and waits, serving nothing. SIGTERM of the
// new active (a rolling deploy): it hands the space over rather than
// ending it, and the returned one has it live within 5 s. The recording
// is one stream across both, ending with EOS.
func TestAStandbyTakesOverAndTheOldActiveStandsBy(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 150*time.Second)
	defer cancel()
	cr := newCrashable(t, ctx, "Never off air")
	c, sp := cr.c, cr.sp
	standby, serving := startServerProcessAsync(t, cr.dir, "--addr", cr.addr, "--standby")
	waitUpTo(t, 10*time.Second, func() bool { return standbyWaits(cr.dir) })

	speak, said := speakingLoop(t, c, sp)
	l := listenAlong(t, ctx, c, sp)
	begun := time.Now()
	if !pollUntil(begun.Add(30*time.Second), func() bool { _, ok := l.ear.toneAfter(t, begun, 440); return ok }) {
		t.Fatal("the listener did not hear the speaker's tone before the kill")
	}

	// back waits until the space is on air again at most 5 s after since,
	// the speaker back on stage and the tone heard after since.
	back := func(what, cause string, since time.Time, stages int) {
		t.Helper()
		var got *client.Space
		var err error
		if !pollUntil(since.Add(5*time.Second), func() bool {
			got, err = c.Get(ctx, sp.ID)
			return err == nil && got.State == amphi.StateLive && got.Speakers != nil
		}) {
			t.Fatalf("%s: the space is not on air within 5 s: %+v, %v", what, got, err)
		}
		live := time.Now()
		if !pollUntil(time.Now().Add(30*time.Second), func() bool {
			got, err = c.Get(ctx, sp.ID)
			return err == nil && got.Speakers != nil && *got.Speakers >= 1 && said("back on the stage") >= stages
		}) {
			t.Fatalf("%s: the speaker did not find the stage again: %+v, %v", what, got, err)
		}
		var toneBack time.Time
		if !pollUntil(time.Now().Add(30*time.Second), func() bool {
			var ok bool
			toneBack, ok = l.ear.toneAfter(t, since, 440)
			return ok
		}) {
			t.Fatalf("%s: the listener did not hear the tone again", what)
		}
		audio, _ := l.ear.firstAfter(since)
		// In restart's words, for scripts/bench/restart.sh.
		t.Logf("%s: %s to live %v, to audio at the listener %v, to the tone at the listener %v", what, cause,
			live.Sub(since).Round(time.Millisecond), audio.Sub(since).Round(time.Millisecond), toneBack.Sub(since).Round(time.Millisecond))
	}

	killed := time.Now()
	if err := cr.server.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	cr.server.Wait()
	select {
	case <-serving:
	case <-time.After(5 * time.Second):
		t.Fatal("the standby did not take over within 5 s of the kill")
	}
	back("takeover", "kill", killed, 1)

	// The old active returns and finds the directory taken: it stands by.
	returned, servingAgain := startServerProcessAsync(t, cr.dir, "--addr", cr.addr, "--standby")
	waitUpTo(t, 10*time.Second, func() bool { return standbyWaits(cr.dir) })
	select {
	case <-servingAgain:
		t.Fatal("the returned server serves while the standby that took over holds the directory")
	case <-time.After(time.Second):
	}
	if got, err := c.Get(ctx, sp.ID); err != nil || got.State != amphi.StateLive {
		t.Fatalf("with the old active back: %+v, %v", got, err)
	}

	// A rolling deploy: SIGTERM hands the space over to the waiting one.
	handed := time.Now()
	if err := standby.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if err := standby.Wait(); err != nil {
		t.Errorf("the server handing over exited with %v", err)
	}
	select {
	case <-servingAgain:
	case <-time.After(5 * time.Second):
		t.Fatal("the returned server did not take over within 5 s of the SIGTERM")
	}
	back("handover", "term", handed, 2)
	time.Sleep(time.Second)

	ended, err := c.End(ctx, sp.ID, sp.HostToken)
	if err != nil {
		t.Fatal(err)
	}
	if ended.EndReason == amphi.EndCrash {
		t.Errorf("the space ended as %q", ended.EndReason)
	}
	speak.Process.Kill()
	rec, err := os.ReadFile(filepath.Join(cr.dir, "recordings", sp.ID+".opus"))
	if err != nil {
		t.Fatal(err)
	}
	if _, holes := oneStream(t, "recording", rec); holes != 0 {
		t.Errorf("the recording skips pages %d times", holes)
	}
	d, wall := ffmpegDecodes(t, "recording across two takeovers", rec), ended.EndedAt.Sub(*ended.StartedAt)
	if gap := wall - d; gap > 10*time.Second {
		t.Errorf("the recording holds %v of the %v the space was live: %v missing over two takeovers, want at most 5 s each", d, wall, gap)
	}
	t.Logf("recording: %v of %v live", d, wall)
	returned.Process.Signal(syscall.SIGTERM)
	returned.Wait()
}
