package edge

import (
	"github.com/amphi-audio/amphi"
	"github.com/amphi-audio/amphi/internal/aac"
	"github.com/amphi-audio/amphi/internal/hls"
	"github.com/amphi-audio/amphi/internal/ogg"
	"github.com/amphi-audio/amphi/internal/program"
)

// HLS is a space's program as Low-Latency HLS on this node: a Segmenter
// per rendition of each ring, fed by one goroutine that follows the ring
// as a listener does, so it is built once whatever the number of HLS
// listeners.
type HLS struct {
	// Run names the program's run (SpaceInfo.Run) and so the directory of
	// its URLs: the names of parts and segments follow the granule, and a
	// run resumed after a crash may number behind what a cache in front
	// still keeps for a year under the same names.
	Run string
	// Segmenter holds the parts, segments and playlist of the program's
	// Opus.
	Segmenter *hls.Segmenter
	// AAC holds those of the AAC-LC rendition, for players that play no
	// Opus; nil if Config.NoHLSAAC.
	AAC  *hls.Segmenter
	ring *program.Ring
}

// Ended reports whether the program has ended: its playlist ends (or
// is about to end) with EXT-X-ENDLIST.
func (h *HLS) Ended() bool { return h.ring.Ended() }

// HLS returns the space's LL-HLS stream, nil if its program is not on
// this edge (Ring waits for one about to arrive). After the program ends
// it stays, with EXT-X-ENDLIST, as long as the ring does.
func (e *Edge) HLS(spaceID string) *HLS {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.hls[spaceID]
}

// newHLS makes the LL-HLS stream of a ring just made, and starts its feed.
// It is called with e.mu held.
func (e *Edge) newHLS(spaceID string, r *program.Ring, info SpaceInfo) error {
	cfg := hls.DefaultConfig()
	cfg.PreSkip, cfg.InputRate, cfg.Now = program.PreSkip, amphi.SampleRate, e.cfg.Now
	seg, err := hls.NewSegmenter(cfg)
	if err != nil {
		return err
	}
	var rend *aacRendition
	if !e.cfg.NoHLSAAC && aac.Available { // a static build may lack libavcodec
		if rend, err = newAACRendition(cfg); err != nil {
			return err
		}
	}
	run := info.Run
	if run == "" {
		run = "0"
	}
	st := &HLS{Run: run, Segmenter: seg, ring: r}
	if rend != nil {
		st.AAC = rend.seg
	}
	e.hls[spaceID] = st
	if e.closed {
		if rend != nil {
			rend.close()
		}
		return nil // Close may be waiting on the group already
	}
	e.wg.Add(1)
	go func() {
		defer e.wg.Done()
		if rend != nil {
			defer rend.close()
		}
		e.feedHLS(spaceID, r, seg, rend)
	}()
	return nil
}

// feedHLS gives seg the ring's pages in order until the program ends
// (then the playlist gets EXT-X-ENDLIST) or the edge closes. Like a
// listener it holds at a hole while a fetch may fill it, and goes past one
// that stays: the segmenter then marks a discontinuity. A page it refuses
// (one that goes back, or breaks Opus framing: the bus is not trusted) is
// skipped and counted; the ring drops older chunks anyway, so within a run
// the timeline never goes back. rend, if not nil, gets every page seg
// takes.
func (e *Edge) feedHLS(spaceID string, r *program.Ring, seg *hls.Segmenter, rend *aacRendition) {
	packets := make([][]byte, 0, amphi.FramesPerChunk)
	pos := r.Oldest()
	for {
		wait := r.Wait() // before Next, so no chunk is missed
		next := r.Next()
		pos = max(pos, r.Oldest()) // only a feed stalled for the ring's length
		for ; pos < next; pos++ {
			c := r.Get(pos)
			if c == nil {
				if r.Holding() {
					break
				}
				continue
			}
			packets = e.addPage(spaceID, seg, rend, c, packets[:0])
		}
		if pos >= next && r.Ended() {
			seg.Finish()
			if rend != nil {
				if err := rend.finish(); err != nil {
					e.cfg.Logger.Debug("edge: AAC rendition's end", "space", spaceID, "err", err)
				}
			}
			return
		}
		select {
		case <-wait:
		case <-e.done:
			return
		}
	}
}

// addPage gives seg, then rend if any, one chunk's page, reusing packets
// for its packets.
func (e *Edge) addPage(spaceID string, seg *hls.Segmenter, rend *aacRendition, c *program.Chunk, packets [][]byte) [][]byte {
	h, err := ogg.ParseHeader(c.Page)
	if err == nil {
		packets, err = ogg.AppendPackets(packets, c.Page)
	}
	if err == nil {
		err = seg.Add(h.Granule, packets)
	}
	if err == nil && rend != nil {
		err = rend.add(h.Granule, packets)
	}
	if err != nil {
		e.hlsSkipped.Add(1)
		e.cfg.Logger.Debug("edge: page not segmented for HLS", "space", spaceID, "seq", c.Seq, "err", err)
	}
	return packets
}
