package main

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/amphi-audio/amphi"
	"github.com/amphi-audio/amphi/internal/client"
	"github.com/amphi-audio/amphi/internal/ogg"
	"github.com/amphi-audio/amphi/internal/tone"
)

// heardPacket is an audio packet a listener received, and when.
type heardPacket struct {
	data []byte
	at   time.Time
}

// earLog keeps what a listener heard, for finding a tone in what came
// after a moment.
type earLog struct {
	mu   sync.Mutex
	pkts []heardPacket
}

func (e *earLog) add(pkt []byte, _ int64) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.pkts = append(e.pkts, heardPacket{data: bytes.Clone(pkt), at: time.Now()})
}

// firstAfter returns when the first packet after since arrived, and
// whether one did.
func (e *earLog) firstAfter(since time.Time) (time.Time, bool) {
	e.mu.Lock()
	defer e.mu.Unlock()
	for _, p := range e.pkts {
		if p.at.After(since) {
			return p.at, true
		}
	}
	return time.Time{}, false
}

// toneAfter returns when freq was first heard in half a second of audio
// received after since, and whether it was.
func (e *earLog) toneAfter(t *testing.T, since time.Time, freq float64) (time.Time, bool) {
	e.mu.Lock()
	var datas [][]byte
	var ats []time.Time
	for _, p := range e.pkts {
		if p.at.After(since) {
			datas, ats = append(datas, p.data), append(ats, p.at)
		}
	}
	e.mu.Unlock()
	const block = 4800 // 100 ms
	pcm, run := decode(t, datas), 0
	for i := 0; i+block <= len(pcm); i += block {
		if !tone.Present(pcm[i:i+block], amphi.SampleRate, freq) {
			run = 0
			continue
		}
		if run++; run == 5 { // when the first of the five arrived
			return ats[(i-4*block)/amphi.FrameSamples], true
		}
	}
	return time.Time{}, false
}

// pollUntil calls ok every 50 ms until it holds or the deadline passes,
// and reports whether it held.
func pollUntil(deadline time.Time, ok func() bool) bool {
	for {
		if ok() {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// speakingLoop runs `amphi speak --loop` with a 440 Hz tone on the space,
// as a process, and returns it and how many times it has said something.
func speakingLoop(t *testing.T, c *client.Client, sp *client.Created) (speak *exec.Cmd, said func(string) int) {
	t.Helper()
	var spoke bytes.Buffer
	var mu sync.Mutex
	speak = exec.Command(os.Args[0], "speak", "--server", c.BaseURL, "--space", sp.ID, "--token", sp.SpeakerToken,
		"--loop", toneWAV(t, 440, 2*time.Second))
	speak.Env = append(os.Environ(), reexecEnv+"=1")
	speak.Stdout, speak.Stderr = &lockedWriter{&mu, &spoke}, os.Stderr
	if err := speak.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { speak.Process.Kill(); speak.Wait() })
	return speak, func(s string) int {
		mu.Lock()
		defer mu.Unlock()
		return strings.Count(spoke.String(), s)
	}
}

// listening is a listener that resumes across a minute of breaks: what it
// heard, its stream, and its stats when it ends.
type listening struct {
	ear    earLog
	mu     sync.Mutex
	stream bytes.Buffer
	done   chan *client.ListenStats
}

func listenAlong(t *testing.T, ctx context.Context, c *client.Client, sp *client.Created) *listening {
	l := &listening{done: make(chan *client.ListenStats, 1)}
	go func() {
		st, err := c.Listen(ctx, sp.ID, client.ListenOptions{ResumeFor: 60 * time.Second, OnPacket: l.ear.add,
			Out: &lockedWriter{&l.mu, &l.stream}})
		if err != nil {
			t.Errorf("listen: %v", err)
		}
		l.done <- st
	}()
	return l
}

func (l *listening) bytes() []byte {
	l.mu.Lock()
	defer l.mu.Unlock()
	return bytes.Clone(l.stream.Bytes())
}

// crashable is a live space on a server process that a test kills and
// starts again on the same data directory and address.
type crashable struct {
	dir, addr string
	server    *exec.Cmd
	c         *client.Client
	sp        *client.Created
}

func newCrashable(t *testing.T, ctx context.Context, title string) *crashable {
	t.Helper()
	cr := &crashable{dir: t.TempDir()}
	server, base := startServerProcess(t, cr.dir)
	u, err := url.Parse(base)
	if err != nil {
		t.Fatal(err)
	}
	cr.server, cr.addr, cr.c = server, u.Host, client.New(base)
	if cr.sp, err = cr.c.Create(ctx, title, nil); err != nil {
		t.Fatal(err)
	}
	return cr
}

// crash kills the server with SIGKILL and starts it again at once. It
// returns when it killed and when it started the new process.
func (cr *crashable) crash(t *testing.T) (killed, restarted time.Time) {
	t.Helper()
	killed = time.Now()
	if err := cr.server.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	cr.server.Wait()
	restarted = time.Now()
	cr.server, _ = startServerProcess(t, cr.dir, "--addr", cr.addr)
	return killed, restarted
}

// TestRestartResumesTheConversation kills a server with SIGKILL while a
// speaker process speaks a tone and a listener listens, and starts it
// again on the same data directory and address. The space must be live
// again within 5 s of the restart, same id, start and serial; the speaker
// must find the stage again by itself and the listener hear the tone
// again; the recording must be one Ogg Opus stream from before the crash
// to after it, the downtime at most 5 s of it missing, ending with EOS.
// It logs the times from the kill that scripts/bench/restart.sh collects.
func TestRestartResumesTheConversation(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 120*time.Second)
	defer cancel()
	cr := newCrashable(t, ctx, "Unkillable")
	c, sp := cr.c, cr.sp

	speak, said := speakingLoop(t, c, sp)
	l := listenAlong(t, ctx, c, sp)
	ear, listened := &l.ear, l.done
	begun := time.Now()
	if !pollUntil(begun.Add(30*time.Second), func() bool { _, ok := ear.toneAfter(t, begun, 440); return ok }) {
		t.Fatal("the listener did not hear the speaker's tone before the kill")
	}
	time.Sleep(time.Second) // a second more of conversation on disk

	killed, restarted := cr.crash(t)
	var got *client.Space
	var err error
	if !pollUntil(restarted.Add(5*time.Second), func() bool {
		got, err = c.Get(ctx, sp.ID)
		return err == nil && got.State == amphi.StateLive && got.Speakers != nil
	}) {
		t.Fatalf("the space is not on air within 5 s of the restart: %+v, %v", got, err)
	}
	live := time.Now()
	if got.ID != sp.ID || got.StartedAt == nil || !got.StartedAt.Equal(*sp.StartedAt) {
		t.Errorf("resumed space %s started %v, want %s started %v", got.ID, got.StartedAt, sp.ID, sp.StartedAt)
	}
	if !pollUntil(time.Now().Add(30*time.Second), func() bool {
		got, err = c.Get(ctx, sp.ID)
		return err == nil && got.Speakers != nil && *got.Speakers >= 1 && said("back on the stage") > 0
	}) {
		t.Fatalf("the speak process did not find the stage again by itself: %+v, %v", got, err)
	}
	var back, toneBack time.Time
	if !pollUntil(time.Now().Add(30*time.Second), func() bool {
		var ok bool
		toneBack, ok = ear.toneAfter(t, killed, 440)
		return ok
	}) {
		t.Fatal("the listener did not hear the tone again after the restart")
	}
	back, _ = ear.firstAfter(killed)
	t.Logf("restart: kill to live %v, to audio at the listener %v, to the tone at the listener %v",
		live.Sub(killed).Round(time.Millisecond), back.Sub(killed).Round(time.Millisecond), toneBack.Sub(killed).Round(time.Millisecond))
	time.Sleep(time.Second) // a second more after the crash

	ended, err := c.End(ctx, sp.ID, sp.HostToken)
	if err != nil {
		t.Fatal(err)
	}
	select {
	case st := <-listened:
		if st == nil || !st.Ended {
			t.Errorf("listener: %+v, want the program's end", st)
		}
	case <-ctx.Done():
		t.Fatal("the listener's stream did not end with the space")
	}
	// The speak process, having lost the stage once more, finds the space
	// ended and stops, with no error.
	spoken := make(chan error, 1)
	go func() { spoken <- speak.Wait() }()
	select {
	case err := <-spoken:
		if err != nil || said("the space has ended") == 0 {
			t.Errorf("the speak process ended with %v, saying the space ended: %v", err, said("the space has ended") > 0)
		}
	case <-ctx.Done():
		t.Error("the speak process did not stop when the space ended")
	}

	rec, err := os.ReadFile(filepath.Join(cr.dir, "recordings", sp.ID+".opus"))
	if err != nil {
		t.Fatal(err)
	}
	serial, holes := oneStream(t, "recording", rec)
	if holes != 0 {
		t.Errorf("the recording skips pages %d times", holes)
	}
	// The listener may have missed the chunks the server made in its last
	// moment, which the file holds: a hole of a page or two.
	heard, holes := oneStream(t, "listener's stream", l.bytes())
	if heard != serial || holes > 1 {
		t.Errorf("the listener heard serial %#x with %d holes, the recording is %#x", heard, holes, serial)
	}
	d, wall := ffmpegDecodes(t, "recording across the restart", rec), ended.EndedAt.Sub(*ended.StartedAt)
	before, after := killed.Sub(*sp.StartedAt), ended.EndedAt.Sub(live)
	t.Logf("recording: %v decoded by ffmpeg; live %v before the kill, %v after the restart, %v in all", d, before, after, wall)
	if gap := wall - d; gap > 5*time.Second || gap < -250*time.Millisecond {
		t.Errorf("the recording holds %v of the %v the space was live: %v missing, want at most 5 s", d, wall, gap)
	}
	if d < before-time.Second+after-250*time.Millisecond {
		t.Errorf("the recording holds %v: not the %v before the kill and the %v after", d, before, after)
	}
}

// oneStream checks an Ogg Opus stream is one logical stream: one serial,
// granule positions that follow on where page numbers do (each page of
// audio ends its packets' length after the previous one), and an EOS page
// last. It returns the serial and how many times page numbers jump.
func oneStream(t *testing.T, what string, b []byte) (serial uint32, holes int) {
	t.Helper()
	rd := ogg.NewReader(bytes.NewReader(b))
	var last *ogg.Page
	for {
		p, err := rd.ReadPage()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("%s: %v", what, err)
		}
		switch {
		case last == nil:
		case p.Serial != last.Serial || p.Seq <= last.Seq:
			t.Fatalf("%s: page %d of serial %#x after page %d of serial %#x", what, p.Seq, p.Serial, last.Seq, last.Serial)
		case p.Seq != last.Seq+1:
			holes++
		case p.Seq > 2 && p.Granule != last.Granule+int64(len(p.Packets)*amphi.FrameSamples):
			t.Fatalf("%s: page %d at granule %d after %d: a jump in the timeline", what, p.Seq, p.Granule, last.Granule)
		}
		last = p
	}
	if last == nil || last.Flags&ogg.FlagEOS == 0 {
		t.Fatalf("%s: the last page is not an EOS page", what)
	}
	return last.Serial, holes
}

// TestOneServerPerDataDirectory starts a second server on a data directory
// in use: it must refuse, saying so, rather than resume the same spaces
// into the same recordings; once the first has stopped, the directory is
// free again.
func TestOneServerPerDataDirectory(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	first := MustRunMain(t, dir)
	second := NewMain()
	second.Config.Addr, second.Config.DataDir = "127.0.0.1:0", dir
	second.Logger = slog.New(slog.DiscardHandler)
	err := second.Run(context.Background())
	second.Close()
	if err == nil || !strings.Contains(err.Error(), "in use by another amphi serve") {
		t.Errorf("a second server on the data directory: %v, want it refused as in use", err)
	}
	if err := first.Close(); err != nil {
		t.Fatal(err)
	}
	MustRunMain(t, dir).Close()
}

// TestWebSpeakerFindsTheStageAgainAfterARestart puts Chromium's microphone
// on the stage from the speaker page, kills the server with SIGKILL and
// starts it again: the page must join the resumed space's stage again by
// itself.
func TestWebSpeakerFindsTheStageAgainAfterARestart(t *testing.T) {
	parallelBrowser(t)
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	cr := newCrashable(t, ctx, "Speaking through a restart")
	c, sp := cr.c, cr.sp
	bctx := startMicBrowser(t, ctx, toneWAV(t, 660, 10*time.Second))
	if err := chromedp.Do(bctx,
		chromedp.Navigate(c.BaseURL+"/s/"+sp.ID+"/speak?raw=1#token="+sp.SpeakerToken),
		chromedp.WaitVisible(`#join`),
		chromedp.Click(`#join`),
	); err != nil {
		t.Fatalf("speaker page: %v (status %q)", err, pageStatus(bctx))
	}
	if _, err := chromedp.Run(bctx, chromedp.Poll[bool](`window.amphiSpeak.state === 'on stage' || null`)); err != nil {
		t.Fatalf("the page did not get on the stage: status %q: %v", pageStatus(bctx), err)
	}

	killed, _ := cr.crash(t)
	// The resumed space starts with nobody on its stage: a speaker there is
	// the page, back by itself.
	var got *client.Space
	var err error
	if !pollUntil(time.Now().Add(20*time.Second), func() bool { // Chromium alone calls the connection failed after ~30 s
		got, err = c.Get(ctx, sp.ID)
		return err == nil && got.Speakers != nil && *got.Speakers == 1
	}) {
		t.Fatalf("the page did not join the stage again: %+v, %v; status %q", got, err, pageStatus(bctx))
	}
	t.Logf("the page was on the stage again %v after the kill", time.Since(killed).Round(time.Millisecond))
}
