package main

import (
	"context"
	"io"
	"log/slog"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/media"
	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/chromedp"
)

// TEMPORARY exploration: deleted before hand-off.
func exploreListen(t *testing.T, bctx context.Context, opened *time.Time) func() {
	var mu sync.Mutex
	var lines []string
	var bytes = map[network.RequestID]int64{}
	add := func(f string, a ...any) {
		mu.Lock()
		defer mu.Unlock()
		lines = append(lines, time.Since(*opened).Round(time.Millisecond).String()+" "+fmt.Sprintf(f, a...))
	}
	lastLog := map[network.RequestID]time.Time{}
	chromedp.Listen(bctx, func(ev any) {
		switch e := ev.(type) {
		case *media.EventPlayerMessagesLogged:
			for _, m := range e.Messages {
				add("media msg %s: %s", m.Level, m.Message)
			}
		case *media.EventPlayerEventsAdded:
			for _, m := range e.Events {
				add("media event %s", m.Value)
			}
		case *media.EventPlayerPropertiesChanged:
			for _, p := range e.Properties {
				add("media prop %s=%s", p.Name, p.Value)
			}
		case *network.EventRequestWillBeSent:
			add("net req %s %s %v", e.RequestID, e.Request.URL, e.Request.Headers)
		case *network.EventResponseReceived:
			add("net resp %s %d", e.RequestID, e.Response.Status)
		case *network.EventLoadingFailed:
			add("net failed %s %s canceled=%v", e.RequestID, e.ErrorText, e.Canceled)
		case *network.EventDataReceived:
			mu.Lock()
			bytes[e.RequestID] += e.DataLength
			n := bytes[e.RequestID]
			last := lastLog[e.RequestID]
			if time.Since(last) > time.Second {
				lastLog[e.RequestID] = time.Now()
			}
			mu.Unlock()
			if time.Since(last) > time.Second {
				add("net data %s total %d", e.RequestID, n)
			}
		}
	})
	if _, err := chromedp.Call(bctx, media.Enable, struct{}{}); err != nil {
		t.Log(err)
	}
	if _, err := chromedp.Call(bctx, network.Enable, network.EnableParams{}); err != nil {
		t.Log(err)
	}
	return func() {
		mu.Lock()
		defer mu.Unlock()
		for _, l := range lines {
			t.Log(l)
		}
	}
}

func exploreMain(t *testing.T, bitrate int) *Main {
	m := NewMain()
	m.Config.Addr = "127.0.0.1:0"
	m.Config.DataDir = t.TempDir()
	m.Config.Live.Mix.Bitrate = bitrate
	m.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	if err := m.Run(context.Background()); err != nil {
		m.Close()
		t.Fatal(err)
	}
	return m
}
