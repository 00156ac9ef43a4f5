package main

import (
	"bufio"
	"bytes"
	"context"
	"flag"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/amphi-audio/amphi"
	"github.com/amphi-audio/amphi/internal/client"
	"github.com/amphi-audio/amphi/internal/ogg"
	"github.com/amphi-audio/amphi/internal/program"
)

// reexecEnv makes the test binary run as the amphi command, so a test can
// start a real server process and kill it.
const reexecEnv = "AMPHI_TEST_REEXEC"

func TestMain(m *testing.M) {
	if os.Getenv(reexecEnv) == "1" {
		main()
		os.Exit(0)
	}
	// The tests here mostly wait on audio played in real time, not on the
	// CPU (the package used about a quarter of a core run one at a time):
	// unless -parallel says otherwise, run four at once, whatever the
	// cores. Browser tests also take a slot of their own (browserSlots).
	flag.Parse()
	parallel := false
	flag.Visit(func(f *flag.Flag) { parallel = parallel || f.Name == "test.parallel" })
	if !parallel {
		flag.Set("test.parallel", "4")
	}
	os.Exit(m.Run())
}

// startServerProcess runs `amphi serve` in a child process, with args after
// the test's own flags (a later flag wins), and returns it with the URL it
// serves on.
func startServerProcess(t *testing.T, dataDir string, args ...string) (*exec.Cmd, string) {
	t.Helper()
	cmd, serving := startServerProcessAsync(t, dataDir, args...)
	select {
	case u := <-serving:
		return cmd, u
	case <-time.After(20 * time.Second):
		t.Fatal("the server process did not say where it serves")
		return nil, ""
	}
}

// startServerProcessAsync is startServerProcess for a server that may not
// serve at once (a standby): the URL comes on the channel when it does.
func startServerProcessAsync(t *testing.T, dataDir string, args ...string) (*exec.Cmd, <-chan string) {
	t.Helper()
	args = append([]string{"serve", "--addr", "127.0.0.1:0", "--ops-addr", "127.0.0.1:0", "--data", dataDir, "--log", "warn"}, args...)
	cmd := exec.Command(os.Args[0], args...)
	cmd.Env = append(os.Environ(), reexecEnv+"=1")
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	urls := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			if rest, ok := strings.CutPrefix(sc.Text(), "amphi serving on "); ok {
				urls <- strings.Fields(rest)[0]
			}
		}
	}()
	return cmd, urls
}

// TestKillNineLosesAtMostOneSecondOfRecording kills a server with SIGKILL in
// the middle of a conversation: the recording on disk must hold all but the
// last second, be valid up to its last complete page, and go on after a
// restart, which resumes the space (TestRestartResumesTheConversation).
func TestKillNineLosesAtMostOneSecondOfRecording(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	dir := t.TempDir()
	cmd, url := startServerProcess(t, dir)
	c := client.New(url)
	sp, err := c.Create(ctx, "Doomed", nil)
	if err != nil {
		t.Fatal(err)
	}
	s := dialSpeaker(t, ctx, c, sp.ID, sp.SpeakerToken)
	if err := s.play(ctx, 440, 0, time.Hour, 3*time.Second); err != nil {
		t.Fatal(err)
	}
	killedAt := time.Now()
	if err := cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	cmd.Wait()
	s.sess.Abandon()

	path := filepath.Join(dir, "recordings", sp.ID+".opus")
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	n, granule, _, err := ogg.ValidPrefix(bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	// The pre-skip is not heard: without it, a file written up to the kill
	// would hold 6.5 ms more than the time on air.
	onDisk := time.Duration(granule-program.PreSkip) * time.Second / amphi.SampleRate
	live := killedAt.Sub(*sp.StartedAt)
	t.Logf("live %v before the kill, %v on disk in %d valid bytes of %d", live, onDisk, n, len(b))
	if lost := live - onDisk; lost > time.Second || lost < 0 {
		t.Errorf("the recording holds %v of %v live: lost %v, want at most 1 s", onDisk, live, lost)
	}

	// A restart resumes the space, its recording going on in the same
	// file: ended, it serves what the file held and what came after.
	resumed := time.Now() // the program resumes while Main starts
	m := MustRunMain(t, dir)
	defer m.Close()
	c = client.New(m.URL())
	got, err := c.Get(ctx, sp.ID)
	if err != nil {
		t.Fatal(err)
	}
	if got.State != amphi.StateLive {
		t.Errorf("after the restart the space is %s, want live again", got.State)
	}
	if _, err := c.End(ctx, sp.ID, sp.HostToken); err != nil {
		t.Fatal(err)
	}
	rec := fetch(t, ctx, c.RecordingURL(sp.ID))
	if d, after := recordingDuration(t, rec), time.Since(resumed); d < onDisk || d > onDisk+after+250*time.Millisecond {
		t.Errorf("served recording holds %v; the file held %v, and %v passed since the restart", d, onDisk, after)
	}
	ffmpegDecodes(t, "recovered recording", rec)
}

// TestSIGTERMEndsSpacesCleanly stops a server the polite way mid-conversation:
// it must exit 0, its listener must receive the end of the program, and the
// space must be ended with a finalised recording that closes with an EOS page.
func TestSIGTERMEndsSpacesCleanly(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	dir := t.TempDir()
	cmd, url := startServerProcess(t, dir)
	c := client.New(url)
	sp, err := c.Create(ctx, "Polite", nil)
	if err != nil {
		t.Fatal(err)
	}
	listened := make(chan *client.ListenStats, 1)
	go func() {
		st, err := c.Listen(ctx, sp.ID, client.ListenOptions{})
		if err != nil {
			t.Errorf("listen: %v", err)
		}
		listened <- st
	}()
	s := dialSpeaker(t, ctx, c, sp.ID, sp.SpeakerToken)
	if err := s.play(ctx, 440, 0, time.Hour, 2*time.Second); err != nil {
		t.Fatal(err)
	}
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if err := cmd.Wait(); err != nil {
		t.Errorf("server exit: %v, want 0", err)
	}
	if st := <-listened; !st.Ended || st.Holes != 0 {
		t.Errorf("listener: ended=%v holes=%d, want the program's end and no holes", st.Ended, st.Holes)
	}

	b, err := os.ReadFile(filepath.Join(dir, "recordings", sp.ID+".opus"))
	if err != nil {
		t.Fatal(err)
	}
	rd := ogg.NewReader(bytes.NewReader(b))
	var last *ogg.Page
	for {
		p, err := rd.ReadPage()
		if err != nil {
			break
		}
		last = p
	}
	if last == nil || last.Flags&ogg.FlagEOS == 0 {
		t.Error("the recording does not end with an EOS page: it was not finalised")
	}
	m := MustRunMain(t, dir)
	defer m.Close()
	got, err := client.New(m.URL()).Get(ctx, sp.ID)
	if err != nil {
		t.Fatal(err)
	}
	if got.State != amphi.StateEnded || got.EndedAt == nil {
		t.Fatalf("after SIGTERM the space is %s", got.State)
	}
	// The program starts a moment after the space and ends a moment before
	// it: a page or two on a busy machine, never a second.
	if d, live := recordingDuration(t, b), got.EndedAt.Sub(*got.StartedAt); (d - live).Abs() > live/100+250*time.Millisecond {
		t.Errorf("recording holds %v, the space was live %v", d, live)
	}
}
