package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"math"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/amphi-audio/amphi"
	"github.com/amphi-audio/amphi/internal/client"
	"github.com/amphi-audio/amphi/internal/tone"
)

// postClip asks for a clip with token ("" for none).
func postClip(t *testing.T, base, spaceID, token string, body any) (int, map[string]any) {
	t.Helper()
	hdr := map[string]string{}
	if token != "" {
		hdr["Authorization"] = "Bearer " + token
	}
	resp, out := call(t, http.MethodPost, base+"/spaces/"+spaceID+"/clips", body, hdr)
	return resp.StatusCode, out
}

type clipBody map[string]string

// newSpace creates a live space titled title through c.
func newSpace(t *testing.T, ctx context.Context, c *client.Client, title string) *client.Created {
	t.Helper()
	sp, err := c.Create(ctx, title, nil)
	if err != nil {
		t.Fatal(err)
	}
	return sp
}

// playTone joins sp as a WHIP speaker through c and plays freq during
// [on, off) of its timeline, silence after, until total.
func playTone(t *testing.T, ctx context.Context, c *client.Client, sp *client.Created, freq float64, on, off, total time.Duration) *toneSpeaker {
	t.Helper()
	s := dialSpeaker(t, ctx, c, sp.ID, sp.SpeakerToken)
	if err := s.play(ctx, freq, on, off, total); err != nil {
		t.Fatal(err)
	}
	return s
}

func TestAHostClipsARangeLiveAndItsPagePreviews(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	m := MustRunMain(t, t.TempDir())
	defer m.Close()
	c := client.New(m.URL())
	sp := newSpace(t, ctx, c, "Clip & share")
	// A 440 Hz tone from 0.5 s to 2.5 s of the speaker's timeline, then
	// silence; the recording starts when the space does, a little before.
	playTone(t, ctx, c, sp, 440, 500*time.Millisecond, 2500*time.Millisecond, 4*time.Second)
	time.Sleep(1500 * time.Millisecond) // the recorder syncs every second

	// Live: the host clips a second of the tone.
	st, out := postClip(t, m.URL(), sp.ID, sp.HostToken, clipBody{"from": "1.5s", "to": "2.5s", "title": "The <tone> & more"})
	if st != http.StatusCreated {
		t.Fatalf("clip while live: %d %v, want 201", st, out)
	}
	for _, k := range []string{"id", "url", "page_url", "image_url"} {
		if v, _ := out[k].(string); v == "" {
			t.Errorf("the clip's %s is missing: %v", k, out)
		}
	}
	audio := fetch(t, ctx, out["url"].(string))
	pcm := ffmpegPCM(t, "clip", audio)
	if d := time.Duration(len(pcm)) * time.Second / amphi.SampleRate; d < 990*time.Millisecond || d > 1010*time.Millisecond {
		t.Errorf("the clip of 1 s lasts %v", d)
	}
	if !tone.Present(pcm[amphi.SampleRate/10:], amphi.SampleRate, 440, 1000) {
		t.Error("the clip does not hold the tone")
	}

	// Its page previews: the raw HTML has the tags, the picture is there.
	page := string(fetch(t, ctx, out["page_url"].(string)))
	for _, want := range []string{
		`<meta property="og:title" content="The &lt;tone&gt; &amp; more">`,
		`<meta property="og:audio" content="` + out["url"].(string) + `">`,
		`<meta property="og:image" content="` + out["image_url"].(string) + `">`,
		`<title>The &lt;tone&gt; &amp; more · amphi</title>`,
	} {
		if !strings.Contains(page, want) {
			t.Errorf("the clip page lacks %s", want)
		}
	}
	if img := fetch(t, ctx, out["image_url"].(string)); !bytes.HasPrefix(img, []byte("\x89PNG")) {
		t.Error("the waveform is not a PNG")
	}
	// So does the space's own page.
	if page := string(fetch(t, ctx, m.URL()+"/s/"+sp.ID)); !strings.Contains(page, `<meta property="og:title" content="Clip &amp; share">`) {
		t.Error("the space page's raw HTML has no og:title")
	}

	// Ended: a clip of the silence after the tone equals the recording's
	// range, sample for sample after the decoder's first 80 ms.
	if _, err := c.End(ctx, sp.ID, sp.HostToken); err != nil {
		t.Fatal(err)
	}
	st, out = postClip(t, m.URL(), sp.ID, sp.HostToken, clipBody{"from": "1s", "to": "3s"})
	if st != http.StatusCreated {
		t.Fatalf("clip after the end: %d %v", st, out)
	}
	clip := ffmpegPCM(t, "clip", fetch(t, ctx, out["url"].(string)))
	whole := ffmpegPCM(t, "recording", fetch(t, ctx, m.URL()+"/spaces/"+sp.ID+"/recording.opus"))
	want := whole[amphi.SampleRate : 3*amphi.SampleRate]
	if len(clip) != len(want) {
		t.Fatalf("the clip of [1s, 3s) has %d samples, want %d", len(clip), len(want))
	}
	worst := 0.0
	for i := amphi.SampleRate * 80 / 1000; i < len(want); i++ {
		worst = math.Max(worst, math.Abs(float64(clip[i])-float64(want[i])))
	}
	if worst > 1 {
		t.Errorf("the clip differs from the recording's range by up to %v after 80 ms", worst)
	}
	if title, _ := out["title"].(string); title != "Clip & share, 1s to 3s" {
		t.Errorf("untitled clip named %q", title)
	}
}

func TestClipRequestsThatCannotBeServedAreRefused(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	dir := t.TempDir()
	m := MustRunMain(t, dir)
	defer m.Close()
	c := client.New(m.URL())
	sp := newSpace(t, ctx, c, "Refusals")
	time.Sleep(1500 * time.Millisecond) // a second of recording
	for _, tc := range []struct {
		name, token string
		body        any
		want        int
	}{
		{"no credential", "", clipBody{"from": "0s", "to": "1s"}, http.StatusUnauthorized},
		{"a speaker's", sp.SpeakerToken, clipBody{"from": "0s", "to": "1s"}, http.StatusForbidden},
		{"longer than 10 minutes", sp.HostToken, clipBody{"from": "0s", "to": "10m1s"}, http.StatusBadRequest},
		{"past the recording", sp.HostToken, clipBody{"from": "0s", "to": "1h"}, http.StatusBadRequest},
		{"backwards", sp.HostToken, clipBody{"from": "2s", "to": "1s"}, http.StatusBadRequest},
		{"not a duration", sp.HostToken, clipBody{"from": "soon", "to": "1s"}, http.StatusBadRequest},
		{"a title too long", sp.HostToken, clipBody{"from": "0s", "to": "1s", "title": strings.Repeat("x", 201)}, http.StatusBadRequest},
		{"not an object", sp.HostToken, []int{1}, http.StatusBadRequest},
	} {
		if st, out := postClip(t, m.URL(), sp.ID, tc.token, tc.body); st != tc.want || out["error"] == nil {
			t.Errorf("%s: %d %v, want %d with an error", tc.name, st, out, tc.want)
		}
	}
	// A co-host the host named clips; a speaker (above) does not.
	_, minted := call(t, http.MethodPost, m.URL()+"/spaces/"+sp.ID+"/tokens",
		map[string]string{"role": "cohost", "name": "Ada"}, map[string]string{"Authorization": "Bearer " + sp.HostToken})
	cohost, _ := minted["token"].(string)
	if cohost == "" {
		t.Fatalf("minting a co-host token: %v", minted)
	}
	if st, out := postClip(t, m.URL(), sp.ID, cohost, clipBody{"from": "0s", "to": "1s"}); st != http.StatusCreated {
		t.Errorf("a co-host's clip: %d %v, want 201", st, out)
	}
	dialSpeaker(t, t.Context(), c, sp.ID, cohost) // and speaks: it fails the test if refused
	// A cut a crash interrupted left a file nobody was told of: it is
	// not served, nor is a clip that does not exist.
	os.MkdirAll(filepath.Join(dir, "clips"), 0o700)
	os.WriteFile(filepath.Join(dir, "clips", "torn.opus.part"), []byte("OggS torn"), 0o600)
	os.WriteFile(filepath.Join(dir, "clips", "torn.opus"), []byte("OggS torn"), 0o600)
	for _, path := range []string{"/clips/torn.opus", "/clips/torn.opus.part", "/c/torn", "/clips/torn/waveform.png", "/clips/nothing"} {
		resp, err := http.Get(m.URL() + path)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusNotFound {
			t.Errorf("GET %s: %d, want 404", path, resp.StatusCode)
		}
	}
}

// TestAHostDeletesARecordingWithItsClipsAndRetentionExpiresThem: the
// host deletes an ended space's recording: its file and its clips' go,
// and nothing serves them; a live space's is refused. The retention does
// the same on its own, and /ops counts the storage.
func TestAHostDeletesARecordingWithItsClipsAndRetentionExpiresThem(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	dir := t.TempDir()
	m := MustRunMain(t, dir)
	defer m.Close()
	c := client.New(m.URL())
	var spaces []*client.Created
	for _, title := range []string{"Deleted by its host", "Expired"} {
		spaces = append(spaces, newSpace(t, ctx, c, title))
	}
	time.Sleep(1500 * time.Millisecond) // a second of recording each
	host := func(sp *client.Created) map[string]string {
		return map[string]string{"Authorization": "Bearer " + sp.HostToken}
	}
	sp := spaces[0]
	if resp, _ := call(t, http.MethodDelete, m.URL()+"/spaces/"+sp.ID+"/recording", nil, host(sp)); resp.StatusCode != http.StatusConflict {
		t.Errorf("deleting a live space's recording: %d, want 409", resp.StatusCode)
	}
	st, clip := postClip(t, m.URL(), sp.ID, sp.HostToken, clipBody{"from": "0s", "to": "1s"})
	if st != http.StatusCreated {
		t.Fatalf("clip: %d %v", st, clip)
	}
	fetch(t, ctx, clip["image_url"].(string)) // its waveform drawn and kept
	for _, s := range spaces {
		if _, err := c.End(ctx, s.ID, s.HostToken); err != nil {
			t.Fatal(err)
		}
	}
	m.countStorage(ctx)
	if s := m.snapshot(); s.RecordingBytes == 0 || s.ClipBytes == 0 {
		t.Errorf("storage counted: %d recording and %d clip bytes, want some of each", s.RecordingBytes, s.ClipBytes)
	}
	if resp, _ := call(t, http.MethodDelete, m.URL()+"/spaces/"+sp.ID+"/recording", nil, map[string]string{"Authorization": "Bearer " + sp.SpeakerToken}); resp.StatusCode != http.StatusForbidden {
		t.Errorf("a speaker deleting the recording: %d, want 403", resp.StatusCode)
	}
	resp, out := call(t, http.MethodDelete, m.URL()+"/spaces/"+sp.ID+"/recording", nil, host(sp))
	if resp.StatusCode != http.StatusOK || out["files_deleted"] != 3.0 {
		t.Errorf("the host deleting the recording: %d %v, want 200 and 3 files (recording, clip, waveform)", resp.StatusCode, out)
	}
	for _, u := range []string{m.URL() + "/spaces/" + sp.ID + "/recording.opus", clip["url"].(string), clip["page_url"].(string)} {
		if resp, _ := call(t, http.MethodGet, u, nil, nil); resp.StatusCode != http.StatusNotFound {
			t.Errorf("GET %s after the deletion: %d, want 404", u, resp.StatusCode)
		}
	}
	if files, _ := filepath.Glob(filepath.Join(dir, "clips", "*")); len(files) != 0 {
		t.Errorf("files left in clips/: %v", files)
	}
	if _, err := os.Stat(filepath.Join(dir, "recordings", sp.ID+".opus")); !os.IsNotExist(err) {
		t.Errorf("the deleted recording's file: %v, want gone", err)
	}

	// The retention: everything ended more than a moment ago goes.
	if n, err := m.api.ExpireRecordings(ctx, time.Nanosecond); err != nil || n != 1 {
		t.Errorf("retention cleared %d spaces, %v: want the other one", n, err)
	}
	if resp, _ := call(t, http.MethodGet, m.URL()+"/spaces/"+spaces[1].ID+"/recording.opus", nil, nil); resp.StatusCode != http.StatusNotFound {
		t.Errorf("an expired recording: %d, want 404", resp.StatusCode)
	}
	m.countStorage(ctx)
	if s := m.snapshot(); s.RecordingBytes != 0 || s.ClipBytes != 0 {
		t.Errorf("storage after the deletions: %d and %d bytes, want none", s.RecordingBytes, s.ClipBytes)
	}
}

// TestKillNineDuringCutsLeavesNoPartialClip kills a server with SIGKILL
// while hosts cut clips as fast as they can: after a restart every clip
// that was answered 201 plays whole, and nothing else of the cuts under
// way is on disk or served.
func TestKillNineDuringCutsLeavesNoPartialClip(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	dir := t.TempDir()
	cmd, base := startServerProcess(t, dir)
	c := client.New(base)
	sp := newSpace(t, ctx, c, "Cut short")
	s := playTone(t, ctx, c, sp, 440, 0, time.Hour, 3*time.Second)
	if _, err := c.End(ctx, sp.ID, sp.HostToken); err != nil {
		t.Fatal(err)
	}

	// Four hosts cut in a loop; the server dies under them.
	var mu sync.Mutex
	var made []string
	cutCtx, stopCuts := context.WithCancel(ctx)
	var wg sync.WaitGroup
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			body, _ := json.Marshal(clipBody{"from": "0.5s", "to": "2.5s"})
			for cutCtx.Err() == nil {
				req, _ := http.NewRequestWithContext(cutCtx, http.MethodPost, base+"/spaces/"+sp.ID+"/clips", bytes.NewReader(body))
				req.Header.Set("Authorization", "Bearer "+sp.HostToken)
				req.Header.Set("Content-Type", "application/json")
				resp, err := http.DefaultClient.Do(req)
				if err != nil {
					return // the server is gone
				}
				var out struct{ ID string }
				json.NewDecoder(resp.Body).Decode(&out)
				resp.Body.Close()
				if resp.StatusCode == http.StatusCreated {
					mu.Lock()
					made = append(made, out.ID)
					mu.Unlock()
				}
			}
		}()
	}
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		mu.Lock()
		n := len(made)
		mu.Unlock()
		if n >= 20 || time.Now().After(deadline) {
			break
		}
	}
	if err := cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	cmd.Wait()
	stopCuts()
	wg.Wait()
	s.sess.Abandon()
	parts, _ := filepath.Glob(filepath.Join(dir, "clips", "*.part"))
	t.Logf("%d clips made before the kill; %d cuts were under way", len(made), len(parts))
	if len(made) == 0 {
		t.Fatal("no clip was made before the kill")
	}
	// A cut killed between its rename and its row leaves a whole file
	// that nothing knows: the restart removes it too.
	orphan := filepath.Join(dir, "clips", "orphan.opus")
	if err := os.WriteFile(orphan, []byte("OggS"), 0o600); err != nil {
		t.Fatal(err)
	}

	m := MustRunMain(t, dir)
	defer m.Close()
	if parts, _ := filepath.Glob(filepath.Join(dir, "clips", "*.part")); len(parts) > 0 {
		t.Errorf("after the restart, unfinished cuts are left on disk: %v", parts)
	}
	if _, err := os.Stat(orphan); err == nil {
		t.Error("after the restart, a clip file the store does not know is left on disk")
	}
	files, _ := filepath.Glob(filepath.Join(dir, "clips", "*.opus"))
	if len(files) < len(made) {
		t.Errorf("%d clip files on disk, %d clips made", len(files), len(made))
	}
	for _, f := range files {
		id := strings.TrimSuffix(filepath.Base(f), ".opus")
		resp, err := http.Get(m.URL() + "/clips/" + id + ".opus")
		if err != nil {
			t.Fatal(err)
		}
		audio, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Errorf("clip %s, on disk, is answered %d: a file nothing serves", id, resp.StatusCode)
			continue
		}
		if d := ffmpegDecodes(t, "clip "+id, audio); d < 1990*time.Millisecond || d > 2010*time.Millisecond {
			t.Errorf("clip %s plays %v of its 2 s", id, d)
		}
	}
}
