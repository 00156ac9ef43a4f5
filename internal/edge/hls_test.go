package edge_test

import (
	"bytes"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/amphi-audio/amphi/internal/edge"
	"github.com/amphi-audio/amphi/internal/hls"
)

// playlist asks h for the space's playlist, blocking until segment msn has
// part (or ended), and returns it.
func playlist(t *testing.T, h *hls.Handler, query string) string {
	t.Helper()
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/"+space+"/index.m3u8?"+query, nil))
	body, _ := io.ReadAll(rec.Body)
	if rec.Code != http.StatusOK {
		t.Fatalf("playlist?%s: %d %s", query, rec.Code, body)
	}
	return string(body)
}

func TestHLSFollowsTheRingAndEndsWithTheProgram(t *testing.T) {
	te := startEdge(t, edge.Config{Lookup: func(string) (edge.SpaceInfo, error) {
		return edge.SpaceInfo{Serial: serial, Run: "r1"}, nil
	}})
	// A 20 ms CELT frame (TOC 0xf8), which the segmenter times by its TOC.
	te.frame = append([]byte{0xf8}, bytes.Repeat([]byte{0x55}, 40)...)
	if te.HLS(space) != nil {
		t.Fatal("an LL-HLS stream before the program")
	}
	te.publish(t, 30, false) // 3 s: segment 0 and half of segment 1
	st := te.HLS(space)
	if st == nil || st.Run != "r1" {
		t.Fatalf("HLS = %+v, want run r1", st)
	}
	h := &hls.Handler{Prefix: "/", Lookup: func(string) *hls.Segmenter { return st.Segmenter }}
	if pl := playlist(t, h, "_HLS_msn=1&_HLS_part=4"); !strings.Contains(pl, `URI="1.4.m4s"`) || strings.Contains(pl, "#EXT-X-ENDLIST") {
		t.Fatalf("playlist after 3 s:\n%s", pl)
	}
	te.publish(t, 1, true)
	if pl := playlist(t, h, "_HLS_msn=3"); !strings.Contains(pl, "#EXT-X-ENDLIST") {
		t.Fatalf("playlist after the end has no EXT-X-ENDLIST:\n%s", pl)
	}
	if n := te.Stats().HLSSkipped; n != 0 {
		t.Errorf("%d pages skipped", n)
	}
}

func TestHLSSkipsAPageItCannotSegmentAndMarksTheJump(t *testing.T) {
	te := startEdge(t, edge.Config{})
	good := append([]byte{0xf8}, bytes.Repeat([]byte{0x55}, 40)...)
	te.frame = good
	te.publish(t, 25, false)
	te.frame = nil // empty packets break Opus framing: a forged chunk, say
	te.publish(t, 1, false)
	te.frame = good
	te.publish(t, 30, false)
	st := te.HLS(space)
	h := &hls.Handler{Prefix: "/", Lookup: func(string) *hls.Segmenter { return st.Segmenter }}
	// The feed runs on its own: wait for it to reach the last page.
	pl := playlist(t, h, "")
	for deadline := time.Now().Add(10 * time.Second); !strings.Contains(pl, `URI="3.4.m4s"`) && time.Now().Before(deadline); time.Sleep(5 * time.Millisecond) {
		pl = playlist(t, h, "")
	}
	if !strings.Contains(pl, "\n#EXT-X-DISCONTINUITY\n") || !strings.Contains(pl, `URI="3.4.m4s"`) {
		t.Fatalf("no discontinuity where a page was skipped, or not every page:\n%s", pl)
	}
	if n := te.Stats().HLSSkipped; n != 1 {
		t.Errorf("%d pages skipped, want 1", n)
	}
}
