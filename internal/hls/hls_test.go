package hls

import (
	"bytes"
	"compress/gzip"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/amphi-audio/amphi/internal/fmp4"
)

// frame is a valid 20 ms Opus packet (CELT, mono, one frame) with a
// recognisable body: tests that only need the framing use it instead of
// libopus.
func frame(i int) []byte {
	p := bytes.Repeat([]byte{byte(i)}, 80)
	p[0] = 0xf8
	return p
}

const frameSamples = 960

// feeder adds fake program pages of five 20 ms packets, as the program's
// chunks are, to a Segmenter.
type feeder struct {
	seg     *Segmenter
	granule int64 // at the end of the last page
	n       int
}

func (f *feeder) pages(t testing.TB, count int) {
	t.Helper()
	for range count {
		pkts := make([][]byte, 5)
		for i := range pkts {
			pkts[i] = frame(f.n)
			f.n++
		}
		f.granule += 5 * frameSamples
		if err := f.seg.Add(f.granule, pkts); err != nil {
			t.Fatal(err)
		}
	}
}

// pagesPerPart is how many 100 ms pages make a part.
const pagesPerPart = partSamples / (5 * frameSamples)

func newTestSegmenter(t testing.TB) (*Segmenter, *feeder) {
	t.Helper()
	cfg := DefaultConfig()
	cfg.Now = func() time.Time { return time.Date(2026, 12, 4, 21, 0, 0, 0, time.UTC) }
	seg, err := NewSegmenter(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return seg, &feeder{seg: seg}
}

// serve starts the handler for space "x" on loopback.
func serve(t *testing.T, seg *Segmenter, h *Handler) *httptest.Server {
	t.Helper()
	h.Prefix = "/hls/"
	h.Lookup = func(space string) *Segmenter {
		if space == "x" {
			return seg
		}
		return nil
	}
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return srv
}

func get(t *testing.T, url string) (*http.Response, []byte) {
	t.Helper()
	client := &http.Client{Timeout: 30 * time.Second}
	resp, err := client.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp, body
}

// tag is one line of a playlist: a tag's name and attributes, or a URI.
type tag struct {
	name  string            // "#EXT-X-PART", or "" for a URI line
	value string            // what follows the colon, or the URI
	attrs map[string]string // attribute list, quotes removed
}

// parsePlaylist splits a playlist into lines and checks the syntax every
// line must have (RFC 8216bis §4): tags start with #EXT, URIs are not
// empty, the first line is #EXTM3U.
func parsePlaylist(t *testing.T, body []byte) []tag {
	t.Helper()
	lines := strings.Split(strings.TrimSuffix(string(body), "\n"), "\n")
	if lines[0] != "#EXTM3U" {
		t.Fatalf("first line %q, want #EXTM3U", lines[0])
	}
	var tags []tag
	for _, l := range lines[1:] {
		if l == "" || strings.TrimSpace(l) != l {
			t.Fatalf("blank or padded line %q", l)
		}
		if !strings.HasPrefix(l, "#") {
			tags = append(tags, tag{value: l})
			continue
		}
		if !strings.HasPrefix(l, "#EXT") {
			t.Fatalf("comment line %q: the playlist has none", l)
		}
		name, value, _ := strings.Cut(l, ":")
		tg := tag{name: name, value: value, attrs: map[string]string{}}
		if strings.Contains(value, "=") {
			for _, a := range strings.Split(value, ",") {
				k, v, ok := strings.Cut(a, "=")
				if !ok || k == "" || strings.ToUpper(k) != k {
					t.Fatalf("line %q: attribute %q", l, a)
				}
				tg.attrs[k] = strings.Trim(v, `"`)
			}
		}
		tags = append(tags, tg)
	}
	return tags
}

func named(tags []tag, name string) []tag {
	var out []tag
	for _, tg := range tags {
		if tg.name == name {
			out = append(out, tg)
		}
	}
	return out
}

func TestPlaylistListsSegmentsPartsAndTheNextPart(t *testing.T) {
	seg, f := newTestSegmenter(t)
	f.pages(t, 12*pagesPerPart+pagesPerPart/2) // 1.2 segments and a half part
	srv := serve(t, seg, &Handler{})
	resp, body := get(t, srv.URL+"/hls/x/index.m3u8")
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("status %d", resp.StatusCode)
	}
	tags := parsePlaylist(t, body)
	for name, want := range map[string]string{
		"#EXT-X-VERSION":        "6",
		"#EXT-X-TARGETDURATION": "2",
		"#EXT-X-MEDIA-SEQUENCE": "0",
		"#EXT-X-PART-INF":       "PART-TARGET=0.2",
		"#EXT-X-SERVER-CONTROL": "CAN-BLOCK-RELOAD=YES,PART-HOLD-BACK=0.6",
		"#EXT-X-MAP":            `URI="` + seg.initName + `"`,
		"#EXT-X-PRELOAD-HINT":   `TYPE=PART,URI="1.2.m4s"`,
	} {
		if got := named(tags, name); len(got) != 1 || got[0].value != want {
			t.Errorf("%s: %v, want one with %q", name, got, want)
		}
	}
	parts := named(tags, "#EXT-X-PART")
	if len(parts) != 12 {
		t.Fatalf("%d parts, want 12", len(parts))
	}
	for i, p := range parts {
		want := fmt.Sprintf("%d.%d.m4s", i/10, i%10)
		if p.attrs["DURATION"] != "0.2" || p.attrs["URI"] != want || p.attrs["INDEPENDENT"] != "YES" {
			t.Errorf("part %d: %v, want 0.2 s, %s, independent", i, p.attrs, want)
		}
	}
	if got := named(tags, "#EXTINF"); len(got) != 1 || got[0].value != "2," {
		t.Errorf("EXTINF %v, want one of 2 s", got)
	}
	// The first segment is dated: its first sample was played 100 ms
	// before the end of the first page, when the clock was read.
	pdts := named(tags, "#EXT-X-PROGRAM-DATE-TIME")
	if len(pdts) != 1 || tags[slices.IndexFunc(tags, func(tg tag) bool { return tg.name == "#EXT-X-PROGRAM-DATE-TIME" })+1].value != `DURATION=0.2,URI="0.0.m4s",INDEPENDENT=YES` {
		t.Fatalf("program date-times %v, want one, before the first segment", pdts)
	}
	if d, err := time.Parse(time.RFC3339Nano, pdts[0].value); err != nil || !d.Equal(time.Date(2026, 12, 4, 20, 59, 59, 900e6, time.UTC)) {
		t.Errorf("program date-time %s (%v), want 20:59:59.900Z", pdts[0].value, err)
	}
	// The whole segment follows its EXTINF, and everything named is served.
	var uris []string
	for i, tg := range tags {
		if tg.name == "" {
			if tags[i-1].name != "#EXTINF" {
				t.Errorf("URI %q does not follow an EXTINF", tg.value)
			}
			uris = append(uris, tg.value)
		}
	}
	for _, p := range parts {
		uris = append(uris, p.attrs["URI"])
	}
	for _, u := range append(uris, seg.initName) {
		if resp, _ := get(t, srv.URL+"/hls/x/"+u); resp.StatusCode != http.StatusOK {
			t.Errorf("%s: status %d", u, resp.StatusCode)
		}
	}
}

func TestPlaylistKeepsTheWindowAndPartsOfTheLastSegments(t *testing.T) {
	seg, f := newTestSegmenter(t)
	f.pages(t, 41*partsPerSegment*pagesPerPart+pagesPerPart) // 41 segments and a part
	tags := parsePlaylist(t, seg.state.Load().playlist)
	// 30 s: 14 complete segments and the one in progress.
	if got := named(tags, "#EXT-X-MEDIA-SEQUENCE"); got[0].value != "27" {
		t.Errorf("media sequence %s, want 27", got[0].value)
	}
	if got := len(named(tags, "#EXTINF")); got != 14 {
		t.Errorf("%d segments listed, want 14", got)
	}
	parts := named(tags, "#EXT-X-PART")
	if len(parts) != 3*partsPerSegment+1 || parts[0].attrs["URI"] != "38.0.m4s" {
		t.Errorf("%d parts from %v, want 31 from 38.0.m4s", len(parts), parts[0].attrs)
	}
	// Segments that left the playlist stay a little longer, then go.
	srv := serve(t, seg, &Handler{})
	for name, want := range map[string]int{"26.m4s": 200, "25.m4s": 200, "24.m4s": 404, "25.3.m4s": 200, "24.3.m4s": 404} {
		if resp, _ := get(t, srv.URL+"/hls/x/"+name); resp.StatusCode != want {
			t.Errorf("%s: status %d, want %d", name, resp.StatusCode, want)
		}
	}
}

func TestMediaIsImmutableAndThePlaylistShortLived(t *testing.T) {
	seg, f := newTestSegmenter(t)
	f.pages(t, 2*partsPerSegment*pagesPerPart)
	srv := serve(t, seg, &Handler{})
	for _, c := range []struct{ path, typ, cache string }{
		{seg.initName, "audio/mp4", "public, max-age=31536000, immutable"},
		{"0.m4s", "audio/mp4", "public, max-age=31536000, immutable"},
		{"1.9.m4s", "audio/mp4", "public, max-age=31536000, immutable"},
		{"index.m3u8", "application/vnd.apple.mpegurl", "public, max-age=1"},
		{"index.m3u8?_HLS_msn=1&_HLS_part=3", "application/vnd.apple.mpegurl", "public, max-age=6"},
		{"7.m4s", "text/plain; charset=utf-8", "no-store"},
		{"index.m3u8?_HLS_part=3", "text/plain; charset=utf-8", "no-store"},
	} {
		resp, body := get(t, srv.URL+"/hls/x/"+c.path)
		if got := resp.Header.Get("Content-Type"); got != c.typ {
			t.Errorf("%s: Content-Type %q, want %q", c.path, got, c.typ)
		}
		if got := resp.Header.Get("Cache-Control"); got != c.cache {
			t.Errorf("%s: Cache-Control %q, want %q", c.path, got, c.cache)
		}
		if resp.StatusCode == http.StatusOK && !resp.Uncompressed && resp.ContentLength != int64(len(body)) {
			t.Errorf("%s: Content-Length %d for %d bytes", c.path, resp.ContentLength, len(body))
		}
	}
	// A segment is one fragment of its packets, numbered as its first part;
	// a part, one of its own.
	var samples []fmp4.Sample
	for i := range partsPerSegment * partSamples / frameSamples {
		samples = append(samples, fmp4.Sample{Data: frame(partsPerSegment*partSamples/frameSamples + i), Duration: frameSamples})
	}
	if _, whole := get(t, srv.URL+"/hls/x/1.m4s"); !bytes.Equal(whole, fmp4.AppendFragment(nil, 11, segmentSamples, samples)) {
		t.Errorf("segment 1 is not the fragment of its packets")
	}
	if _, p := get(t, srv.URL+"/hls/x/1.3.m4s"); !bytes.Equal(p, fmp4.AppendFragment(nil, 14, segmentSamples+3*partSamples, samples[30:40])) {
		t.Errorf("part 1.3 is not the fragment of its packets")
	}
	for _, path := range []string{
		"/hls/y/index.m3u8", "/hls/x/0.10.m4s", "/hls/x/a.m4s", "/hls/x/init.mp4", "/other/x/0.m4s", "/hls/x/0/0.m4s",
		"/hls/x/00.m4s", "/hls/x/0.01.m4s", "/hls/x/+0.m4s", "/hls/x/0.-1.m4s",
	} {
		if resp, _ := get(t, srv.URL+path); resp.StatusCode != http.StatusNotFound {
			t.Errorf("%s: status %d, want 404", path, resp.StatusCode)
		}
	}
}

func TestPlaylistIsGzippedForClientsThatAcceptIt(t *testing.T) {
	seg, f := newTestSegmenter(t)
	f.pages(t, 3*partsPerSegment*pagesPerPart)
	srv := serve(t, seg, &Handler{})
	client := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{DisableCompression: true}}
	for accept, gzipped := range map[string]bool{
		"": false, "gzip": true, "br, gzip;q=0.5": true, "gzip;q=0": false, "deflate": false, "GZIP ; q=1.0": true,
	} {
		req, _ := http.NewRequest(http.MethodGet, srv.URL+"/hls/x/index.m3u8", nil)
		if accept != "" {
			req.Header.Set("Accept-Encoding", accept)
		}
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil {
			t.Fatal(err)
		}
		if got := resp.Header.Get("Content-Encoding") == "gzip"; got != gzipped || resp.Header.Get("Vary") != "Accept-Encoding" {
			t.Errorf("Accept-Encoding %q: Content-Encoding %q, Vary %q", accept, resp.Header.Get("Content-Encoding"), resp.Header.Get("Vary"))
			continue
		}
		if gzipped {
			zr, err := gzip.NewReader(bytes.NewReader(body))
			if err != nil {
				t.Fatal(err)
			}
			if body, err = io.ReadAll(zr); err != nil {
				t.Fatal(err)
			}
		}
		if !bytes.Equal(body, seg.state.Load().playlist) {
			t.Errorf("Accept-Encoding %q: the body is not the playlist", accept)
		}
	}
}

func TestAllowGatesThePlaylistOnly(t *testing.T) {
	seg, f := newTestSegmenter(t)
	f.pages(t, partsPerSegment*pagesPerPart)
	srv := serve(t, seg, &Handler{Allow: func(w http.ResponseWriter, r *http.Request) bool {
		if r.URL.Query().Get("ticket") == "ok" {
			return true
		}
		http.Error(w, "no ticket", http.StatusUnauthorized)
		return false
	}})
	for path, want := range map[string]int{
		"index.m3u8": 401, "index.m3u8?ticket=ok": 200, "0.m4s": 200, "0.0.m4s": 200, seg.initName: 200,
	} {
		if resp, _ := get(t, srv.URL+"/hls/x/"+path); resp.StatusCode != want {
			t.Errorf("%s: status %d, want %d", path, resp.StatusCode, want)
		}
	}
}

// result is a response that came back from a goroutine.
type result struct {
	status int
	body   []byte
}

func getAsync(t *testing.T, url string) <-chan result {
	t.Helper()
	ch := make(chan result, 1)
	go func() {
		client := &http.Client{Timeout: 30 * time.Second}
		resp, err := client.Get(url)
		if err != nil {
			ch <- result{status: -1, body: []byte(err.Error())}
			return
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		ch <- result{status: resp.StatusCode, body: body}
	}()
	return ch
}

func TestBlockingReloadReturnsWhenThePartIsAdded(t *testing.T) {
	seg, f := newTestSegmenter(t)
	f.pages(t, 3*pagesPerPart) // parts 0.0 to 0.2
	srv := serve(t, seg, &Handler{})
	for _, q := range []string{"_HLS_msn=0&_HLS_part=3", "_HLS_msn=1"} {
		ch := getAsync(t, srv.URL+"/hls/x/index.m3u8?"+q)
		// Whatever the machine's speed, nothing may come before the part.
		select {
		case r := <-ch:
			t.Fatalf("%s: answered %d before the part existed", q, r.status)
		case <-time.After(100 * time.Millisecond):
		}
		// The first waits for part 0.3; the second for segment 1 whole,
		// 16 parts later.
		want, parts := "0.3.m4s", 1
		if q == "_HLS_msn=1" {
			want, parts = "\n1.m4s\n", 16
		}
		f.pages(t, parts*pagesPerPart)
		select {
		case r := <-ch:
			if r.status != http.StatusOK || !bytes.Contains(r.body, []byte(want)) {
				t.Fatalf("%s: status %d, body without %s:\n%s", q, r.status, want, r.body)
			}
		case <-time.After(30 * time.Second):
			t.Fatalf("%s: no answer 30 s after the part was added", q)
		}
	}
}

func TestBlockingReloadAnswersAtOnceWhatExists(t *testing.T) {
	seg, f := newTestSegmenter(t)
	f.pages(t, 3*partsPerSegment*pagesPerPart) // segments 0 to 2, complete
	srv := serve(t, seg, &Handler{MaxBlock: time.Hour})
	for _, q := range []string{
		"_HLS_msn=1&_HLS_part=4",  // a part in the playlist
		"_HLS_msn=2",              // a complete segment
		"_HLS_msn=1&_HLS_part=9",  // the last part of a segment
		"_HLS_msn=1&_HLS_part=12", // past it: part 0 of segment 2 (§6.2.5.2)
	} {
		if resp, _ := get(t, srv.URL+"/hls/x/index.m3u8?"+q); resp.StatusCode != http.StatusOK {
			t.Errorf("%s: status %d, want 200", q, resp.StatusCode)
		}
	}
}

func TestBlockingReloadRefusesTheFarFuture(t *testing.T) {
	seg, f := newTestSegmenter(t)
	f.pages(t, 12*pagesPerPart) // segment 0 and parts 1.0, 1.1
	srv := serve(t, seg, &Handler{MaxBlock: time.Hour})
	for _, q := range []string{
		"_HLS_msn=4",              // more than two segments past the last
		"_HLS_msn=2&_HLS_part=7",  // 16 parts past the newest: over the Advance Part Limit
		"_HLS_msn=1&_HLS_part=x",  // not a number
		"_HLS_msn=-1",             // not a number either
		"_HLS_part=2",             // a part without its segment
		"_HLS_msn=1&_HLS_part=-2", // negative
	} {
		if resp, _ := get(t, srv.URL+"/hls/x/index.m3u8?"+q); resp.StatusCode != http.StatusBadRequest {
			t.Errorf("%s: status %d, want 400", q, resp.StatusCode)
		}
	}
}

func TestBlockingReloadGivesUpWithServiceUnavailable(t *testing.T) {
	seg, f := newTestSegmenter(t)
	f.pages(t, 3*pagesPerPart)
	srv := serve(t, seg, &Handler{MaxBlock: 50 * time.Millisecond})
	// RFC 8216bis §6.2.5.2: after three target durations the server
	// SHOULD answer 503, not a playlist without what was asked.
	if resp, _ := get(t, srv.URL+"/hls/x/index.m3u8?_HLS_msn=0&_HLS_part=3"); resp.StatusCode != http.StatusServiceUnavailable {
		t.Errorf("status %d, want 503", resp.StatusCode)
	}
}

func TestHintedPartIsHeldUntilItIsWhole(t *testing.T) {
	seg, f := newTestSegmenter(t)
	f.pages(t, 3*pagesPerPart+1) // half of part 0.3 pending
	srv := serve(t, seg, &Handler{})
	ch := getAsync(t, srv.URL+"/hls/x/0.3.m4s")
	select {
	case r := <-ch:
		t.Fatalf("answered %d before the part was whole", r.status)
	case <-time.After(100 * time.Millisecond):
	}
	f.pages(t, 1)
	select {
	case r := <-ch:
		want := seg.state.Load().segments[0].parts[3].data
		if r.status != http.StatusOK || !bytes.Equal(r.body, want) {
			t.Fatalf("status %d, %d bytes; want 200, the part's %d", r.status, len(r.body), len(want))
		}
	case <-time.After(30 * time.Second):
		t.Fatal("no answer 30 s after the part was made")
	}
	// A part beyond the next segment is not hinted: 404 at once.
	if resp, _ := get(t, srv.URL+"/hls/x/2.0.m4s"); resp.StatusCode != http.StatusNotFound {
		t.Errorf("2.0.m4s: status %d, want 404", resp.StatusCode)
	}
}

func TestPlaylistWaitsForTheFirstPart(t *testing.T) {
	seg, f := newTestSegmenter(t)
	srv := serve(t, seg, &Handler{})
	ch := getAsync(t, srv.URL+"/hls/x/index.m3u8")
	f.pages(t, pagesPerPart)
	select {
	case r := <-ch:
		if r.status != http.StatusOK || !bytes.Contains(r.body, []byte("0.0.m4s")) {
			t.Fatalf("status %d:\n%s", r.status, r.body)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("no playlist 30 s after the first part")
	}
}

func TestFinishEndsThePlaylistAndIgnoresDirectives(t *testing.T) {
	seg, f := newTestSegmenter(t)
	f.pages(t, 13*pagesPerPart+1)
	seg.Finish()
	if err := seg.Add(f.granule+960, [][]byte{frame(0)}); !errors.Is(err, ErrEnded) {
		t.Errorf("Add after Finish: %v, want ErrEnded", err)
	}
	srv := serve(t, seg, &Handler{MaxBlock: time.Hour})
	resp, body := get(t, srv.URL+"/hls/x/index.m3u8?_HLS_msn=9&_HLS_part=1")
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("status %d", resp.StatusCode)
	}
	tags := parsePlaylist(t, body)
	if tags[len(tags)-1].name != "#EXT-X-ENDLIST" || len(named(tags, "#EXT-X-PRELOAD-HINT")) != 0 {
		t.Errorf("playlist does not end with ENDLIST alone:\n%s", body)
	}
	// The last segment holds what was left: three parts and a 100 ms one.
	if inf := named(tags, "#EXTINF"); len(inf) != 2 || inf[1].value != "0.7," {
		t.Errorf("EXTINF %v, want 2 s then 0.7 s", inf)
	}
}

func TestGapMarksADiscontinuityAndGoingBackIsRefused(t *testing.T) {
	seg, f := newTestSegmenter(t)
	f.pages(t, 5*pagesPerPart)
	f.granule += 10 * segmentSamples // the program jumps 20 s ahead
	f.pages(t, 10*partsPerSegment*pagesPerPart)
	tags := parsePlaylist(t, seg.state.Load().playlist)
	if got := named(tags, "#EXT-X-DISCONTINUITY"); len(got) != 1 {
		t.Errorf("%d discontinuities, want 1", len(got))
	}
	if got := named(tags, "#EXT-X-PROGRAM-DATE-TIME"); len(got) != 2 {
		t.Errorf("%d program date-times, want 2: the first segment's and the jump's", len(got))
	}
	f.pages(t, 6*partsPerSegment*pagesPerPart) // the discontinuity leaves the playlist
	tags = parsePlaylist(t, seg.state.Load().playlist)
	if got := named(tags, "#EXT-X-DISCONTINUITY-SEQUENCE"); len(got) != 1 || got[0].value != "1" || len(named(tags, "#EXT-X-DISCONTINUITY")) != 0 {
		t.Errorf("discontinuity sequence %v, want 1 and no discontinuity left", got)
	}
	if err := seg.Add(f.granule-960, [][]byte{frame(0)}); !errors.Is(err, ErrBackwards) {
		t.Errorf("a page from the past: %v, want ErrBackwards", err)
	}
	if err := seg.Add(100, [][]byte{frame(0)}); !errors.Is(err, ErrBackwards) {
		t.Errorf("a page before granule 0: %v, want ErrBackwards", err)
	}
	if err := seg.Add(f.granule+960, [][]byte{{}}); !errors.Is(err, ErrPacket) {
		t.Errorf("an empty packet: %v, want ErrPacket", err)
	}
}

// TestNodesJoiningLateNameAndBuildPartsAlike feeds one program to two
// segmenters, one from its start and one from 3.3 s in: the second starts
// at the next segment boundary, with the same names and bytes, so an edge
// joining late serves what its peers serve and caches stay coherent.
func TestNodesJoiningLateNameAndBuildPartsAlike(t *testing.T) {
	early, f1 := newTestSegmenter(t)
	late, f2 := newTestSegmenter(t)
	f1.pages(t, 33)
	f2.granule, f2.n = f1.granule, f1.n
	for range 60 {
		f1.pages(t, 1)
		f2.pages(t, 1)
	}
	a, b := early.state.Load(), late.state.Load()
	if b.segments[0].msn != 2 {
		t.Fatalf("the late segmenter starts at segment %d, want 2", b.segments[0].msn)
	}
	for _, g := range b.segments {
		h := a.segments[g.msn-a.segments[0].msn]
		for i := range g.parts {
			if !bytes.Equal(g.parts[i].data, h.parts[i].data) {
				t.Errorf("part %d.%d differs", g.msn, i)
			}
		}
	}
}

func TestNewSegmenterRefusesUnsupportedChannels(t *testing.T) {
	if _, err := NewSegmenter(Config{Channels: 6}); err == nil {
		t.Error("6 channels accepted")
	}
}

// FuzzHandler sends arbitrary paths, directives and Accept-Encoding values
// to a live space: the handler never panics and answers only with the
// statuses it documents.
func FuzzHandler(f *testing.F) {
	f.Add("/hls/x/index.m3u8", "_HLS_msn=1&_HLS_part=3", "gzip")
	f.Add("/hls/x/1.9.m4s", "", "")
	f.Add("/hls/x/18446744073709551615.9.m4s", "_HLS_msn=18446744073709551615", "gzip;q=0")
	f.Add("/hls/x/init-00000000.mp4", "_HLS_part=1", "br")
	seg, fd := newTestSegmenter(f)
	fd.pages(f, 25*pagesPerPart)
	h := &Handler{Prefix: "/hls/", Lookup: func(string) *Segmenter { return seg }, MaxBlock: time.Millisecond}
	f.Fuzz(func(t *testing.T, path, query, accept string) {
		req := httptest.NewRequest(http.MethodGet, "/", nil)
		req.URL.Path, req.URL.RawQuery = path, query
		req.Header.Set("Accept-Encoding", accept)
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		switch rec.Code {
		case http.StatusOK, http.StatusBadRequest, http.StatusNotFound, http.StatusServiceUnavailable:
		default:
			t.Fatalf("%s?%s: status %d", path, query, rec.Code)
		}
	})
}
