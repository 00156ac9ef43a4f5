package main

import (
	"context"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/amphi-audio/amphi/internal/gate"
	"github.com/amphi-audio/amphi/internal/web"
)

// BenchmarkWebPoWWorker measures the page's own proof-of-work worker in
// Chromium: SHA-256 attempts per second. It reports ns per attempt and the
// expected solving time at gate.MaxVisitorDifficulty (2^d attempts), which
// is derived from it: a phone's browser is taken as 4× slower than this
// machine's (docs/BENCHMARKS.md).
//
//	go test ./cmd/amphi -run '^$' -bench WebPoWWorker -benchtime 1x
func BenchmarkWebPoWWorker(b *testing.B) {
	srv := httptest.NewServer(web.New(web.DefaultConfig()))
	defer srv.Close()
	bctx := startBrowser(b)
	ctx, cancel := context.WithTimeout(bctx, 60*time.Second)
	defer cancel()
	if err := chromedp.Do(ctx, chromedp.Navigate(srv.URL+"/static/app.css")); err != nil {
		b.Fatal(err)
	}
	// A difficulty no attempt reaches: the worker reports its progress
	// until it is stopped.
	const measure = `new Promise(resolve => {
		const w = new Worker('/static/pow-worker.js');
		let first = null;
		w.onmessage = e => {
			if (e.data.attempts === undefined) return;
			const now = performance.now();
			if (first === null) { first = {t: now, n: e.data.attempts}; return; }
			if (now - first.t >= 3000) {
				w.terminate();
				resolve((now - first.t) * 1e6 / (e.data.attempts - first.n));
			}
		};
		w.postMessage({challenge: 'amphi-benchmark-challenge-0123456789abcdef', difficulty: 64});
	})`
	for range b.N {
		ns, err := chromedp.Run(ctx, chromedp.Evaluate[float64](measure, chromedp.EvalAwaitPromise))
		if err != nil {
			b.Fatal(err)
		}
		b.ReportMetric(ns, "ns/attempt")
		b.ReportMetric(ns*(1<<gate.MaxVisitorDifficulty)/1e6, "ms@max-difficulty")
	}
}
