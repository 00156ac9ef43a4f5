package hls_test

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"

	"github.com/amphi-audio/amphi/internal/hls"
)

// A Segmenter is fed the program's pages; a Handler serves every space's
// Segmenter under one prefix.
func Example() {
	seg, err := hls.NewSegmenter(hls.DefaultConfig())
	if err != nil {
		panic(err)
	}
	silence := []byte{0xf8} // one 20 ms Opus frame
	var granule int64
	for range 10 { // ten pages of five 20 ms packets: 1 s
		granule += 5 * 960
		if err := seg.Add(granule, [][]byte{silence, silence, silence, silence, silence}); err != nil {
			panic(err)
		}
	}
	h := &hls.Handler{Prefix: "/hls/", Lookup: func(space string) *hls.Segmenter { return seg }}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/hls/demo/index.m3u8", nil))
	for _, line := range strings.Split(rec.Body.String(), "\n") {
		if strings.HasPrefix(line, "#EXT-X-PART:") || strings.HasPrefix(line, "#EXT-X-PRELOAD-HINT") {
			fmt.Println(line)
		}
	}
	// Output:
	// #EXT-X-PART:DURATION=0.2,URI="0.0.m4s",INDEPENDENT=YES
	// #EXT-X-PART:DURATION=0.2,URI="0.1.m4s",INDEPENDENT=YES
	// #EXT-X-PART:DURATION=0.2,URI="0.2.m4s",INDEPENDENT=YES
	// #EXT-X-PART:DURATION=0.2,URI="0.3.m4s",INDEPENDENT=YES
	// #EXT-X-PART:DURATION=0.2,URI="0.4.m4s",INDEPENDENT=YES
	// #EXT-X-PRELOAD-HINT:TYPE=PART,URI="0.5.m4s"
}
