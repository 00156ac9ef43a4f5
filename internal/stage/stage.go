// Package stage is where speakers meet: each joins over WHIP (RFC 9725) with
// one WebRTC connection carrying Opus from its microphone, hears the other
// speakers by plain SFU forwarding on "slots" (the recvonly audio m-lines its
// offer adds), and feeds its packets to the mixer, which makes the program
// the audience hears.
//
// The stage never depends on the audience: it has its own goroutines (one
// reader per speaker, no lock shared with anything on the listener path) and
// a hard cap on speakers. The HTTP side of WHIP (auth, content type, body cap,
// Location) lives in the api package, which calls Join and Leave.
//
// The host moderates with Mute and Remove, by speaker ID. A muted speaker
// stays connected and keeps its slots, but its packets are counted and
// dropped: neither mixed nor forwarded. A mute belongs to the speaker ID, not
// the session, so it survives a reconnect or a rejoin; only Mute(id, false)
// and Remove lift it.
package stage

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/amphi-audio/amphi"
	"github.com/pion/ice/v4"
	"github.com/pion/interceptor"
	"github.com/pion/webrtc/v4"
)

// Source is where the stage delivers one speaker's Opus packets: the
// consumer-side view of a mixer source (*mix.Source satisfies it).
type Source interface {
	// Push hands over one RTP payload; it must copy payload and never block.
	Push(seq uint16, ts uint32, payload []byte)
	// Close ends the source; the stage calls it once, after the last Push.
	Close()
}

// Opus as every speaker must send it: the parameters browsers offer, so the
// answer matches their fmtp exactly.
var opusCodec = webrtc.RTPCodecParameters{
	RTPCodecCapability: webrtc.RTPCodecCapability{
		MimeType:    webrtc.MimeTypeOpus,
		ClockRate:   clockRate,
		Channels:    2,
		SDPFmtpLine: "minptime=10;useinbandfec=1",
	},
	PayloadType: 111,
}

// Config configures a Stage.
type Config struct {
	// MaxSpeakers caps the speakers on the stage at once; a join past it is
	// refused with amphi.EFull. Zero means amphi.MaxSpeakers (13).
	MaxSpeakers int

	// AddSource registers a speaker with the mixer under id and returns where
	// its packets go. Required. The server adapts *mix.Mixer with
	// func(id string) (stage.Source, error) { return m.AddSource(id) }.
	AddSource func(id string) (Source, error)

	// DisconnectTimeout is how long a speaker that vanished without DELETE
	// (no packet from it, ICE cannot reach it) stays on the stage before it is
	// removed and its slots freed. Zero means 5 s.
	DisconnectTimeout time.Duration

	// PublicIPs, when set, are advertised as host candidates in place of the
	// machine's own addresses: for a server behind a static 1:1 NAT. Empty
	// means advertise the local addresses.
	PublicIPs []string

	// ConfigureSettings, when non-nil, is called with the Pion SettingEngine
	// after the stage's own settings, for what Config does not cover (UDP
	// port range, interface filter, a virtual network in tests). Nil means
	// no more settings.
	ConfigureSettings func(*webrtc.SettingEngine)

	// Logger receives join, leave and removal events. Nil means slog.Default().
	Logger *slog.Logger

	// Now tells the time of packets and joins. Nil means time.Now.
	Now func() time.Time
}

// DefaultConfig returns the Config with every default filled in except
// AddSource, which the caller must set.
func DefaultConfig() Config {
	return Config{
		MaxSpeakers:       amphi.MaxSpeakers,
		DisconnectTimeout: 5 * time.Second,
		Logger:            slog.Default(),
		Now:               time.Now,
	}
}

// SpeakerInfo describes one speaker on the stage.
type SpeakerInfo struct {
	ID        string    // the speaker's identity, as given to Join
	Session   string    // the WHIP session (resource) ID
	JoinedAt  time.Time // when Join answered
	State     string    // the WebRTC connection state: new, connecting, connected, disconnected...
	PacketsIn uint64    // Opus packets received and passed on
	BytesIn   uint64    // their payload bytes
	Dropped   uint64    // packets received but not passed on (malformed, wrong payload type)
	// Muted says the host muted the speaker: its packets are dropped.
	Muted bool
	// PacketsMuted counts its packets dropped because it was muted (not an
	// error, and not in PacketsIn or Dropped).
	PacketsMuted uint64
	// LastPacketAt is when its last packet arrived; zero if none yet.
	LastPacketAt time.Time
	// Hears lists, by slot, the speaker IDs this speaker hears; "" is a free
	// slot. Its length is the number of slots the speaker's offer asked for,
	// capped at MaxSpeakers-1.
	Hears []string
}

// Stats are the stage's counters since New.
type Stats struct {
	Speakers     int    // on stage now
	Joins        uint64 // joins answered
	JoinsRefused uint64 // joins that returned an error
	Leaves       uint64 // sessions ended by Leave
	Replaced     uint64 // sessions ended because the same speaker joined again
	Lost         uint64 // sessions ended because the connection failed, closed or timed out
	Removed      uint64 // sessions ended by Remove (the host took the speaker off)
	PacketsIn    uint64 // Opus packets received from speakers and passed on
	// PacketsMuted counts packets from muted speakers, dropped on purpose:
	// not an error, and not in PacketsIn.
	PacketsMuted uint64
	Forwarded    uint64 // packet copies written to other speakers' slots
	// ForwardErrors counts slot writes that failed, typically to a speaker
	// whose connection is going away.
	ForwardErrors uint64
	// Dropped RTP by reason.
	DroppedMalformed   uint64 // not parseable as RTP
	DroppedPayloadType uint64 // not the negotiated Opus payload type
	DroppedReadError   uint64 // parsed but reported as bad by Pion
}

type counters struct {
	joins, joinsRefused, leaves, replaced, lost, removed   atomic.Uint64
	packetsIn, packetsMuted, forwarded, forwardErrors      atomic.Uint64
	droppedMalformed, droppedPayloadType, droppedReadError atomic.Uint64
}

// Stage holds the speakers of one space. Its methods are safe for
// concurrent use.
type Stage struct {
	cfg   Config
	api   *webrtc.API
	log   *slog.Logger
	now   func() time.Time
	grace time.Duration // after ICE says disconnected, before removal

	mu        sync.Mutex
	closed    bool
	pending   int        // joins between reservation and commit
	order     []*speaker // by join time: slot assignment is first come, first slot
	bySession map[string]*speaker
	byID      map[string]*speaker
	// muted holds the speaker IDs the host muted, on stage or not, so a
	// mute outlives the session: a muted speaker must not get its voice back
	// by reloading its page. Bounded by the host's Mute calls.
	muted map[string]bool

	wg    sync.WaitGroup // removals of lost speakers
	stats counters
}

// speaker is one WHIP session on the stage.
type speaker struct {
	id, session string
	joinedAt    time.Time
	pc          *webrtc.PeerConnection
	source      Source
	out         []*outSlot // slots in this speaker's connection, to hear others
	nslots      int        // slot m-lines offered, capped at MaxSpeakers-1
	// routes are the slots in other speakers' connections that carry this
	// speaker; rebuilt under Stage.mu, read lock-free by its reader.
	routes atomic.Pointer[[]*outSlot]

	packetsIn, bytesIn, dropped, packetsMuted atomic.Uint64
	lastPacket                                atomic.Int64 // unix nanoseconds
	// muted is the one thing its reader checks per packet for moderation:
	// an atomic load, no lock. Set from Stage.muted under Stage.mu.
	muted atomic.Bool

	mu      sync.Mutex
	closing bool
	timer   *time.Timer    // removal after a disconnect
	wg      sync.WaitGroup // its reader and RTCP goroutines
	once    sync.Once
}

// New returns a Stage with no speakers.
func New(cfg Config) (*Stage, error) {
	def := DefaultConfig()
	if cfg.AddSource == nil {
		return nil, errors.New("stage: Config.AddSource is required")
	}
	if cfg.MaxSpeakers <= 0 {
		cfg.MaxSpeakers = def.MaxSpeakers
	}
	if cfg.DisconnectTimeout <= 0 {
		cfg.DisconnectTimeout = def.DisconnectTimeout
	}
	if cfg.Logger == nil {
		cfg.Logger = def.Logger
	}
	if cfg.Now == nil {
		cfg.Now = def.Now
	}
	api, err := newAPI(cfg)
	if err != nil {
		return nil, fmt.Errorf("stage: webrtc api: %w", err)
	}
	return &Stage{
		cfg:       cfg,
		api:       api,
		log:       cfg.Logger,
		now:       cfg.Now,
		grace:     cfg.DisconnectTimeout / 2,
		bySession: make(map[string]*speaker),
		byID:      make(map[string]*speaker),
		muted:     make(map[string]bool),
	}, nil
}

// newAPI builds the one Pion API all the stage's connections share: Opus
// only, Pion's default interceptors (NACK, RTCP reports, stats, TWCC), and
// ICE timeouts derived from DisconnectTimeout.
func newAPI(cfg Config) (*webrtc.API, error) {
	me := &webrtc.MediaEngine{}
	if err := me.RegisterCodec(opusCodec, webrtc.RTPCodecTypeAudio); err != nil {
		return nil, err
	}
	ir := &interceptor.Registry{}
	if err := webrtc.RegisterDefaultInterceptors(me, ir); err != nil {
		return nil, err
	}
	var se webrtc.SettingEngine
	// ICE-lite: the stage never sends a connectivity check, it only answers
	// the speaker's, so it sends packets only to an address that proved it
	// holds the offer's ICE password by writing to us first. A full agent
	// checks every candidate of the offer: an offer of 500 candidates made
	// the server send 8 000 packets to addresses of the caller's choosing.
	// Pion then gathers host candidates only, which is all a server with a
	// public address (or PublicIPs) needs.
	se.SetLite(true)
	// Speakers on the same machine (amphi speak, tests, a local rehearsal)
	// reach the server over loopback only.
	se.SetIncludeLoopbackCandidate(true)
	// Half the timeout without a packet makes ICE say disconnected, and the
	// stage removes the speaker the other half later: a vanished speaker is
	// gone about DisconnectTimeout after its last packet. A lite agent sends
	// no keepalives of its own; a present speaker's consent checks (every
	// 2-2.5 s in Pion and Chromium) and RTCP keep it alive even when silent.
	// The keepalive interval is still how often ICE looks for that silence.
	half := cfg.DisconnectTimeout / 2
	se.SetICETimeouts(half, half, max(cfg.DisconnectTimeout/10, 50*time.Millisecond))
	// mDNS would cost a multicast socket per connection for candidates a
	// server never needs to hide or resolve: a speaker's checks reach us
	// anyway and become peer-reflexive candidates.
	se.SetICEMulticastDNSMode(ice.MulticastDNSModeDisabled)
	if len(cfg.PublicIPs) > 0 {
		se.SetNAT1To1IPs(cfg.PublicIPs, webrtc.ICECandidateTypeHost)
	}
	if cfg.ConfigureSettings != nil {
		cfg.ConfigureSettings(&se)
	}
	return webrtc.NewAPI(webrtc.WithMediaEngine(me), webrtc.WithInterceptorRegistry(ir), webrtc.WithSettingEngine(se)), nil
}

// Join puts speakerID on the stage with the WHIP offer offerSDP and returns
// the new session's ID and the SDP answer, complete with the server's ICE
// candidates (no trickle). ctx bounds the candidate gathering.
//
// The same speakerID joining again replaces its old session: a speaker whose
// page reloaded or whose network changed must not be locked out until the old
// connection times out, and the old one is dead or about to be.
//
// Errors: amphi.EInvalid for a malformed offer, amphi.EUnsupported for one
// without Opus audio, amphi.EFull past MaxSpeakers (or when the mixer is
// full), amphi.EConflict when the same speaker is joining concurrently,
// amphi.EUnavailable once closed or when gathering outlives ctx.
func (s *Stage) Join(ctx context.Context, speakerID string, offerSDP string) (sessionID string, answerSDP string, err error) {
	defer func() {
		if err != nil {
			s.stats.joinsRefused.Add(1)
		}
	}()
	if speakerID == "" {
		return "", "", amphi.Errorf(amphi.EInvalid, "speaker id is empty")
	}
	info, err := parseOffer(offerSDP)
	if err != nil {
		return "", "", err
	}

	// Reserve a place before the slow part, so a crowd of joins cannot all
	// pass the check and then overfill the stage.
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return "", "", amphi.Errorf(amphi.EUnavailable, "the stage is closed")
	}
	old := s.byID[speakerID]
	if old != nil {
		s.detachLocked(old)
	}
	if len(s.bySession)+s.pending >= s.cfg.MaxSpeakers {
		s.mu.Unlock()
		if old != nil {
			old.shutdown()
		}
		return "", "", amphi.Errorf(amphi.EFull, "the stage is full (%d speakers)", s.cfg.MaxSpeakers)
	}
	s.pending++
	muted := s.muted[speakerID]
	s.mu.Unlock()
	reserved := true
	defer func() {
		if reserved {
			s.mu.Lock()
			s.pending--
			s.mu.Unlock()
		}
	}()
	if old != nil {
		// The mixer refuses a second source under the same id, so the old
		// one must be gone first.
		old.shutdown()
		s.stats.replaced.Add(1)
		s.log.Info("stage: speaker rejoined, old session replaced", "speaker", speakerID, logSession(old.session))
	}

	sp, err := s.connect(ctx, speakerID, muted, info, offerSDP)
	if err != nil {
		return "", "", err
	}
	answer := sp.pc.LocalDescription()
	if answer == nil {
		sp.shutdown()
		return "", "", fmt.Errorf("stage: join %q: no local description after gathering", speakerID)
	}

	s.mu.Lock()
	var refuse error
	switch st := sp.pc.ConnectionState(); {
	case s.closed:
		refuse = amphi.Errorf(amphi.EUnavailable, "the stage is closed")
	case s.byID[speakerID] != nil:
		refuse = amphi.Errorf(amphi.EConflict, "speaker %q joined again while this join was in progress", speakerID)
	case len(s.bySession) >= s.cfg.MaxSpeakers:
		refuse = amphi.Errorf(amphi.EFull, "the stage is full (%d speakers)", s.cfg.MaxSpeakers)
	case st == webrtc.PeerConnectionStateFailed || st == webrtc.PeerConnectionStateClosed:
		refuse = amphi.Errorf(amphi.EUnavailable, "connection %s before the answer was sent", st)
	}
	if refuse != nil {
		s.mu.Unlock()
		sp.shutdown()
		return "", "", refuse
	}
	s.pending--
	reserved = false
	// Again under the lock: the set may have changed while connecting.
	sp.muted.Store(s.muted[speakerID])
	sp.joinedAt = s.now()
	s.bySession[sp.session] = sp
	s.byID[speakerID] = sp
	s.order = append(s.order, sp)
	s.rebalanceLocked()
	s.mu.Unlock()

	s.stats.joins.Add(1)
	s.log.Info("stage: speaker joined", "speaker", speakerID, logSession(sp.session), "slots", len(sp.out))
	return sp.session, answer.SDP, nil
}

// connect builds the speaker's peer connection: a mixer source, one outgoing
// slot track per recvonly m-line, the answer and its candidates. On error
// everything it made is released.
func (s *Stage) connect(ctx context.Context, speakerID string, muted bool, info offerInfo, offerSDP string) (sp *speaker, err error) {
	session, err := newSessionID()
	if err != nil {
		return nil, fmt.Errorf("stage: join %q: %w", speakerID, err)
	}
	src, err := s.cfg.AddSource(speakerID)
	if err != nil {
		return nil, fmt.Errorf("stage: join %q: add mixer source: %w", speakerID, err)
	}
	sp = &speaker{id: speakerID, session: session, source: src}
	sp.routes.Store(&[]*outSlot{})
	// Muted before the connection exists, so not one packet of a muted
	// speaker's rejoin gets through.
	sp.muted.Store(muted)
	defer func() {
		// Pion is big and the offer is the caller's: whatever happens in
		// there, the server must not go down with one bad join.
		if r := recover(); r != nil {
			s.log.Error("stage: panic during join", "speaker", speakerID, "panic", r)
			err = amphi.Errorf(amphi.EInternal, "join failed")
		}
		if err != nil {
			sp.shutdown()
		}
	}()

	sp.pc, err = s.api.NewPeerConnection(webrtc.Configuration{})
	if err != nil {
		return sp, fmt.Errorf("stage: join %q: new peer connection: %w", speakerID, err)
	}
	sp.pc.OnTrack(func(track *webrtc.TrackRemote, recv *webrtc.RTPReceiver) {
		if track.Kind() != webrtc.RTPCodecTypeAudio || !sp.track() {
			return
		}
		defer sp.wg.Done()
		s.readMic(sp, track)
	})
	sp.pc.OnConnectionStateChange(func(st webrtc.PeerConnectionState) {
		switch st {
		case webrtc.PeerConnectionStateConnected:
			sp.disarm()
		case webrtc.PeerConnectionStateDisconnected:
			sp.arm(s.grace, func() { s.lose(sp, "disconnected") })
		case webrtc.PeerConnectionStateFailed, webrtc.PeerConnectionStateClosed:
			s.lose(sp, st.String())
		}
	})

	if err := sp.pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeOffer, SDP: offerSDP}); err != nil {
		return sp, amphi.Errorf(amphi.EInvalid, "offer rejected: %v", err)
	}
	if err := s.attachSlots(sp, info); err != nil {
		return sp, fmt.Errorf("stage: join %q: %w", speakerID, err)
	}
	answer, err := sp.pc.CreateAnswer(nil)
	if err != nil {
		return sp, amphi.Errorf(amphi.EUnsupported, "cannot answer the offer: %v", err)
	}
	gathered := webrtc.GatheringCompletePromise(sp.pc)
	if err := sp.pc.SetLocalDescription(answer); err != nil {
		return sp, fmt.Errorf("stage: join %q: set answer: %w", speakerID, err)
	}
	select {
	case <-gathered:
	case <-ctx.Done():
		return sp, amphi.Errorf(amphi.EUnavailable, "gathering ICE candidates: %v", ctx.Err())
	}
	return sp, nil
}

// attachSlots gives each recvonly Opus m-line of the offer its own outgoing
// track, so the answer says sendonly with an SSRC for it. Transceivers are
// picked by mid, not by AddTrack, which would take the first free audio
// transceiver: the microphone's.
func (s *Stage) attachSlots(sp *speaker, info offerInfo) error {
	byMid := make(map[string]*webrtc.RTPTransceiver)
	for _, t := range sp.pc.GetTransceivers() {
		byMid[t.Mid()] = t
	}
	limit := min(len(info.slotMids), s.cfg.MaxSpeakers-1)
	sp.nslots = limit
	dtls := sp.pc.SCTP().Transport()
	for i, mid := range info.slotMids[:limit] {
		t := byMid[mid]
		// Pion makes a sendonly transceiver without a sender for a remote
		// recvonly m-line; anything else is not a slot we can fill.
		if t == nil || t.Kind() != webrtc.RTPCodecTypeAudio || t.Sender() != nil || t.Direction() != webrtc.RTPTransceiverDirectionSendonly {
			s.log.Warn("stage: slot m-line not usable", "speaker", sp.id, "mid", mid)
			continue
		}
		id := fmt.Sprintf("slot%d", i)
		track, err := webrtc.NewTrackLocalStaticRTP(opusCodec.RTPCodecCapability, id, id)
		if err != nil {
			return fmt.Errorf("slot %d track: %w", i, err)
		}
		sender, err := s.api.NewRTPSender(track, dtls)
		if err != nil {
			return fmt.Errorf("slot %d sender: %w", i, err)
		}
		if err := t.SetSender(sender, track); err != nil {
			return fmt.Errorf("slot %d attach: %w", i, err)
		}
		sp.out = append(sp.out, &outSlot{index: i, track: track})
		if sp.track() {
			go func() {
				defer sp.wg.Done()
				drainRTCP(sender)
			}()
		}
	}
	return nil
}

// Leave ends the session: the speaker leaves the stage, its slots in the
// others' connections are freed and its mixer source closed. An unknown or
// already ended session is amphi.ENotFound.
func (s *Stage) Leave(sessionID string) error { return s.leave(sessionID, "") }

// LeaveOwn is Leave for speakerID's own session only. Another speaker's
// session is amphi.ENotFound, exactly as an unknown one, so a speaker can
// neither end another's session nor learn that its id exists.
func (s *Stage) LeaveOwn(sessionID, speakerID string) error {
	if speakerID == "" {
		return amphi.Errorf(amphi.EInvalid, "speaker id is empty")
	}
	return s.leave(sessionID, speakerID)
}

// leave ends the session if it belongs to owner, or to anyone when owner
// is empty.
func (s *Stage) leave(sessionID, owner string) error {
	s.mu.Lock()
	sp := s.bySession[sessionID]
	if sp == nil || (owner != "" && sp.id != owner) {
		s.mu.Unlock()
		return amphi.Errorf(amphi.ENotFound, "no session %q on the stage", sessionID)
	}
	s.detachLocked(sp)
	s.mu.Unlock()
	sp.shutdown()
	s.stats.leaves.Add(1)
	s.log.Info("stage: speaker left", "speaker", sp.id, logSession(sp.session))
	return nil
}

// Remove takes the speaker with the id given to Join off the stage, as Leave
// does for its session, and lifts its mute: the host removed it, and if it
// comes back it comes back unmuted. Its connection is closed. A speaker
// that is not on the stage (never joined, left, or between a lost session
// and its rejoin) is amphi.ENotFound.
func (s *Stage) Remove(speakerID string) error {
	s.mu.Lock()
	sp := s.byID[speakerID]
	if sp == nil {
		s.mu.Unlock()
		return amphi.Errorf(amphi.ENotFound, "no speaker %q on the stage", speakerID)
	}
	delete(s.muted, speakerID)
	s.detachLocked(sp)
	s.mu.Unlock()
	sp.shutdown()
	s.stats.removed.Add(1)
	s.log.Info("stage: speaker removed", "speaker", sp.id, logSession(sp.session))
	return nil
}

// Mute mutes (muted true) or unmutes the speaker with the id given to Join.
// A muted speaker stays connected and keeps hearing the others, but its
// packets are neither passed to its Source nor forwarded to the other
// speakers: they are counted in PacketsMuted, not as errors. The mute is
// kept by speaker ID and survives the speaker leaving, losing its
// connection or rejoining; Mute(id, false) or Remove lifts it. A speaker
// that is not on the stage is amphi.ENotFound, and nothing changes.
func (s *Stage) Mute(speakerID string, muted bool) error {
	s.mu.Lock()
	sp := s.byID[speakerID]
	if sp == nil {
		s.mu.Unlock()
		return amphi.Errorf(amphi.ENotFound, "no speaker %q on the stage", speakerID)
	}
	if muted {
		s.muted[speakerID] = true
	} else {
		delete(s.muted, speakerID)
	}
	was := sp.muted.Swap(muted)
	s.mu.Unlock()
	if was != muted {
		s.log.Info("stage: speaker mute changed", "speaker", speakerID, logSession(sp.session), "muted", muted)
	}
	return nil
}

// lose removes a speaker whose connection failed, closed or stayed
// disconnected. It runs on Pion's callback goroutines, which must not close
// their own connection, so the shutdown gets a goroutine of the stage's.
func (s *Stage) lose(sp *speaker, why string) {
	s.mu.Lock()
	if s.closed || s.bySession[sp.session] != sp {
		s.mu.Unlock()
		return
	}
	s.detachLocked(sp)
	s.wg.Add(1)
	s.mu.Unlock()
	s.stats.lost.Add(1)
	s.log.Info("stage: speaker lost", "speaker", sp.id, logSession(sp.session), "why", why)
	go func() {
		defer s.wg.Done()
		sp.shutdown()
	}()
}

// detachLocked takes sp off the stage and hands its slots to the others.
// Called with s.mu held; the caller shuts sp down after unlocking.
func (s *Stage) detachLocked(sp *speaker) {
	delete(s.bySession, sp.session)
	if s.byID[sp.id] == sp {
		delete(s.byID, sp.id)
	}
	for i, o := range s.order {
		if o == sp {
			s.order = append(s.order[:i], s.order[i+1:]...)
			break
		}
	}
	for _, o := range sp.out {
		o.assign(nil)
	}
	sp.routes.Store(&[]*outSlot{})
	s.rebalanceLocked()
}

// rebalanceLocked frees slots whose speaker left and gives every speaker a
// slot in each other speaker's connection, first free slot first, in join
// order; then it rebuilds each speaker's routes. With at most 13 speakers the
// quadratic walk costs nothing next to a join.
func (s *Stage) rebalanceLocked() {
	on := make(map[*speaker]bool, len(s.order))
	for _, sp := range s.order {
		on[sp] = true
	}
	routes := make(map[*speaker][]*outSlot, len(s.order))
	for _, r := range s.order {
		heard := make(map[*speaker]bool, len(r.out))
		for _, o := range r.out {
			if from := o.owner(); from != nil {
				if on[from] && from != r {
					heard[from] = true
				} else {
					o.assign(nil)
				}
			}
		}
		next := 0
		for _, from := range s.order {
			if from == r || heard[from] {
				continue
			}
			for next < len(r.out) && r.out[next].owner() != nil {
				next++
			}
			if next == len(r.out) {
				break // r offered fewer slots than there are speakers
			}
			r.out[next].assign(from)
		}
		for _, o := range r.out {
			if from := o.owner(); from != nil {
				routes[from] = append(routes[from], o)
			}
		}
	}
	for _, sp := range s.order {
		rs := routes[sp]
		sp.routes.Store(&rs)
	}
}

// Speakers lists the speakers on the stage in join order.
func (s *Stage) Speakers() []SpeakerInfo {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]SpeakerInfo, 0, len(s.order))
	for _, sp := range s.order {
		info := SpeakerInfo{
			ID:           sp.id,
			Session:      sp.session,
			JoinedAt:     sp.joinedAt,
			State:        sp.pc.ConnectionState().String(),
			PacketsIn:    sp.packetsIn.Load(),
			BytesIn:      sp.bytesIn.Load(),
			Dropped:      sp.dropped.Load(),
			Muted:        sp.muted.Load(),
			PacketsMuted: sp.packetsMuted.Load(),
			Hears:        make([]string, sp.nslots),
		}
		if ns := sp.lastPacket.Load(); ns != 0 {
			info.LastPacketAt = time.Unix(0, ns)
		}
		for _, o := range sp.out {
			if from := o.owner(); from != nil {
				info.Hears[o.index] = from.id
			}
		}
		out = append(out, info)
	}
	return out
}

// Stats returns the stage's counters.
func (s *Stage) Stats() Stats {
	s.mu.Lock()
	n := len(s.bySession)
	s.mu.Unlock()
	c := &s.stats
	return Stats{
		Speakers:           n,
		Joins:              c.joins.Load(),
		JoinsRefused:       c.joinsRefused.Load(),
		Leaves:             c.leaves.Load(),
		Replaced:           c.replaced.Load(),
		Lost:               c.lost.Load(),
		Removed:            c.removed.Load(),
		PacketsIn:          c.packetsIn.Load(),
		PacketsMuted:       c.packetsMuted.Load(),
		Forwarded:          c.forwarded.Load(),
		ForwardErrors:      c.forwardErrors.Load(),
		DroppedMalformed:   c.droppedMalformed.Load(),
		DroppedPayloadType: c.droppedPayloadType.Load(),
		DroppedReadError:   c.droppedReadError.Load(),
	}
}

// Close ends every session and waits for all the stage's goroutines. Joins
// after Close fail with amphi.EUnavailable. Close is idempotent.
func (s *Stage) Close() error {
	s.mu.Lock()
	all := s.order
	if !s.closed {
		s.closed = true
		s.order = nil
		clear(s.bySession)
		clear(s.byID)
	} else {
		all = nil
	}
	s.mu.Unlock()

	var wg sync.WaitGroup
	for _, sp := range all {
		wg.Add(1)
		go func() {
			defer wg.Done()
			sp.shutdown()
		}()
	}
	wg.Wait()
	s.wg.Wait()
	return nil
}

// track registers one goroutine of the speaker's, unless it is shutting
// down, in which case the caller must not start it.
func (sp *speaker) track() bool {
	sp.mu.Lock()
	defer sp.mu.Unlock()
	if sp.closing {
		return false
	}
	sp.wg.Add(1)
	return true
}

func (sp *speaker) isClosing() bool {
	sp.mu.Lock()
	defer sp.mu.Unlock()
	return sp.closing
}

// arm schedules f after d unless the connection recovers first (disarm).
func (sp *speaker) arm(d time.Duration, f func()) {
	sp.mu.Lock()
	defer sp.mu.Unlock()
	if sp.closing {
		return
	}
	if sp.timer != nil {
		sp.timer.Stop()
	}
	sp.timer = time.AfterFunc(d, f)
}

func (sp *speaker) disarm() {
	sp.mu.Lock()
	defer sp.mu.Unlock()
	if sp.timer != nil {
		sp.timer.Stop()
		sp.timer = nil
	}
}

// shutdown closes the speaker's connection, waits for its goroutines and
// then closes its mixer source, so no Push follows Close. Safe to call more
// than once and from any goroutine but Pion's callbacks.
func (sp *speaker) shutdown() {
	sp.once.Do(func() {
		sp.mu.Lock()
		sp.closing = true
		if sp.timer != nil {
			sp.timer.Stop()
			sp.timer = nil
		}
		sp.mu.Unlock()
		if sp.pc != nil {
			// GracefulClose waits for Pion's own goroutines, so a closed
			// stage leaves none behind.
			_ = sp.pc.GracefulClose()
		}
		sp.wg.Wait()
		if sp.source != nil {
			sp.source.Close()
		}
	})
}

// logSession is how a session appears in logs: the first 8 hex digits of
// its SHA-256, enough to follow one session through them. The id names the
// WHIP resource its owner deletes, so a log reader never sees it.
func logSession(id string) slog.Attr {
	sum := sha256.Sum256([]byte(id))
	return slog.String("session", hex.EncodeToString(sum[:4]))
}

// newSessionID returns 128 random bits in hex: the WHIP resource name,
// unguessable so that no one can aim a request at another's session.
func newSessionID() (string, error) {
	var b [16]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", fmt.Errorf("session id: %w", err)
	}
	return hex.EncodeToString(b[:]), nil
}
