// Package mix turns the speakers' Opus RTP packets into the space's program:
// one continuous Opus stream, mono, 48 kHz, one packet per 20 ms of wall
// clock from the moment Run starts until it stops.
//
// Each speaker is a Source with its own jitter buffer (ordered by RTP sequence
// number, played once PlayoutDelay of audio is buffered) and its own libopus
// decoder, which conceals lost packets (PLC, or FEC when the next packet
// carries it) and plays silence for DTX gaps. Every 20 ms the Mixer pulls one
// frame from every source, sums them, encodes the sum and hands the packet to
// its output func; the recorder and the bus take it from there. The program
// never skips or stalls: silence is encoded when nobody speaks, and a mixer
// that ran late (GC, scheduling) produces the frames it owes at once, so the
// number of frames always equals the elapsed time divided by 20 ms.
//
// The stage forwards RTP between speakers itself; only the program goes
// through here.
package mix

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"gopkg.in/hraban/opus.v2"

	"github.com/amphi-audio/amphi"
)

const (
	defaultBitrate      = 32000
	defaultPlayoutDelay = 60 * time.Millisecond
	// maxEncoded bounds one encoded program packet; 32 kbit/s is ~80 bytes,
	// and libopus never needs more than 1275 bytes per frame.
	maxEncoded = 1500
	// warnBehind is how late the mixer may run before a catch-up is logged
	// at Warn rather than Debug.
	warnBehind = 5
)

// Config configures a Mixer. The zero value of every field means its default.
type Config struct {
	// Bitrate is the program's Opus bitrate in bit/s. Zero means 32000.
	Bitrate int
	// PlayoutDelay is how much audio a source buffers before it is played,
	// the jitter it absorbs. Zero means 60 ms.
	PlayoutDelay time.Duration
	// MaxSources caps the sources mixed at once. Zero means
	// amphi.MaxSpeakers (13).
	MaxSources int
	// Now tells the time that paces Run. Nil means time.Now.
	Now func() time.Time
	// Logger receives warnings about catch-ups and encoder failures. Nil
	// means slog.Default().
	Logger *slog.Logger
	// Knobs inject failures in tests and rehearsals. The zero value injects
	// nothing.
	Knobs Knobs
}

// DefaultConfig returns the configuration New uses for zero fields.
func DefaultConfig() Config {
	return Config{
		Bitrate:      defaultBitrate,
		PlayoutDelay: defaultPlayoutDelay,
		MaxSources:   amphi.MaxSpeakers,
		Now:          time.Now,
		Logger:       slog.Default(),
	}
}

// Knobs are failure-injection hooks for tests and rehearsals; nil fields do
// nothing.
type Knobs struct {
	// BeforeFrame runs on Run's goroutine before the frame with this index
	// is mixed; sleeping in it makes the mixer stall.
	BeforeFrame func(index uint64)
}

// Frame is one 20 ms program packet.
type Frame struct {
	// Index counts frames from 0, the first frame of the program; frame i
	// covers program time [i*20ms, (i+1)*20ms).
	Index uint64
	// Packet is the Opus packet. It is owned by the receiver.
	Packet []byte
	// Speaking lists the ids of the sources with an audible level in this
	// frame, nil when nobody is. The slice is shared with later frames that
	// have the same speakers: read it, never modify it.
	Speaking []string
}

// Stats are the mixer's counters since New.
type Stats struct {
	// Frames is the number of program frames emitted.
	Frames uint64
	// CaughtUp is the number of frames emitted late, right after another,
	// because the mixer had fallen behind the clock.
	CaughtUp uint64
	// Stalls counts the times the mixer found itself warnBehind frames or
	// more behind the clock: late enough for listeners to notice, unlike a
	// frame or two of scheduling jitter, which jitter buffers absorb.
	Stalls uint64
	// LastMix and MaxMix are the time mixing and encoding the last frame
	// took, and the longest such time.
	LastMix, MaxMix time.Duration
	// Sources has one entry per current source, in the order they were
	// added.
	Sources []SourceStats
}

// Mixer mixes its sources into the program. Create one with New, add
// sources with AddSource, and call Run once.
type Mixer struct {
	cfg       Config
	out       func(Frame)
	log       *slog.Logger
	now       func() time.Time
	delay     int // PlayoutDelay in samples
	ringSlots int
	ran       atomic.Bool

	mu      sync.Mutex // guards sources; never held while mixing
	sources []*Source

	frames   atomic.Uint64
	caughtUp atomic.Uint64
	stalls   atomic.Uint64
	lastMix  atomic.Int64
	maxMix   atomic.Int64

	// Owned by the goroutine that mixes: scratch reused every frame so the
	// hot path allocates only the packet it hands out.
	enc          *opus.Encoder
	active       []*Source
	acc          [amphi.FrameSamples]int32
	pcm          [amphi.FrameSamples]int16
	encBuf       [maxEncoded]byte
	speakNow     []string
	lastSpeaking []string
	silence      []byte // a packet of silence, sent if the encoder ever fails
}

// New returns a Mixer that calls out with every program frame, in order,
// from Run's goroutine. out must not block long: the program waits for it.
func New(cfg Config, out func(Frame)) (*Mixer, error) {
	def := DefaultConfig()
	if cfg.Bitrate == 0 {
		cfg.Bitrate = def.Bitrate
	}
	if cfg.PlayoutDelay == 0 {
		cfg.PlayoutDelay = def.PlayoutDelay
	}
	if cfg.MaxSources == 0 {
		cfg.MaxSources = def.MaxSources
	}
	if cfg.Now == nil {
		cfg.Now = def.Now
	}
	if cfg.Logger == nil {
		cfg.Logger = def.Logger
	}
	switch {
	case out == nil:
		return nil, fmt.Errorf("mix: new: nil output func")
	case cfg.Bitrate < 6000 || cfg.Bitrate > 510000:
		return nil, fmt.Errorf("mix: new: bitrate %d outside Opus's 6000-510000 bit/s", cfg.Bitrate)
	case cfg.PlayoutDelay < 0 || cfg.PlayoutDelay > 2*time.Second:
		return nil, fmt.Errorf("mix: new: playout delay %v outside 0-2s", cfg.PlayoutDelay)
	case cfg.MaxSources < 0:
		return nil, fmt.Errorf("mix: new: negative max sources %d", cfg.MaxSources)
	}
	enc, err := newEncoder(cfg.Bitrate)
	if err != nil {
		return nil, err
	}
	silence, err := encodeSilence(cfg.Bitrate)
	if err != nil {
		return nil, err
	}
	m := &Mixer{
		cfg:      cfg,
		out:      out,
		log:      cfg.Logger,
		now:      cfg.Now,
		delay:    int(cfg.PlayoutDelay * amphi.SampleRate / time.Second),
		enc:      enc,
		active:   make([]*Source, cfg.MaxSources),
		speakNow: make([]string, cfg.MaxSources),
		silence:  silence,
	}
	m.ringSlots = ringSlots(cfg.PlayoutDelay)
	return m, nil
}

func newEncoder(bitrate int) (*opus.Encoder, error) {
	enc, err := opus.NewEncoder(amphi.SampleRate, 1, opus.AppAudio)
	if err != nil {
		return nil, fmt.Errorf("mix: new encoder: %w", err)
	}
	if err := enc.SetBitrate(bitrate); err != nil {
		return nil, fmt.Errorf("mix: set bitrate %d: %w", bitrate, err)
	}
	return enc, nil
}

func encodeSilence(bitrate int) ([]byte, error) {
	enc, err := newEncoder(bitrate)
	if err != nil {
		return nil, err
	}
	var pcm [amphi.FrameSamples]int16
	buf := make([]byte, maxEncoded)
	n, err := enc.Encode(pcm[:], buf)
	if err != nil {
		return nil, fmt.Errorf("mix: encode silence: %w", err)
	}
	return buf[:n], nil
}

// AddSource adds a speaker to the mix. It fails with an amphi.EFull error
// when MaxSources are already mixed and amphi.EConflict when id is in use.
func (m *Mixer) AddSource(id string) (*Source, error) {
	if id == "" {
		return nil, fmt.Errorf("mix: add source: %w", amphi.Errorf(amphi.EInvalid, "empty source id"))
	}
	dec, err := opus.NewDecoder(amphi.SampleRate, 1) // one channel: libopus downmixes stereo senders
	if err != nil {
		return nil, fmt.Errorf("mix: add source %q: new decoder: %w", id, err)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, s := range m.sources {
		if s.id == id {
			return nil, fmt.Errorf("mix: add source %q: %w", id, amphi.Errorf(amphi.EConflict, "speaker %q is already mixed", id))
		}
	}
	if len(m.sources) >= m.cfg.MaxSources {
		return nil, fmt.Errorf("mix: add source %q: %w", id, amphi.Errorf(amphi.EFull, "the stage mixes at most %d speakers", m.cfg.MaxSources))
	}
	s := newSource(m, id, dec)
	m.sources = append(m.sources, s)
	return s, nil
}

func (m *Mixer) remove(s *Source) {
	m.mu.Lock()
	defer m.mu.Unlock()
	for i, x := range m.sources {
		if x == s {
			// A fresh slice, so a snapshot being mixed is never rewritten.
			m.sources = append(m.sources[:i:i], m.sources[i+1:]...)
			return
		}
	}
}

// Stats returns the mixer's counters.
func (m *Mixer) Stats() Stats {
	st := Stats{
		Frames:   m.frames.Load(),
		CaughtUp: m.caughtUp.Load(),
		Stalls:   m.stalls.Load(),
		LastMix:  time.Duration(m.lastMix.Load()),
		MaxMix:   time.Duration(m.maxMix.Load()),
	}
	m.mu.Lock()
	srcs := m.sources
	m.mu.Unlock()
	for _, s := range srcs {
		st.Sources = append(st.Sources, s.stats())
	}
	return st
}

// Run emits one frame per 20 ms of the clock's time since Run began, until
// ctx is done; it then emits the frames owed up to that moment, so a clean
// stop leaves no gap, and returns nil. When it finds itself late it emits
// every missed frame at once. Run may be called once.
func (m *Mixer) Run(ctx context.Context) error {
	if !m.ran.CompareAndSwap(false, true) {
		return fmt.Errorf("mix: run: %w", amphi.Errorf(amphi.EConflict, "the mixer already ran"))
	}
	start := m.now()
	var index uint64
	// catchUp emits every frame whose 20 ms have fully elapsed.
	catchUp := func() {
		owed := uint64(m.now().Sub(start) / amphi.FrameDuration)
		if owed > index+1 {
			behind := owed - index - 1
			m.caughtUp.Add(behind)
			level := slog.LevelDebug
			if behind >= warnBehind {
				level = slog.LevelWarn
				m.stalls.Add(1)
			}
			m.log.Log(ctx, level, "mix: running late, catching up", "frames", behind, "index", index)
		}
		for ; index < owed; index++ {
			m.emit(index)
		}
	}
	timer := time.NewTimer(amphi.FrameDuration)
	defer timer.Stop()
	for {
		catchUp()
		// Sleep until the next frame is due; capped at one frame so an
		// injected clock that jumps or stands still is followed closely.
		wait := start.Add(time.Duration(index+1) * amphi.FrameDuration).Sub(m.now())
		wait = min(max(wait, 0), amphi.FrameDuration)
		timer.Reset(wait)
		select {
		case <-ctx.Done():
			catchUp()
			return nil
		case <-timer.C:
		}
	}
}

// emit mixes, encodes and hands out frame index.
func (m *Mixer) emit(index uint64) {
	if f := m.cfg.Knobs.BeforeFrame; f != nil {
		f(index)
	}
	// Real time, not the injected clock: this measures CPU cost.
	t0 := time.Now()
	f := m.mixFrame(index)
	d := int64(time.Since(t0))
	m.lastMix.Store(d)
	if d > m.maxMix.Load() {
		m.maxMix.Store(d) // only this goroutine writes it
	}
	m.frames.Add(1)
	m.out(f)
}

// speakingEnergy is the sum of squared samples over one frame above which a
// source counts as speaking: an RMS of -50 dBFS (about 104 of 32768).
const speakingEnergy = int64(104 * 104 * amphi.FrameSamples)

// mixFrame pulls one frame from every source, mixes and encodes it. Only
// one goroutine may call it at a time.
func (m *Mixer) mixFrame(index uint64) Frame {
	m.mu.Lock()
	active := m.active[:copy(m.active, m.sources)]
	m.mu.Unlock()

	clear(m.acc[:])
	speaking := 0
	for _, s := range active {
		pcm := s.fill()
		var energy int64
		for i, v := range pcm {
			m.acc[i] += int32(v)
			energy += int64(v) * int64(v)
		}
		if energy >= speakingEnergy {
			m.speakNow[speaking] = s.id
			speaking++
		}
		s.consume()
	}
	clear(m.active) // let closed sources go
	for i, v := range m.acc {
		m.pcm[i] = int16(min(max(v, -32768), 32767))
	}

	var pkt []byte
	n, err := m.enc.Encode(m.pcm[:], m.encBuf[:])
	if err != nil {
		m.log.Error("mix: encode program frame; sending silence", "index", index, "err", err)
		pkt = append([]byte(nil), m.silence...)
	} else {
		pkt = make([]byte, n)
		copy(pkt, m.encBuf[:n])
	}
	return Frame{Index: index, Packet: pkt, Speaking: m.speaking(m.speakNow[:speaking])}
}

// speaking returns ids as a slice shared with the previous frame when the
// speakers have not changed, so steady speech allocates nothing.
func (m *Mixer) speaking(ids []string) []string {
	if len(ids) == 0 {
		m.lastSpeaking = nil
		return nil
	}
	if len(ids) == len(m.lastSpeaking) {
		same := true
		for i := range ids {
			if ids[i] != m.lastSpeaking[i] {
				same = false
				break
			}
		}
		if same {
			return m.lastSpeaking
		}
	}
	m.lastSpeaking = append([]string(nil), ids...)
	return m.lastSpeaking
}
