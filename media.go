package amphi

import "time"

// The program's media format and the stage's size: the numbers that the
// stage, the mixer, the program's pages, the recorder, the edge and every
// client share. Opus RTP always uses a 48 kHz clock (RFC 7587) and Ogg Opus
// counts granule positions in 48 kHz samples (RFC 7845), so speakers'
// timestamps, the program and the recording share one unit: a sample.
const (
	// SampleRate is the program's sample rate, in Hz.
	SampleRate = 48000
	// FrameDuration is the audio in one Opus packet of the program: the
	// mixer's tick.
	FrameDuration = frameMillis * time.Millisecond
	// FrameSamples is the number of samples in one frame.
	FrameSamples = SampleRate * frameMillis / 1000
	// FramesPerChunk is the frames in one chunk, one Ogg page: 100 ms keeps
	// Ogg's overhead near 7 % and is the unit of the ring, the bus, the
	// recording and the burst.
	FramesPerChunk = 5
	// ChunkDuration is the audio in one chunk.
	ChunkDuration = FramesPerChunk * FrameDuration
	// ChunkSamples is the number of samples in one chunk.
	ChunkSamples = FramesPerChunk * FrameSamples
	// MaxSpeakers caps the speakers on one stage and the sources the mixer
	// decodes: a stage is a few people, and 13 decoders fit one core's
	// 20 ms budget with room.
	MaxSpeakers = 13
)

// frameMillis is FrameDuration in milliseconds, untyped so that the sample
// counts stay untyped constants, usable as int, int64 or uint32.
const frameMillis = 20
