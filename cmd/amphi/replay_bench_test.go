package main

import (
	"context"
	"io"
	"net/http"
	"strconv"
	"testing"
	"time"

	"github.com/amphi-audio/amphi/internal/client"
)

// BenchmarkReplayFirstByte is a replay's time to first byte: a GET of an
// ended space's recording with a Range from its middle, as a player
// seeking asks, to the first byte of the body, over loopback on a warm
// connection. The recording is 3 s long: what is timed is the lookup, the
// open and the Range, not the file's size.
//
//	go test ./cmd/amphi -run '^$' -bench ReplayFirstByte
func BenchmarkReplayFirstByte(b *testing.B) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	m := MustRunMain(b, b.TempDir())
	defer m.Close()
	c := client.New(m.URL())
	sp, err := c.Create(ctx, "Replayed", nil)
	if err != nil {
		b.Fatal(err)
	}
	time.Sleep(3 * time.Second)
	if _, err := c.End(ctx, sp.ID, sp.HostToken); err != nil {
		b.Fatal(err)
	}
	url := m.URL() + "/spaces/" + sp.ID + "/recording.opus"
	head, err := http.Head(url)
	if err != nil {
		b.Fatal(err)
	}
	head.Body.Close()
	from := "bytes=" + strconv.FormatInt(head.ContentLength/2, 10) + "-"
	one := make([]byte, 1)
	for b.Loop() {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		req.Header.Set("Range", from)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			b.Fatal(err)
		}
		if _, err := io.ReadFull(resp.Body, one); err != nil || resp.StatusCode != http.StatusPartialContent {
			b.Fatalf("%d, %v", resp.StatusCode, err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}
}
