package stage

import (
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/amphi-audio/amphi"
)

// sdpOf builds an offer from m-line sections, each "<media> <port> <direction> <rtpmap>".
func sdpOf(sections ...string) string {
	var b strings.Builder
	b.WriteString("v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\n")
	for i, s := range sections {
		f := strings.Fields(s)
		pt, _, _ := strings.Cut(f[3], ":")
		b.WriteString("m=" + f[0] + " " + f[1] + " UDP/TLS/RTP/SAVPF " + pt + "\r\n")
		b.WriteString("a=mid:" + string(rune('a'+i)) + "\r\n")
		b.WriteString("a=" + f[2] + "\r\n")
		b.WriteString("a=rtpmap:" + strings.Replace(f[3], ":", " ", 1) + "\r\n")
	}
	return b.String()
}

// withCandidates appends n host candidates to the offer's last section.
func withCandidates(offer string, n int) string {
	var b strings.Builder
	b.WriteString(offer)
	for i := range n {
		fmt.Fprintf(&b, "a=candidate:%d 1 udp 2130706431 127.0.0.2 %d typ host\r\n", i, 5000+i)
	}
	return b.String()
}

func TestParseOfferFindsMicrophoneAndSlots(t *testing.T) {
	tests := []struct {
		name  string
		offer string
		mic   string
		slots []string
		code  string
	}{
		{"mic only", sdpOf("audio 9 sendonly 111:opus/48000/2"), "a", nil, ""},
		{"sendrecv mic and slots", sdpOf("audio 9 recvonly 111:opus/48000/2", "audio 9 sendrecv 111:OPUS/48000/2", "audio 9 recvonly 111:opus/48000/2"), "b", []string{"a", "c"}, ""},
		{"video ignored", sdpOf("video 9 sendonly 96:VP8/90000", "audio 9 sendonly 111:opus/48000/2"), "b", nil, ""},
		{"rejected m-line ignored", sdpOf("audio 0 sendonly 111:opus/48000/2", "audio 9 sendonly 111:opus/48000/2"), "b", nil, ""},
		{"inactive slot ignored", sdpOf("audio 9 sendonly 111:opus/48000/2", "audio 9 inactive 111:opus/48000/2"), "a", nil, ""},
		{"pcmu slot ignored", sdpOf("audio 9 sendonly 111:opus/48000/2", "audio 9 recvonly 0:PCMU/8000"), "a", nil, ""},
		{"two mics", sdpOf("audio 9 sendonly 111:opus/48000/2", "audio 9 sendonly 111:opus/48000/2"), "", nil, amphi.EInvalid},
		{"opus at 8 kHz is not opus", sdpOf("audio 9 sendonly 111:opus/8000"), "", nil, amphi.EUnsupported},
		{"video only", sdpOf("video 9 sendonly 96:VP8/90000"), "", nil, amphi.EUnsupported},
		{"no media", sdpOf(), "", nil, amphi.EInvalid},
		{"no mid", strings.Replace(sdpOf("audio 9 sendonly 111:opus/48000/2"), "a=mid:a\r\n", "", 1), "", nil, amphi.EInvalid},
		{"candidates up to the cap", withCandidates(sdpOf("audio 9 sendonly 111:opus/48000/2"), MaxCandidates), "a", nil, ""},
		{"candidates past the cap", withCandidates(sdpOf("audio 9 sendonly 111:opus/48000/2"), MaxCandidates+1), "", nil, amphi.EInvalid},
		{"repeated mid", strings.Replace(sdpOf("audio 9 sendonly 111:opus/48000/2", "audio 9 recvonly 111:opus/48000/2"), "a=mid:b", "a=mid:a", 1), "", nil, amphi.EInvalid},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			info, err := parseOffer(tt.offer)
			if got := amphi.ErrorCode(err); got != tt.code {
				t.Fatalf("parseOffer: %v (code %q), want code %q", err, got, tt.code)
			}
			if err != nil {
				return
			}
			if info.micMid != tt.mic || !slices.Equal(info.slotMids, tt.slots) {
				t.Errorf("parseOffer = mic %q slots %q, want mic %q slots %q", info.micMid, info.slotMids, tt.mic, tt.slots)
			}
		})
	}
}

// FuzzParseOffer checks that no offer makes parseOffer panic and that what
// it accepts has a microphone. Corpus: testdata/fuzz/FuzzParseOffer.
func FuzzParseOffer(f *testing.F) {
	f.Add(sdpOf("audio 9 sendonly 111:opus/48000/2", "audio 9 recvonly 111:opus/48000/2"))
	f.Add(sdpOf("video 9 sendonly 96:VP8/90000"))
	f.Add("v=0\r\n")
	f.Fuzz(func(t *testing.T, offer string) {
		info, err := parseOffer(offer)
		if err == nil && info.micMid == "" {
			t.Fatalf("accepted an offer without a microphone: %q", offer)
		}
		if err != nil && amphi.ErrorCode(err) == amphi.EInternal {
			t.Fatalf("error without a client-facing code: %v", err)
		}
	})
}
