package stage

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/amphi-audio/amphi"
	"github.com/amphi-audio/amphi/internal/whip"
	"github.com/pion/ice/v4"
	"github.com/pion/rtp"
	"github.com/pion/sdp/v3"
	"github.com/pion/transport/v5"
	"github.com/pion/transport/v5/stdnet"
	"github.com/pion/webrtc/v4"
)

// waitFor is how long a test waits for something that takes milliseconds on
// loopback; it only bounds a failing test, it asserts no timing.
const waitFor = 10 * time.Second

// fakeMixer stands in for *mix.Mixer: it records what each source got.
type fakeMixer struct {
	mu      sync.Mutex
	sources map[string]*fakeSource
}

type fakeSource struct {
	mu       sync.Mutex
	payloads [][]byte
	seqs     []uint16
	closed   bool
}

func (m *fakeMixer) AddSource(id string) (Source, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.sources == nil {
		m.sources = make(map[string]*fakeSource)
	}
	if s := m.sources[id]; s != nil && !s.isClosed() {
		return nil, amphi.Errorf(amphi.EConflict, "source %q in use", id)
	}
	s := &fakeSource{}
	m.sources[id] = s
	return s, nil
}

func (m *fakeMixer) source(id string) *fakeSource {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.sources[id]
}

func (s *fakeSource) Push(seq uint16, _ uint32, payload []byte) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		panic("Push after Close")
	}
	s.payloads = append(s.payloads, bytes.Clone(payload))
	s.seqs = append(s.seqs, seq)
}

func (s *fakeSource) Close() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.closed = true
}

func (s *fakeSource) isClosed() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.closed
}

func (s *fakeSource) all() [][]byte {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([][]byte(nil), s.payloads...)
}

// count returns how many payloads the source got that start with prefix.
func (s *fakeSource) count(prefix string) int {
	n := 0
	for _, p := range s.all() {
		if strings.HasPrefix(string(p), prefix) {
			n++
		}
	}
	return n
}

func (s *fakeSource) sequence() []uint16 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]uint16(nil), s.seqs...)
}

// testStage is a stage behind a minimal WHIP handler on loopback.
type testStage struct {
	*Stage
	mixer *fakeMixer
	srv   *httptest.Server
}

func newTestStage(t *testing.T, tweak func(*Config)) *testStage {
	t.Helper()
	m := &fakeMixer{}
	cfg := DefaultConfig()
	cfg.AddSource = m.AddSource
	cfg.Logger = slog.New(slog.DiscardHandler)
	if tweak != nil {
		tweak(&cfg)
	}
	st, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ts := &testStage{Stage: st, mixer: m}
	ts.srv = httptest.NewServer(whipHandler(st))
	t.Cleanup(func() {
		if err := st.Close(); err != nil {
			t.Error(err)
		}
		ts.srv.Close()
	})
	return ts
}

// whipHandler is the least WHIP server: the bearer token is the speaker ID.
// The real one, with auth and limits, is the api package's.
func whipHandler(st *Stage) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("POST /whip", func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxOfferBytes))
		if err != nil {
			writeError(w, amphi.Errorf(amphi.ETooLarge, "body too large"))
			return
		}
		speaker := strings.TrimPrefix(r.Header.Get("Authorization"), "Bearer ")
		id, answer, err := st.Join(r.Context(), speaker, string(body))
		if err != nil {
			writeError(w, err)
			return
		}
		w.Header().Set("Content-Type", "application/sdp")
		w.Header().Set("Location", "/whip/"+id)
		w.WriteHeader(http.StatusCreated)
		io.WriteString(w, answer)
	})
	mux.HandleFunc("DELETE /whip/{id}", func(w http.ResponseWriter, r *http.Request) {
		if err := st.Leave(r.PathValue("id")); err != nil {
			writeError(w, err)
			return
		}
		w.WriteHeader(http.StatusOK)
	})
	return mux
}

func writeError(w http.ResponseWriter, err error) {
	status := map[string]int{
		amphi.EInvalid:     http.StatusBadRequest,
		amphi.ENotFound:    http.StatusNotFound,
		amphi.EConflict:    http.StatusConflict,
		amphi.EFull:        http.StatusServiceUnavailable,
		amphi.EUnsupported: http.StatusUnsupportedMediaType,
		amphi.ETooLarge:    http.StatusRequestEntityTooLarge,
	}[amphi.ErrorCode(err)]
	if status == 0 {
		status = http.StatusInternalServerError
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(map[string]any{"error": map[string]string{
		"code": amphi.ErrorCode(err), "message": amphi.ErrorMessage(err),
	}})
}

// recorder collects what a client hears, by slot.
type recorder struct {
	mu    sync.Mutex
	slots map[int][]heard
}

type heard struct {
	seq     uint16
	ts      uint32
	payload string
}

func (r *recorder) onPacket(slot int, pkt *rtp.Packet) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.slots == nil {
		r.slots = make(map[int][]heard)
	}
	r.slots[slot] = append(r.slots[slot], heard{pkt.SequenceNumber, pkt.Timestamp, string(pkt.Payload)})
}

func (r *recorder) slot(i int) []heard {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]heard(nil), r.slots[i]...)
}

// count returns how many packets on slot i carry payloads starting with prefix.
func (r *recorder) count(i int, prefix string) int {
	n := 0
	for _, h := range r.slot(i) {
		if strings.HasPrefix(h.payload, prefix) {
			n++
		}
	}
	return n
}

type client struct {
	*whip.Session
	rec *recorder
}

func (ts *testStage) dial(t *testing.T, speaker string, cfg whip.Config) *client {
	t.Helper()
	cfg.Logger = slog.New(slog.DiscardHandler)
	cfg.HTTPClient = ts.srv.Client()
	ctx, cancel := context.WithTimeout(context.Background(), waitFor)
	defer cancel()
	s, err := whip.Dial(ctx, ts.srv.URL+"/whip", speaker, cfg)
	if err != nil {
		t.Fatalf("dial %s: %v", speaker, err)
	}
	c := &client{Session: s, rec: &recorder{}}
	s.OnPacket(c.rec.onPacket)
	t.Cleanup(func() { s.Close(context.Background()) })
	select {
	case <-s.Connected():
	case <-time.After(waitFor):
		t.Fatalf("%s never connected", speaker)
	}
	return c
}

// eventually polls cond until it holds, failing the test after waitFor.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(waitFor)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// talk makes each client send numbered packets "<prefix>-<n>" every 10 ms
// until done says stop.
func talk(t *testing.T, done func() bool, clients map[string]*client) {
	t.Helper()
	deadline := time.Now().Add(waitFor)
	for i := 0; !done(); i++ {
		if time.Now().After(deadline) {
			t.Fatal("timed out while talking")
		}
		for prefix, c := range clients {
			if err := c.WriteOpus(fmt.Appendf(nil, "%s-%05d", prefix, i), 20*time.Millisecond); err != nil {
				t.Fatal(err)
			}
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// assertContinuous checks that a slot's stream has no gap or repeat in
// sequence numbers and that its timestamps only move forward.
func assertContinuous(t *testing.T, name string, hs []heard) {
	t.Helper()
	for i := 1; i < len(hs); i++ {
		if hs[i].seq != hs[i-1].seq+1 {
			t.Fatalf("%s: seq %d follows %d (packet %d, %q after %q)", name, hs[i].seq, hs[i-1].seq, i, hs[i].payload, hs[i-1].payload)
		}
		if int32(hs[i].ts-hs[i-1].ts) <= 0 {
			t.Fatalf("%s: timestamp %d follows %d (packet %d)", name, hs[i].ts, hs[i-1].ts, i)
		}
	}
}

func waitConnected(t *testing.T, st *Stage, n int) {
	t.Helper()
	eventually(t, fmt.Sprintf("%d speakers connected", n), func() bool {
		c := 0
		for _, sp := range st.Speakers() {
			if sp.State == webrtc.PeerConnectionStateConnected.String() {
				c++
			}
		}
		return c == n
	})
}

func TestSpeakersHearEachOtherAndFeedTheMixer(t *testing.T) {
	ts := newTestStage(t, nil)
	a := ts.dial(t, "alice", whip.Config{})
	b := ts.dial(t, "bob", whip.Config{})
	waitConnected(t, ts.Stage, 2)

	const want = 30
	talk(t, func() bool { return a.rec.count(0, "B-") >= want && b.rec.count(0, "A-") >= want },
		map[string]*client{"A": a, "B": b})

	for name, c := range map[string]*client{"alice": a, "bob": b} {
		assertContinuous(t, name+" slot 0", c.rec.slot(0))
		for i := 1; i < 12; i++ {
			if n := len(c.rec.slot(i)); n != 0 {
				t.Errorf("%s heard %d packets on free slot %d", name, n, i)
			}
		}
	}
	if got := a.rec.count(0, "A-"); got != 0 {
		t.Errorf("alice heard herself %d times", got)
	}
	for id, prefix := range map[string]string{"alice": "A-", "bob": "B-"} {
		ps := ts.mixer.source(id).all()
		if len(ps) < want {
			t.Errorf("mixer source %s got %d packets, want at least %d", id, len(ps), want)
		}
		for _, p := range ps {
			if !strings.HasPrefix(string(p), prefix) {
				t.Fatalf("mixer source %s got %q", id, p)
			}
		}
	}
	sps := ts.Speakers()
	if len(sps) != 2 || sps[0].ID != "alice" || sps[0].Hears[0] != "bob" || sps[1].Hears[0] != "alice" || len(sps[0].Hears) != 12 {
		t.Errorf("Speakers() = %+v", sps)
	}
	if st := ts.Stats(); st.Forwarded < 2*want || st.PacketsIn < 2*want {
		t.Errorf("Stats() = %+v", st)
	}
}

func TestSlotPassesToNextSpeakerWithContinuousStream(t *testing.T) {
	ts := newTestStage(t, nil)
	// The listener offers one slot: it hears the first other speaker only,
	// and the second once the first leaves.
	l := ts.dial(t, "listener", whip.Config{Slots: 1})
	a := ts.dial(t, "alice", whip.Config{})
	b := ts.dial(t, "bob", whip.Config{})
	waitConnected(t, ts.Stage, 3)

	talk(t, func() bool { return l.rec.count(0, "A-") >= 20 }, map[string]*client{"A": a, "B": b})
	if n := l.rec.count(0, "B-"); n != 0 {
		t.Fatalf("listener heard bob %d times while alice held its only slot", n)
	}
	if err := a.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	talk(t, func() bool { return l.rec.count(0, "B-") >= 20 }, map[string]*client{"B": b})

	hs := l.rec.slot(0)
	assertContinuous(t, "listener slot 0", hs)
	if got := ts.Speakers()[0].Hears; len(got) != 1 || got[0] != "bob" {
		t.Errorf("listener hears %v, want [bob]", got)
	}
}

func TestJoinRefusesBadOffers(t *testing.T) {
	ts := newTestStage(t, nil)
	tests := []struct {
		name  string
		offer string
		code  string
	}{
		{"empty", "", amphi.EInvalid},
		{"garbage", "hello, world", amphi.EInvalid},
		{"truncated", "v=0\r\no=- 1 1 IN IP4 0.0.0.0\r\n", amphi.EInvalid},
		{"video only", pionOffer(t, videoOnly), amphi.EUnsupported},
		{"pcmu only", pionOffer(t, pcmuOnly), amphi.EUnsupported},
		{"receive only", pionOffer(t, recvOnlyOpus), amphi.EInvalid},
		{"no ice credentials", "v=0\r\no=- 1 1 IN IP4 0.0.0.0\r\ns=-\r\nt=0 0\r\n" +
			"m=audio 9 UDP/TLS/RTP/SAVPF 111\r\nc=IN IP4 0.0.0.0\r\na=mid:0\r\na=sendonly\r\na=rtpmap:111 opus/48000/2\r\n", amphi.EInvalid},
		{"too large", strings.Repeat("a", maxOfferBytes+1), amphi.ETooLarge},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, _, err := ts.Join(context.Background(), "alice", tt.offer)
			if got := amphi.ErrorCode(err); got != tt.code {
				t.Fatalf("Join: %v (code %q), want code %q", err, got, tt.code)
			}
		})
	}
	if n := len(ts.Speakers()); n != 0 {
		t.Errorf("%d speakers after refused joins", n)
	}
}

func TestOfferWithVideoJoinsWithAudioOnly(t *testing.T) {
	ts := newTestStage(t, nil)
	_, answer, err := ts.Join(context.Background(), "obs", pionOffer(t, audioAndVideo))
	if err != nil {
		t.Fatal(err)
	}
	// The video m-line is answered, as SDP requires, but rejected (port 0).
	if strings.Count(answer, "m=") != 2 || strings.Contains(answer, "VP8") {
		t.Errorf("answer:\n%s", answer)
	}
}

func TestAnswerSendsOnSlotsAndReceivesOnMicrophone(t *testing.T) {
	ts := newTestStage(t, nil)
	_, answer, err := ts.Join(context.Background(), "alice", pionOffer(t, whipLike))
	if err != nil {
		t.Fatal(err)
	}
	var sd sdp.SessionDescription
	if err := sd.UnmarshalString(answer); err != nil {
		t.Fatal(err)
	}
	if len(sd.MediaDescriptions) != 13 {
		t.Fatalf("answer has %d m-lines, want 13", len(sd.MediaDescriptions))
	}
	ssrcs := make(map[string]bool)
	for i, m := range sd.MediaDescriptions {
		dir := directionOf(m.Attributes, "sendrecv")
		ssrc, hasSSRC := m.Attribute("ssrc")
		switch {
		case i == 0 && (dir != "recvonly" || hasSSRC):
			t.Errorf("microphone m-line answered %s (ssrc %q), want recvonly without ssrc", dir, ssrc)
		case i > 0 && (dir != "sendonly" || !hasSSRC):
			t.Errorf("slot m-line %d answered %s (ssrc %q), want sendonly with ssrc", i, dir, ssrc)
		case i > 0:
			ssrcs[strings.Fields(ssrc)[0]] = true
		}
	}
	if len(ssrcs) != 12 {
		t.Errorf("%d distinct slot SSRCs, want 12", len(ssrcs))
	}
}

func TestFourteenthSpeakerIsRefused(t *testing.T) {
	ts := newTestStage(t, nil)
	offer := pionOffer(t, whipLike)
	ctx := context.Background()
	for i := range 13 {
		if _, _, err := ts.Join(ctx, fmt.Sprint("speaker", i), offer); err != nil {
			t.Fatalf("join %d: %v", i, err)
		}
	}
	_, _, err := ts.Join(ctx, "speaker13", offer)
	if amphi.ErrorCode(err) != amphi.EFull {
		t.Fatalf("14th join: %v, want %s", err, amphi.EFull)
	}
	// Every speaker has a slot for each of the 12 others.
	for _, sp := range ts.Speakers() {
		for i, h := range sp.Hears {
			if h == "" || h == sp.ID {
				t.Fatalf("%s slot %d hears %q", sp.ID, i, h)
			}
		}
	}
}

func TestConcurrentJoinsNeverOverfillTheStage(t *testing.T) {
	ts := newTestStage(t, nil)
	offer := pionOffer(t, whipLike)
	var wg sync.WaitGroup
	var ok, full atomic.Int32
	for i := range 20 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, _, err := ts.Join(context.Background(), fmt.Sprint("speaker", i), offer)
			switch amphi.ErrorCode(err) {
			case "":
				ok.Add(1)
			case amphi.EFull:
				full.Add(1)
			default:
				t.Errorf("join %d: %v", i, err)
			}
		}()
	}
	wg.Wait()
	if ok.Load() != 13 || full.Load() != 7 || len(ts.Speakers()) != 13 {
		t.Errorf("%d joined, %d refused as full, %d on stage; want 13, 7, 13", ok.Load(), full.Load(), len(ts.Speakers()))
	}
}

func TestSameSpeakerJoiningAgainReplacesOldSession(t *testing.T) {
	ts := newTestStage(t, nil)
	offer := pionOffer(t, whipLike)
	ctx := context.Background()
	first, _, err := ts.Join(ctx, "alice", offer)
	if err != nil {
		t.Fatal(err)
	}
	second, _, err := ts.Join(ctx, "alice", offer)
	if err != nil {
		t.Fatal(err)
	}
	if err := ts.Leave(first); amphi.ErrorCode(err) != amphi.ENotFound {
		t.Errorf("Leave(old session) = %v, want %s", err, amphi.ENotFound)
	}
	if err := ts.Leave(second); err != nil {
		t.Errorf("Leave(new session) = %v", err)
	}
	if err := ts.Leave(second); amphi.ErrorCode(err) != amphi.ENotFound {
		t.Errorf("second Leave = %v, want %s", err, amphi.ENotFound)
	}
	if st := ts.Stats(); st.Replaced != 1 || st.Speakers != 0 {
		t.Errorf("Stats() = %+v", st)
	}
}

func TestVanishedSpeakerIsRemovedAndItsSlotFreed(t *testing.T) {
	ts := newTestStage(t, func(c *Config) { c.DisconnectTimeout = time.Second })
	// The stage is ICE-lite: it hears that a silent speaker is still there
	// only from the speaker's consent checks, so a test that shortens the
	// timeout to 1 s must have its speakers check more often than Pion's
	// default 2 s.
	checkOften := func(se *webrtc.SettingEngine) { se.SetICETimeouts(5*time.Second, 25*time.Second, 100*time.Millisecond) }
	b := ts.dial(t, "bob", whip.Config{ConfigureSettings: checkOften})

	t.Run("network gone", func(t *testing.T) {
		// The client's sockets start swallowing everything it sends, as if
		// its network dropped: no DTLS close, no DELETE.
		var dead atomic.Bool
		a := ts.dial(t, "alice", whip.Config{ConfigureSettings: func(se *webrtc.SettingEngine) {
			n, err := stdnet.NewNet()
			if err != nil {
				t.Fatal(err)
			}
			se.SetNet(blackholeNet{Net: n, dead: &dead})
			checkOften(se)
		}})
		waitConnected(t, ts.Stage, 2)
		eventually(t, "bob hears alice's slot assigned", func() bool { return ts.Speakers()[0].Hears[0] == "alice" })
		dead.Store(true)
		eventually(t, "alice removed", func() bool { return len(ts.Speakers()) == 1 })
		if got := ts.Speakers()[0].Hears[0]; got != "" {
			t.Errorf("bob's slot 0 still hears %q", got)
		}
		// Its session is gone: the DELETE finds nothing, which Close accepts.
		if err := a.Close(context.Background()); err != nil {
			t.Errorf("Close after removal: %v", err)
		}
	})

	t.Run("connection closed without DELETE", func(t *testing.T) {
		pc := rawPeer(t, whipLike)
		offer := gatheredOffer(t, pc)
		_, answer, err := ts.Join(context.Background(), "carol", offer)
		if err != nil {
			t.Fatal(err)
		}
		if err := pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeAnswer, SDP: answer}); err != nil {
			t.Fatal(err)
		}
		waitConnected(t, ts.Stage, 2)
		if err := pc.GracefulClose(); err != nil {
			t.Fatal(err)
		}
		eventually(t, "carol removed", func() bool { return len(ts.Speakers()) == 1 })
	})
	if st := ts.Stats(); st.Lost != 2 {
		t.Errorf("Stats().Lost = %d, want 2", st.Lost)
	}
	_ = b
}

func TestForeignPayloadTypeIsDroppedAndCounted(t *testing.T) {
	ts := newTestStage(t, nil)
	// Packets whose payload starts with X go out with payload type 96, which
	// the stage never negotiated.
	a := ts.dial(t, "alice", whip.Config{Knobs: whip.Knobs{OutgoingRTP: func(h *rtp.Header, payload []byte) {
		if len(payload) > 0 && payload[0] == 'X' {
			h.PayloadType = 96
		}
	}}})
	b := ts.dial(t, "bob", whip.Config{})
	waitConnected(t, ts.Stage, 2)

	talk(t, func() bool { return b.rec.count(0, "A-") >= 10 }, map[string]*client{"A": a})
	talk(t, func() bool { return ts.Stats().DroppedPayloadType >= 10 }, map[string]*client{"X": a})
	talk(t, func() bool { return b.rec.count(0, "A-") >= 20 }, map[string]*client{"A": a})

	if n := b.rec.count(0, "X-"); n != 0 {
		t.Errorf("bob heard %d foreign packets", n)
	}
	for _, p := range ts.mixer.source("alice").all() {
		if p[0] == 'X' {
			t.Fatalf("mixer got foreign packet %q", p)
		}
	}
	if sp := ts.Speakers()[0]; sp.Dropped < 10 {
		t.Errorf("alice Dropped = %d", sp.Dropped)
	}
}

func TestClassify(t *testing.T) {
	good := rtp.Packet{Header: rtp.Header{Version: 2, PayloadType: 111, SequenceNumber: 7, SSRC: 1}, Payload: []byte{1, 2, 3}}
	goodBytes, _ := good.Marshal()
	other := good
	other.PayloadType = 0
	otherBytes, _ := other.Marshal()
	tests := []struct {
		name string
		b    []byte
		want dropReason
	}{
		{"opus", goodBytes, dropNone},
		{"pcmu", otherBytes, dropPayloadType},
		{"empty", nil, dropMalformed},
		{"short header", goodBytes[:5], dropMalformed},
		{"csrc past end", append([]byte{0x8f}, goodBytes[1:12]...), dropMalformed},
	}
	for _, tt := range tests {
		var pkt rtp.Packet
		if got := classify(tt.b, &pkt, 111); got != tt.want {
			t.Errorf("%s: classify = %v, want %v", tt.name, got, tt.want)
		}
	}
}

func TestCloseLeavesNoGoroutines(t *testing.T) {
	before := runtime.NumGoroutine()
	func() {
		m := &fakeMixer{}
		cfg := DefaultConfig()
		cfg.AddSource = m.AddSource
		cfg.Logger = slog.New(slog.DiscardHandler)
		st, err := New(cfg)
		if err != nil {
			t.Fatal(err)
		}
		srv := httptest.NewServer(whipHandler(st))
		defer srv.Close()
		ts := &testStage{Stage: st, mixer: m, srv: srv}
		var cs []*client
		for _, id := range []string{"alice", "bob"} {
			cs = append(cs, ts.dial(t, id, whip.Config{}))
		}
		waitConnected(t, st, 2)
		talk(t, func() bool { return cs[1].rec.count(0, "A-") >= 5 }, map[string]*client{"A": cs[0]})
		if err := st.Close(); err != nil {
			t.Fatal(err)
		}
		if err := st.Close(); err != nil {
			t.Fatalf("second Close: %v", err)
		}
		if _, _, err := st.Join(context.Background(), "carol", pionOffer(t, whipLike)); amphi.ErrorCode(err) != amphi.EUnavailable {
			t.Errorf("Join after Close = %v", err)
		}
		for _, c := range cs {
			c.Close(context.Background())
		}
		srv.Client().CloseIdleConnections()
	}()
	deadline := time.Now().Add(waitFor)
	for runtime.NumGoroutine() > before {
		if time.Now().After(deadline) {
			buf := make([]byte, 1<<20)
			t.Fatalf("%d goroutines before, %d after:\n%s", before, runtime.NumGoroutine(), buf[:runtime.Stack(buf, true)])
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Offer shapes built by a real Pion peer.
const (
	whipLike      = iota // one sendonly Opus track and 12 recvonly slots
	videoOnly            // one sendonly VP8 m-line
	pcmuOnly             // one sendonly PCMU m-line
	recvOnlyOpus         // 12 recvonly Opus m-lines, no microphone
	audioAndVideo        // sendonly Opus and sendonly VP8, as OBS offers
)

// rawPeer returns a Pion peer set up to make an offer of the given shape.
func rawPeer(t *testing.T, shape int) *webrtc.PeerConnection {
	t.Helper()
	me := &webrtc.MediaEngine{}
	codec := opusCodec
	kind := webrtc.RTPCodecTypeAudio
	switch shape {
	case videoOnly:
		codec = webrtc.RTPCodecParameters{RTPCodecCapability: webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeVP8, ClockRate: 90000}, PayloadType: 96}
		kind = webrtc.RTPCodecTypeVideo
	case pcmuOnly:
		codec = webrtc.RTPCodecParameters{RTPCodecCapability: webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypePCMU, ClockRate: 8000}, PayloadType: 0}
	}
	if err := me.RegisterCodec(codec, kind); err != nil {
		t.Fatal(err)
	}
	vp8 := webrtc.RTPCodecParameters{RTPCodecCapability: webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeVP8, ClockRate: 90000}, PayloadType: 96}
	if shape == audioAndVideo {
		if err := me.RegisterCodec(vp8, webrtc.RTPCodecTypeVideo); err != nil {
			t.Fatal(err)
		}
	}
	var se webrtc.SettingEngine
	se.SetIncludeLoopbackCandidate(true)
	se.SetICEMulticastDNSMode(ice.MulticastDNSModeDisabled)
	api := webrtc.NewAPI(webrtc.WithMediaEngine(me), webrtc.WithSettingEngine(se))
	pc, err := api.NewPeerConnection(webrtc.Configuration{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pc.GracefulClose() })
	if shape != recvOnlyOpus {
		track, err := webrtc.NewTrackLocalStaticSample(codec.RTPCodecCapability, "mic", "raw")
		if err != nil {
			t.Fatal(err)
		}
		if _, err := pc.AddTransceiverFromTrack(track, webrtc.RTPTransceiverInit{Direction: webrtc.RTPTransceiverDirectionSendonly}); err != nil {
			t.Fatal(err)
		}
	}
	if shape == audioAndVideo {
		track, err := webrtc.NewTrackLocalStaticSample(vp8.RTPCodecCapability, "camera", "raw")
		if err != nil {
			t.Fatal(err)
		}
		if _, err := pc.AddTransceiverFromTrack(track, webrtc.RTPTransceiverInit{Direction: webrtc.RTPTransceiverDirectionSendonly}); err != nil {
			t.Fatal(err)
		}
	}
	if shape == whipLike || shape == recvOnlyOpus {
		for range 12 {
			if _, err := pc.AddTransceiverFromKind(webrtc.RTPCodecTypeAudio, webrtc.RTPTransceiverInit{Direction: webrtc.RTPTransceiverDirectionRecvonly}); err != nil {
				t.Fatal(err)
			}
		}
	}
	return pc
}

// gatheredOffer returns pc's offer with its candidates.
func gatheredOffer(t *testing.T, pc *webrtc.PeerConnection) string {
	t.Helper()
	offer, err := pc.CreateOffer(nil)
	if err != nil {
		t.Fatal(err)
	}
	gathered := webrtc.GatheringCompletePromise(pc)
	if err := pc.SetLocalDescription(offer); err != nil {
		t.Fatal(err)
	}
	select {
	case <-gathered:
	case <-time.After(waitFor):
		t.Fatal("gathering never completed")
	}
	return pc.LocalDescription().SDP
}

// pionOffer returns an offer of the given shape from a peer already closed:
// for Joins that are refused or never connect.
func pionOffer(t *testing.T, shape int) string {
	t.Helper()
	pc := rawPeer(t, shape)
	offer := gatheredOffer(t, pc)
	if err := pc.GracefulClose(); err != nil {
		t.Fatal(err)
	}
	return offer
}

// blackholeNet is the real network whose UDP sockets drop every write once
// dead is set: a peer that vanished without a word.
type blackholeNet struct {
	*stdnet.Net
	dead *atomic.Bool
}

func (n blackholeNet) ListenUDP(network string, laddr *net.UDPAddr) (transport.UDPConn, error) {
	c, err := n.Net.ListenUDP(network, laddr)
	if err != nil {
		return nil, err
	}
	return blackholeConn{UDPConn: c, dead: n.dead}, nil
}

type blackholeConn struct {
	transport.UDPConn
	dead *atomic.Bool
}

func (c blackholeConn) WriteTo(b []byte, addr net.Addr) (int, error) {
	if c.dead.Load() {
		return len(b), nil
	}
	return c.UDPConn.WriteTo(b, addr)
}

func (c blackholeConn) WriteToUDP(b []byte, addr *net.UDPAddr) (int, error) {
	if c.dead.Load() {
		return len(b), nil
	}
	return c.UDPConn.WriteToUDP(b, addr)
}

func (c blackholeConn) Write(b []byte) (int, error) {
	if c.dead.Load() {
		return len(b), nil
	}
	return c.UDPConn.Write(b)
}
