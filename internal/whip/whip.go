// Package whip is a WHIP (RFC 9725) client for speaking on a stage: it sends
// Opus from one microphone track and receives the other speakers on "slots",
// the recvonly audio m-lines its offer adds. `amphi speak`, the load and
// rehearsal tool and the tests use it; browsers and OBS speak the same
// protocol to the same endpoint.
package whip

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/pion/ice/v4"
	"github.com/pion/interceptor"
	"github.com/pion/rtp"
	"github.com/pion/webrtc/v4"
	"github.com/pion/webrtc/v4/pkg/media"
)

const (
	// defaultSlots lets a speaker hear the 12 others of a full stage.
	defaultSlots = 12
	// maxBodyBytes bounds what we read of a server's answer or error.
	maxBodyBytes = 64 << 10
	// receiveMTU is the buffer for one incoming RTP packet (Pion's default
	// receive MTU is 1460).
	receiveMTU = 1500
)

// Config configures Dial.
type Config struct {
	// Slots is how many recvonly audio m-lines the offer adds to hear the
	// other speakers on. Zero means 12; negative means none (send only).
	Slots int

	// HTTPClient sends the WHIP requests. Nil means http.DefaultClient.
	HTTPClient *http.Client

	// Logger receives connection events. Nil means slog.Default().
	Logger *slog.Logger

	// ConfigureSettings, when non-nil, is called with the Pion SettingEngine
	// after the client's own settings (loopback candidates allowed, no
	// mDNS), e.g. to pick interfaces or a virtual network. Nil means none.
	ConfigureSettings func(*webrtc.SettingEngine)

	// Knobs inject faults; the zero value injects none.
	Knobs Knobs
}

// Knobs are fault-injection hooks for tests and the rehearsal tool. Each is
// nil in normal use.
type Knobs struct {
	// OutgoingRTP, when non-nil, sees every RTP packet the client sends,
	// just before encryption, and may change its header or payload in place
	// (a wrong payload type, a corrupted frame).
	OutgoingRTP func(h *rtp.Header, payload []byte)
}

// DefaultConfig returns the Config Dial uses for zero fields.
func DefaultConfig() Config {
	return Config{
		Slots:      defaultSlots,
		HTTPClient: http.DefaultClient,
		Logger:     slog.Default(),
	}
}

// StatusError is a WHIP request the server answered with an unexpected
// status. Code and Message come from the server's JSON error body when it
// had one.
type StatusError struct {
	StatusCode int
	Code       string
	Message    string
}

func (e *StatusError) Error() string {
	msg := e.Message
	if msg == "" {
		msg = http.StatusText(e.StatusCode)
	}
	if e.Code != "" {
		return fmt.Sprintf("whip: server answered %d (%s): %s", e.StatusCode, e.Code, msg)
	}
	return fmt.Sprintf("whip: server answered %d: %s", e.StatusCode, msg)
}

// Session is one WHIP session: a live peer connection and the resource the
// server made for it.
type Session struct {
	pc        *webrtc.PeerConnection
	mic       *webrtc.TrackLocalStaticSample
	slots     []*webrtc.RTPTransceiver // by slot index
	location  string
	token     string
	client    *http.Client
	log       *slog.Logger
	connected chan struct{}
	done      chan struct{} // closed once the connection failed or closed

	mu       sync.Mutex
	onPacket func(slot int, pkt *rtp.Packet)
	closing  bool
	wg       sync.WaitGroup // readers of the slots and the mic's RTCP

	connectOnce sync.Once
	doneOnce    sync.Once
	closeOnce   sync.Once
	closeErr    error
}

// Dial offers a connection to the WHIP endpoint with token as its bearer
// credential and returns once the server has answered; Connected tells when
// media can flow. The offer carries one sendonly Opus track and cfg.Slots
// recvonly audio m-lines, with all candidates (no trickle).
func Dial(ctx context.Context, endpoint string, token string, cfg Config) (_ *Session, err error) {
	def := DefaultConfig()
	if cfg.Slots == 0 {
		cfg.Slots = def.Slots
	}
	if cfg.HTTPClient == nil {
		cfg.HTTPClient = def.HTTPClient
	}
	if cfg.Logger == nil {
		cfg.Logger = def.Logger
	}
	base, err := url.Parse(endpoint)
	if err != nil {
		return nil, fmt.Errorf("whip: endpoint %q: %w", endpoint, err)
	}
	api, err := newAPI(cfg)
	if err != nil {
		return nil, fmt.Errorf("whip: webrtc api: %w", err)
	}
	pc, err := api.NewPeerConnection(webrtc.Configuration{})
	if err != nil {
		return nil, fmt.Errorf("whip: new peer connection: %w", err)
	}
	s := &Session{
		pc:        pc,
		token:     token,
		client:    cfg.HTTPClient,
		log:       cfg.Logger,
		connected: make(chan struct{}),
		done:      make(chan struct{}),
	}
	defer func() {
		if err != nil {
			s.closePC()
		}
	}()

	pc.OnConnectionStateChange(func(st webrtc.PeerConnectionState) {
		switch st {
		case webrtc.PeerConnectionStateConnected:
			s.connectOnce.Do(func() { close(s.connected) })
		case webrtc.PeerConnectionStateFailed, webrtc.PeerConnectionStateClosed:
			s.doneOnce.Do(func() { close(s.done) })
		}
	})
	pc.OnTrack(s.readSlot)

	s.mic, err = webrtc.NewTrackLocalStaticSample(
		webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeOpus, ClockRate: 48000, Channels: 2}, "mic", "amphi")
	if err != nil {
		return nil, fmt.Errorf("whip: mic track: %w", err)
	}
	// The mic's transceiver comes first so its m-line is the offer's first:
	// servers that look for "the" audio track find it there.
	micTx, err := pc.AddTransceiverFromTrack(s.mic, webrtc.RTPTransceiverInit{Direction: webrtc.RTPTransceiverDirectionSendonly})
	if err != nil {
		return nil, fmt.Errorf("whip: mic transceiver: %w", err)
	}
	if s.track() {
		go func() {
			defer s.wg.Done()
			// Pion runs the RTCP interceptors only as RTCP is read.
			buf := make([]byte, receiveMTU)
			for {
				if _, _, err := micTx.Sender().Read(buf); err != nil {
					return
				}
			}
		}()
	}
	for i := 0; i < cfg.Slots; i++ {
		t, err := pc.AddTransceiverFromKind(webrtc.RTPCodecTypeAudio, webrtc.RTPTransceiverInit{Direction: webrtc.RTPTransceiverDirectionRecvonly})
		if err != nil {
			return nil, fmt.Errorf("whip: slot %d transceiver: %w", i, err)
		}
		s.slots = append(s.slots, t)
	}

	offer, err := pc.CreateOffer(nil)
	if err != nil {
		return nil, fmt.Errorf("whip: create offer: %w", err)
	}
	gathered := webrtc.GatheringCompletePromise(pc)
	if err := pc.SetLocalDescription(offer); err != nil {
		return nil, fmt.Errorf("whip: set offer: %w", err)
	}
	select {
	case <-gathered:
	case <-ctx.Done():
		return nil, fmt.Errorf("whip: gathering candidates: %w", ctx.Err())
	}

	answer, location, err := s.post(ctx, base, pc.LocalDescription().SDP)
	if err != nil {
		return nil, err
	}
	s.location = location
	if err := pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeAnswer, SDP: answer}); err != nil {
		// The server holds a session for us: give it back before failing.
		s.deleteResource(ctx)
		return nil, fmt.Errorf("whip: set answer: %w", err)
	}
	return s, nil
}

// newAPI builds a Pion API with Opus only and Pion's default interceptors,
// the same as the stage's, plus the OutgoingRTP knob.
func newAPI(cfg Config) (*webrtc.API, error) {
	me := &webrtc.MediaEngine{}
	err := me.RegisterCodec(webrtc.RTPCodecParameters{
		RTPCodecCapability: webrtc.RTPCodecCapability{
			MimeType: webrtc.MimeTypeOpus, ClockRate: 48000, Channels: 2, SDPFmtpLine: "minptime=10;useinbandfec=1",
		},
		PayloadType: 111,
	}, webrtc.RTPCodecTypeAudio)
	if err != nil {
		return nil, err
	}
	ir := &interceptor.Registry{}
	if f := cfg.Knobs.OutgoingRTP; f != nil {
		// Added first, its writer is the innermost of the chain: it sees
		// each packet last, right before SRTP, so what it does is exactly
		// what goes on the wire.
		ir.Add(rewriterFactory{f})
	}
	if err := webrtc.RegisterDefaultInterceptors(me, ir); err != nil {
		return nil, err
	}
	var se webrtc.SettingEngine
	// `amphi speak` and the load tool often run on the server's machine.
	se.SetIncludeLoopbackCandidate(true)
	se.SetICEMulticastDNSMode(ice.MulticastDNSModeDisabled)
	if cfg.ConfigureSettings != nil {
		cfg.ConfigureSettings(&se)
	}
	return webrtc.NewAPI(webrtc.WithMediaEngine(me), webrtc.WithInterceptorRegistry(ir), webrtc.WithSettingEngine(se)), nil
}

// post sends the offer and returns the answer and the resolved Location.
func (s *Session) post(ctx context.Context, base *url.URL, offer string) (answer, location string, err error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, base.String(), strings.NewReader(offer))
	if err != nil {
		return "", "", fmt.Errorf("whip: offer request: %w", err)
	}
	req.Header.Set("Content-Type", "application/sdp")
	s.authorize(req)
	resp, err := s.client.Do(req)
	if err != nil {
		return "", "", fmt.Errorf("whip: post offer: %w", err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxBodyBytes))
	if err != nil {
		return "", "", fmt.Errorf("whip: read answer: %w", err)
	}
	if resp.StatusCode != http.StatusCreated {
		return "", "", statusError(resp.StatusCode, body)
	}
	loc := resp.Header.Get("Location")
	if loc == "" {
		return "", "", errors.New("whip: answer without a Location header")
	}
	u, err := base.Parse(loc)
	if err != nil {
		return "", "", fmt.Errorf("whip: Location %q: %w", loc, err)
	}
	return string(body), u.String(), nil
}

// statusError reads the server's JSON error body, if it is one.
func statusError(status int, body []byte) *StatusError {
	e := &StatusError{StatusCode: status}
	var doc struct {
		Error struct {
			Code    string `json:"code"`
			Message string `json:"message"`
		} `json:"error"`
	}
	if json.Unmarshal(body, &doc) == nil && (doc.Error.Code != "" || doc.Error.Message != "") {
		e.Code, e.Message = doc.Error.Code, doc.Error.Message
	} else if text := strings.TrimSpace(string(body)); len(text) > 0 && len(text) <= 200 {
		e.Message = text
	}
	return e
}

func (s *Session) authorize(req *http.Request) {
	if s.token != "" {
		req.Header.Set("Authorization", "Bearer "+s.token)
	}
}

// WriteOpus sends one Opus packet lasting duration (normally 20 ms). Packets
// written before Connected is closed are dropped.
func (s *Session) WriteOpus(packet []byte, duration time.Duration) error {
	if err := s.mic.WriteSample(media.Sample{Data: packet, Duration: duration}); err != nil {
		return fmt.Errorf("whip: write opus: %w", err)
	}
	return nil
}

// OnPacket sets the function that receives the other speakers' audio, by
// slot. It runs on the slot's reader goroutine; pkt and its payload are
// reused once it returns, so it must copy what it keeps. Set it before or
// right after Dial: packets arriving earlier are discarded.
func (s *Session) OnPacket(f func(slot int, pkt *rtp.Packet)) {
	s.mu.Lock()
	s.onPacket = f
	s.mu.Unlock()
}

// Connected is closed once ICE and DTLS are up and media flows.
func (s *Session) Connected() <-chan struct{} { return s.connected }

// Done is closed once the connection has failed (the server went away: no
// answer to ICE checks for the failed timeout, 25 s unless
// ConfigureSettings sets another) or been closed. A speaker that wants to
// stay on the stage dials again.
func (s *Session) Done() <-chan struct{} { return s.done }

// readSlot is one goroutine per received track: it finds the track's slot
// and hands every packet to the OnPacket function, reusing one buffer.
func (s *Session) readSlot(track *webrtc.TrackRemote, recv *webrtc.RTPReceiver) {
	slot := -1
	for i, t := range s.slots {
		if t.Receiver() == recv {
			slot = i
			break
		}
	}
	if slot < 0 || !s.track() {
		return
	}
	defer s.wg.Done()
	buf := make([]byte, receiveMTU)
	var pkt rtp.Packet
	for {
		n, _, err := track.Read(buf)
		if err != nil {
			if n == 0 || errors.Is(err, io.EOF) {
				return
			}
			continue // a packet Pion could not attribute to the codec
		}
		if pkt.Unmarshal(buf[:n]) != nil {
			continue
		}
		s.mu.Lock()
		f := s.onPacket
		s.mu.Unlock()
		if f != nil {
			f(slot, &pkt)
		}
	}
}

// track registers one of the session's goroutines unless it is closing.
func (s *Session) track() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closing {
		return false
	}
	s.wg.Add(1)
	return true
}

// Close ends the session: it DELETEs the WHIP resource (a 404 means the
// server already dropped it, which is fine) and closes the connection,
// waiting for the session's goroutines. ctx bounds the DELETE. The
// connection is closed even when the DELETE fails, whose error is returned.
func (s *Session) Close(ctx context.Context) error {
	s.closeOnce.Do(func() {
		s.closeErr = s.deleteResource(ctx)
		s.closePC()
	})
	return s.closeErr
}

// Abandon closes the connection without the DELETE, as a client that
// crashes or loses its page does: the server has to notice by itself.
func (s *Session) Abandon() {
	s.closeOnce.Do(s.closePC)
}

func (s *Session) deleteResource(ctx context.Context) error {
	if s.location == "" {
		return nil
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodDelete, s.location, nil)
	if err != nil {
		return fmt.Errorf("whip: delete request: %w", err)
	}
	s.authorize(req)
	resp, err := s.client.Do(req)
	if err != nil {
		return fmt.Errorf("whip: delete %s: %w", s.location, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, maxBodyBytes))
	if resp.StatusCode/100 == 2 || resp.StatusCode == http.StatusNotFound {
		return nil
	}
	return statusError(resp.StatusCode, body)
}

func (s *Session) closePC() {
	s.mu.Lock()
	s.closing = true
	s.mu.Unlock()
	if err := s.pc.GracefulClose(); err != nil {
		s.log.Debug("whip: close peer connection", "err", err)
	}
	s.wg.Wait()
}

// rewriterFactory makes the interceptor behind Knobs.OutgoingRTP.
type rewriterFactory struct {
	f func(h *rtp.Header, payload []byte)
}

func (r rewriterFactory) NewInterceptor(string) (interceptor.Interceptor, error) {
	return &rewriter{f: r.f}, nil
}

type rewriter struct {
	interceptor.NoOp
	f func(h *rtp.Header, payload []byte)
}

func (r *rewriter) BindLocalStream(_ *interceptor.StreamInfo, w interceptor.RTPWriter) interceptor.RTPWriter {
	return interceptor.RTPWriterFunc(func(h *rtp.Header, payload []byte, a interceptor.Attributes) (int, error) {
		r.f(h, payload)
		return w.Write(h, payload, a)
	})
}
