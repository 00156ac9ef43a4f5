package load

import "time"

// StallAfter is how long a playing listener's player may run dry before
// it counts as a stall: shorter gaps pass for network jitter.
const StallAfter = time.Second

// player models a listener's player with a jitter buffer of buffer: it
// starts playing once buffer of audio has arrived, plays in real time, and
// when the audio received runs out it is starved and waits for buffer again
// (rebuffers). A starvation that lasts more than StallAfter, from running dry
// to playing again, is a stall. Times are offsets on the listener's own
// clock; the model is a few integers, updated on each read.
type player struct {
	buffer   time.Duration
	received time.Duration // audio received in all
	playing  bool
	// While playing: the playhead was at fromPos when it started at
	// fromAt. While not: the playhead is at pos.
	fromAt, fromPos time.Duration
	pos             time.Duration
	starvedAt       time.Duration // when playback ran dry; -1 when not starved
	stalls          int
	longestStarve   time.Duration
}

func newPlayer(buffer time.Duration) player {
	return player{buffer: buffer, starvedAt: -1}
}

// arrive records audio arriving at now.
func (p *player) arrive(now, audio time.Duration) {
	p.advance(now)
	p.received += audio
	if !p.playing && p.received-p.pos >= p.buffer {
		p.playing, p.fromAt, p.fromPos = true, now, p.pos
		if p.starvedAt >= 0 {
			p.endStarve(now)
		}
	}
}

// advance moves the playhead to now: if the audio ran out before, playback
// stopped then.
func (p *player) advance(now time.Duration) {
	if !p.playing {
		return
	}
	if dry := p.fromAt + p.received - p.fromPos; now > dry {
		p.playing, p.pos, p.starvedAt = false, p.received, dry
	}
}

// finish ends the model at now. clean says the program ended (EOS): a
// player waiting for audio then is no stall, since none is due.
func (p *player) finish(now time.Duration, clean bool) {
	p.advance(now)
	if p.starvedAt >= 0 && !clean {
		p.endStarve(now)
	}
}

func (p *player) endStarve(now time.Duration) {
	d := now - p.starvedAt
	p.longestStarve = max(p.longestStarve, d)
	if d > StallAfter {
		p.stalls++
	}
	p.starvedAt = -1
}
