package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pion/ice/v4"
	"github.com/pion/webrtc/v4"

	"github.com/amphi-audio/amphi/internal/client"
	"github.com/amphi-audio/amphi/internal/stage"
)

// The holes a security review found in WHIP, each attacked on a real
// server. Offers only ever name loopback addresses: a candidate elsewhere
// would have the server send real packets there.

// whipReply is what the server answered a WHIP request.
type whipReply struct {
	status     int
	location   string
	retryAfter string
	body       string
}

// postOffer sends offer to a space's WHIP endpoint through hc.
func postOffer(t *testing.T, hc *http.Client, endpoint, token, offer string) whipReply {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), http.MethodPost, endpoint, strings.NewReader(offer))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/sdp")
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := hc.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return whipReply{resp.StatusCode, resp.Header.Get("Location"), resp.Header.Get("Retry-After"), string(b)}
}

// errorCode returns the code of an API error body.
func errorCode(body string) string {
	var e struct {
		Error struct{ Code string } `json:"error"`
	}
	json.Unmarshal([]byte(body), &e)
	return e.Error.Code
}

// fromSource returns an HTTP client whose connections come from the
// loopback address ip, so the server sees a distinct source.
func fromSource(ip string) *http.Client {
	d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(ip)}, Timeout: 5 * time.Second}
	return &http.Client{Transport: &http.Transport{DialContext: d.DialContext}, Timeout: 30 * time.Second}
}

// speakerPeer is a speaker's Pion peer connection with one sendonly Opus
// track, and its gathered offer (one m-line), for tests that doctor the
// offer before posting it.
func speakerPeer(t *testing.T) (*webrtc.PeerConnection, string) {
	t.Helper()
	me := &webrtc.MediaEngine{}
	if err := me.RegisterDefaultCodecs(); err != nil {
		t.Fatal(err)
	}
	var se webrtc.SettingEngine
	se.SetIncludeLoopbackCandidate(true)
	se.SetICEMulticastDNSMode(ice.MulticastDNSModeDisabled)
	pc, err := webrtc.NewAPI(webrtc.WithMediaEngine(me), webrtc.WithSettingEngine(se)).NewPeerConnection(webrtc.Configuration{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pc.GracefulClose() })
	mic, err := webrtc.NewTrackLocalStaticSample(webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeOpus, ClockRate: 48000, Channels: 2}, "mic", "test")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := pc.AddTransceiverFromTrack(mic, webrtc.RTPTransceiverInit{Direction: webrtc.RTPTransceiverDirectionSendonly}); err != nil {
		t.Fatal(err)
	}
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
	case <-time.After(10 * time.Second):
		t.Fatal("gathering never completed")
	}
	return pc, pc.LocalDescription().SDP
}

// connect applies the server's answer to pc and waits until media can flow.
func connect(t *testing.T, pc *webrtc.PeerConnection, answer string) {
	t.Helper()
	up := make(chan struct{})
	var once sync.Once
	pc.OnConnectionStateChange(func(st webrtc.PeerConnectionState) {
		if st == webrtc.PeerConnectionStateConnected {
			once.Do(func() { close(up) })
		}
	})
	if err := pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeAnswer, SDP: answer}); err != nil {
		t.Fatal(err)
	}
	select {
	case <-up:
	case <-time.After(15 * time.Second):
		t.Fatal("the speaker never connected")
	}
}

// decoy is a UDP socket on a loopback address that is not the speaker's,
// counting what the server sends it.
type decoy struct {
	addr    *net.UDPAddr
	packets atomic.Int64
}

func listenDecoy(t *testing.T, ip string) *decoy {
	t.Helper()
	conn, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.ParseIP(ip)})
	if err != nil {
		t.Fatal(err)
	}
	d := &decoy{addr: conn.LocalAddr().(*net.UDPAddr)}
	done := make(chan struct{})
	go func() {
		defer close(done)
		buf := make([]byte, 1500)
		for {
			if _, _, err := conn.ReadFromUDP(buf); err != nil {
				return // closed
			}
			d.packets.Add(1)
		}
	}()
	t.Cleanup(func() {
		conn.Close()
		<-done
	})
	return d
}

// withDecoys appends a host candidate per decoy to a one-m-line offer, so
// they belong to its only (and bundle-tagged) media section.
func withDecoys(offer string, decoys []*decoy) string {
	var b strings.Builder
	b.WriteString(offer)
	for i, d := range decoys {
		fmt.Fprintf(&b, "a=candidate:%d 1 udp %d %s %d typ host\r\n", 9000+i, 2130706431-i, d.addr.IP, d.addr.Port)
	}
	return b.String()
}

// TestWHIPServerSendsNothingToCandidatesButTheCaller offers, next to the
// speaker's own candidates, host candidates on other loopback addresses: a
// full ICE agent would send connectivity checks to each (500 candidates
// once drew 8 000 packets). The stage is ICE-lite: the speaker connects
// and not one packet reaches the others.
func TestWHIPServerSendsNothingToCandidatesButTheCaller(t *testing.T) {
	t.Parallel()
	m := MustRunMain(t, t.TempDir())
	defer m.Close()
	c := client.New(m.URL())
	sp, err := c.Create(t.Context(), "Decoys", nil)
	if err != nil {
		t.Fatal(err)
	}
	var decoys []*decoy
	for i := range 8 {
		decoys = append(decoys, listenDecoy(t, fmt.Sprintf("127.0.0.%d", 2+i)))
	}
	pc, offer := speakerPeer(t)
	r := postOffer(t, http.DefaultClient, c.WHIPURL(sp.ID), sp.SpeakerToken, withDecoys(offer, decoys))
	if r.status != http.StatusCreated {
		t.Fatalf("offer with %d extra candidates: %d %s, want 201", len(decoys), r.status, r.body)
	}
	connect(t, pc, r.body)
	// A full agent checks every pair within its first rounds (every 200 ms
	// from the answer on); give it well over that.
	time.Sleep(2 * time.Second)
	for _, d := range decoys {
		if n := d.packets.Load(); n != 0 {
			t.Errorf("the server sent %d packets to candidate %v, which is not the caller", n, d.addr)
		}
	}
}

// TestWHIPRefusesOfferWithTooManyCandidates: past stage.MaxCandidates in
// one media section the offer is refused with a clear 400, before any
// connection exists.
func TestWHIPRefusesOfferWithTooManyCandidates(t *testing.T) {
	t.Parallel()
	m := MustRunMain(t, t.TempDir())
	defer m.Close()
	c := client.New(m.URL())
	sp, err := c.Create(t.Context(), "Crowded offer", nil)
	if err != nil {
		t.Fatal(err)
	}
	d := listenDecoy(t, "127.0.0.2")
	decoys := make([]*decoy, stage.MaxCandidates+1)
	for i := range decoys {
		decoys[i] = d
	}
	_, offer := speakerPeer(t)
	r := postOffer(t, http.DefaultClient, c.WHIPURL(sp.ID), sp.SpeakerToken, withDecoys(offer, decoys))
	if r.status != http.StatusBadRequest || errorCode(r.body) != "invalid" || !strings.Contains(r.body, "candidates") {
		t.Fatalf("offer with %d extra candidates: %d %s, want 400 invalid naming the candidates", len(decoys), r.status, r.body)
	}
	if n := len(m.live.Session(sp.ID).Stage().Speakers()); n != 0 {
		t.Errorf("%d speakers on stage after a refused offer", n)
	}
	time.Sleep(500 * time.Millisecond)
	if n := d.packets.Load(); n != 0 {
		t.Errorf("the server sent %d packets to a candidate of a refused offer", n)
	}
}

// TestWHIPOffersAreLimitedPerSourceAndPerSpeaker: offers are cheap to send
// and each costs the server a peer connection. One address gets a full
// stage's worth at once, one speaker a few reconnects, then 429 with
// Retry-After; other addresses and speakers are not held back.
func TestWHIPOffersAreLimitedPerSourceAndPerSpeaker(t *testing.T) {
	t.Parallel()
	m := MustRunMain(t, t.TempDir())
	defer m.Close()
	c := client.New(m.URL())
	sp, err := c.Create(t.Context(), "Limits", nil)
	if err != nil {
		t.Fatal(err)
	}
	lim := m.Config.API.WHIPLimit
	whipURL := c.WHIPURL(sp.ID)
	// Offers refused for what they are still count: the limits come first.
	const notAnOffer = "v=0\r\n"

	t.Run("per source", func(t *testing.T) {
		flood, other := fromSource("127.0.0.31"), fromSource("127.0.0.32")
		for i := range lim.Source.SourceBurst {
			if r := postOffer(t, flood, whipURL, fmt.Sprint("guess", i), notAnOffer); r.status != http.StatusUnauthorized {
				t.Fatalf("offer %d with a guessed token: %d %s, want 401", i+1, r.status, r.body)
			}
		}
		r := postOffer(t, flood, whipURL, "guess", notAnOffer)
		if r.status != http.StatusTooManyRequests || r.retryAfter == "" || !strings.Contains(r.body, "WHIP") {
			t.Fatalf("offer %d from one address: %d (Retry-After %q) %s, want 429 with Retry-After", lim.Source.SourceBurst+1, r.status, r.retryAfter, r.body)
		}
		if r := postOffer(t, other, whipURL, "guess", notAnOffer); r.status != http.StatusUnauthorized {
			t.Errorf("another address: %d %s, want 401 (not limited)", r.status, r.body)
		}
	})

	t.Run("per speaker", func(t *testing.T) {
		token := freshSpeaker(t, c, sp)
		a, b := fromSource("127.0.0.41"), fromSource("127.0.0.42")
		for i := range lim.SpeakerBurst {
			if r := postOffer(t, a, whipURL, token, notAnOffer); r.status != http.StatusBadRequest {
				t.Fatalf("offer %d: %d %s, want 400 for a bad offer", i+1, r.status, r.body)
			}
		}
		// The next from another address is the same speaker: still limited.
		r := postOffer(t, b, whipURL, token, notAnOffer)
		if r.status != http.StatusTooManyRequests || r.retryAfter == "" || !strings.Contains(r.body, "speaker") {
			t.Fatalf("offer %d of one speaker, from a new address: %d (Retry-After %q) %s, want 429 with Retry-After", lim.SpeakerBurst+1, r.status, r.retryAfter, r.body)
		}
		if r := postOffer(t, a, whipURL, freshSpeaker(t, c, sp), notAnOffer); r.status != http.StatusBadRequest {
			t.Errorf("another speaker from the same address: %d %s, want 400 (not limited)", r.status, r.body)
		}
	})
}

// joinRaw joins the stage with token and a connected Pion peer and returns
// the session's Location.
func joinRaw(t *testing.T, c *client.Client, spaceID, token string) string {
	t.Helper()
	pc, offer := speakerPeer(t)
	r := postOffer(t, http.DefaultClient, c.WHIPURL(spaceID), token, offer)
	if r.status != http.StatusCreated || r.location == "" {
		t.Fatalf("join: %d %s", r.status, r.body)
	}
	connect(t, pc, r.body)
	return r.location
}

// TestWHIPSessionIsEndedOnlyByItsOwnerOrTheHost: a speaker's DELETE of
// another's session gets the 404 of an unknown session, and the session
// stays; its owner's DELETE and the host's work.
func TestWHIPSessionIsEndedOnlyByItsOwnerOrTheHost(t *testing.T) {
	t.Parallel()
	m := MustRunMain(t, t.TempDir())
	defer m.Close()
	c := client.New(m.URL())
	sp, err := c.Create(t.Context(), "Owners", nil)
	if err != nil {
		t.Fatal(err)
	}
	stg := m.live.Session(sp.ID).Stage()
	alice, bob := freshSpeaker(t, c, sp), freshSpeaker(t, c, sp)
	aliceSession := joinRaw(t, c, sp.ID, alice)
	bobSession := joinRaw(t, c, sp.ID, bob)

	resp, body := call(t, http.MethodDelete, m.URL()+aliceSession, nil, bearerHdr(bob))
	unknown, _ := call(t, http.MethodDelete, m.URL()+"/spaces/"+sp.ID+"/whip/00000000000000000000000000000000", nil, bearerHdr(bob))
	if resp.StatusCode != http.StatusNotFound || unknown.StatusCode != http.StatusNotFound {
		t.Fatalf("bob deleting alice's session: %d %v, an unknown one: %d; want 404 for both", resp.StatusCode, body, unknown.StatusCode)
	}
	if n := len(stg.Speakers()); n != 2 {
		t.Fatalf("%d speakers on stage after bob's DELETE of alice's session, want 2", n)
	}
	if resp, body := call(t, http.MethodDelete, m.URL()+aliceSession, nil, bearerHdr(alice)); resp.StatusCode != http.StatusOK {
		t.Fatalf("alice deleting her own session: %d %v", resp.StatusCode, body)
	}
	if resp, body := call(t, http.MethodDelete, m.URL()+bobSession, nil, bearerHdr(sp.HostToken)); resp.StatusCode != http.StatusOK {
		t.Fatalf("the host deleting bob's session: %d %v", resp.StatusCode, body)
	}
	if n := len(stg.Speakers()); n != 0 {
		t.Errorf("%d speakers on stage after both sessions were deleted", n)
	}
}

// TestWHIPSessionIDsStayOutOfTheLog: the server's log at its default level
// (info) follows a session by a short hash, never by the id that names it.
func TestWHIPSessionIDsStayOutOfTheLog(t *testing.T) {
	t.Parallel()
	var mu sync.Mutex
	var logs bytes.Buffer
	m := MustRunMainWith(t, t.TempDir(), func(m *Main) {
		m.Logger = slog.New(slog.NewTextHandler(&lockedWriter{mu: &mu, w: &logs}, nil))
	})
	defer m.Close()
	c := client.New(m.URL())
	sp, err := c.Create(t.Context(), "Quiet logs", nil)
	if err != nil {
		t.Fatal(err)
	}
	loc := joinRaw(t, c, sp.ID, sp.SpeakerToken)
	if resp, body := call(t, http.MethodDelete, m.URL()+loc, nil, bearerHdr(sp.SpeakerToken)); resp.StatusCode != http.StatusOK {
		t.Fatalf("delete: %d %v", resp.StatusCode, body)
	}
	session := loc[strings.LastIndexByte(loc, '/')+1:]
	mu.Lock()
	defer mu.Unlock()
	if !strings.Contains(logs.String(), "speaker left") {
		t.Fatalf("the log does not show the speaker leaving:\n%s", logs.String())
	}
	if strings.Contains(logs.String(), session) {
		t.Errorf("the log shows session id %s:\n%s", session, logs.String())
	}
}
