package stage

import (
	"strings"

	"github.com/amphi-audio/amphi"
	"github.com/pion/sdp/v3"
)

// maxOfferBytes bounds the SDP we parse. A browser offer with 13 audio
// m-lines and a dozen candidates is about 10 KiB; the HTTP layer caps bodies
// too, but Join is also called directly (tests, load tool).
const maxOfferBytes = 64 << 10

// MaxCandidates bounds the a=candidate lines of one media section of an
// offer. The stage is ICE-lite and never contacts a candidate, so the bound
// only caps what one offer makes Pion parse and pair; it leaves room for a
// laptop whose browser lists a UDP and a TCP candidate for each address of
// many interfaces (Wi-Fi, IPv6 temporary addresses, VPN, container bridges).
const MaxCandidates = 32

// offerInfo is what Join needs to know about an offer before Pion sees it.
type offerInfo struct {
	// micMid is the mid of the one audio m-line the speaker sends on.
	micMid string
	// slotMids are the recvonly Opus audio m-lines, in offer order: slot i
	// is slotMids[i], which is how clients map what they hear to slots.
	slotMids []string
}

// parseOffer checks that offer is SDP with exactly one sending Opus audio
// m-line and collects the recvonly Opus m-lines the speaker offers to hear
// others on. It never panics: the offer comes straight from the network.
func parseOffer(offer string) (offerInfo, error) {
	var info offerInfo
	if len(offer) > maxOfferBytes {
		return info, amphi.Errorf(amphi.ETooLarge, "offer is over %d bytes", maxOfferBytes)
	}
	var sd sdp.SessionDescription
	if err := sd.UnmarshalString(offer); err != nil {
		return info, amphi.Errorf(amphi.EInvalid, "offer is not valid SDP: %v", err)
	}
	// Pion's parser takes an empty or header-only text as valid SDP; an
	// offer without media is a broken client, not a codec question.
	if len(sd.MediaDescriptions) == 0 {
		return info, amphi.Errorf(amphi.EInvalid, "offer has no media (m=) lines")
	}
	sessionDir := directionOf(sd.Attributes, "sendrecv")
	seen := make(map[string]bool)
	opusLines := 0
	for _, m := range sd.MediaDescriptions {
		if m == nil {
			continue
		}
		if n := countCandidates(m); n > MaxCandidates {
			return info, amphi.Errorf(amphi.EInvalid, "offer lists %d ICE candidates in one media section, more than the %d the stage takes", n, MaxCandidates)
		}
		mid, _ := m.Attribute("mid")
		if mid != "" {
			if seen[mid] {
				return info, amphi.Errorf(amphi.EInvalid, "offer repeats mid %q", mid)
			}
			seen[mid] = true
		}
		// A zero port is a rejected or stopped m-line (RFC 3264 §8.2).
		if m.MediaName.Media != "audio" || m.MediaName.Port.Value == 0 || !offersOpus(m) {
			continue
		}
		opusLines++
		if mid == "" {
			return info, amphi.Errorf(amphi.EInvalid, "audio m-line without a=mid: WHIP needs unified plan with BUNDLE")
		}
		switch directionOf(m.Attributes, sessionDir) {
		case "sendrecv", "sendonly":
			if info.micMid != "" {
				return info, amphi.Errorf(amphi.EInvalid, "offer sends on more than one audio m-line (%q and %q)", info.micMid, mid)
			}
			info.micMid = mid
		case "recvonly":
			info.slotMids = append(info.slotMids, mid)
		}
	}
	if opusLines == 0 {
		return info, amphi.Errorf(amphi.EUnsupported, "offer has no Opus audio m-line: the stage takes Opus only")
	}
	if info.micMid == "" {
		return info, amphi.Errorf(amphi.EInvalid, "offer sends no audio: one sendonly or sendrecv Opus m-line is required")
	}
	return info, nil
}

// countCandidates returns how many a=candidate lines m has.
func countCandidates(m *sdp.MediaDescription) int {
	n := 0
	for _, a := range m.Attributes {
		if a.IsICECandidate() {
			n++
		}
	}
	return n
}

// directionOf returns the direction attribute among attrs, or def when there
// is none (RFC 3264 §5.1: the session-level one, else sendrecv).
func directionOf(attrs []sdp.Attribute, def string) string {
	for _, a := range attrs {
		switch a.Key {
		case "sendrecv", "sendonly", "recvonly", "inactive":
			return a.Key
		}
	}
	return def
}

// offersOpus reports whether m lists a payload type mapped to opus/48000.
func offersOpus(m *sdp.MediaDescription) bool {
	formats := make(map[string]bool, len(m.MediaName.Formats))
	for _, f := range m.MediaName.Formats {
		formats[f] = true
	}
	for _, a := range m.Attributes {
		if a.Key != "rtpmap" {
			continue
		}
		// a=rtpmap:<payload type> <encoding name>/<clock rate>[/<channels>]
		pt, enc, ok := strings.Cut(a.Value, " ")
		if !ok || !formats[pt] {
			continue
		}
		name, rest, _ := strings.Cut(strings.TrimSpace(enc), "/")
		rate, _, _ := strings.Cut(rest, "/")
		if strings.EqualFold(name, "opus") && rate == "48000" {
			return true
		}
	}
	return false
}
