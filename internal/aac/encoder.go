//go:build !noaac

package aac

/*
#cgo pkg-config: libavcodec libavutil
#include <libavcodec/avcodec.h>
#include <libavutil/channel_layout.h>
#include <libavutil/frame.h>
#include <libavutil/log.h>
#include <string.h>

// amphi_aac_open opens the native AAC-LC encoder. Set up in C, where
// libavcodec's macros (AVERROR, FF_PROFILE_AAC_LOW) can be used.
static AVCodecContext *amphi_aac_open(int rate, int channels, long bitrate, int *err) {
	const AVCodec *codec = avcodec_find_encoder_by_name("aac");
	if (!codec) {
		*err = AVERROR_ENCODER_NOT_FOUND;
		return NULL;
	}
	AVCodecContext *c = avcodec_alloc_context3(codec);
	if (!c) {
		*err = AVERROR(ENOMEM);
		return NULL;
	}
	c->sample_fmt = AV_SAMPLE_FMT_FLTP;
	c->sample_rate = rate;
	av_channel_layout_default(&c->ch_layout, channels);
	c->bit_rate = bitrate;
	c->profile = FF_PROFILE_AAC_LOW;
	c->time_base = (AVRational){1, rate};
	// Global header: the AudioSpecificConfig goes to extradata (for esds)
	// and the packets stay raw, without ADTS headers.
	c->flags |= AV_CODEC_FLAG_GLOBAL_HEADER;
	*err = avcodec_open2(c, codec, NULL);
	if (*err < 0) {
		avcodec_free_context(&c);
		return NULL;
	}
	return c;
}

static int amphi_aac_frame_size(AVCodecContext *c) { return c->frame_size; }
static int amphi_aac_delay(AVCodecContext *c) { return c->initial_padding; }
static int amphi_aac_extradata_size(AVCodecContext *c) { return c->extradata_size; }
static uint8_t *amphi_aac_extradata(AVCodecContext *c) { return c->extradata; }

static AVFrame *amphi_aac_frame(AVCodecContext *c) {
	AVFrame *f = av_frame_alloc();
	if (!f) {
		return NULL;
	}
	f->format = c->sample_fmt;
	f->nb_samples = c->frame_size;
	f->sample_rate = c->sample_rate;
	if (av_channel_layout_copy(&f->ch_layout, &c->ch_layout) < 0 || av_frame_get_buffer(f, 0) < 0) {
		av_frame_free(&f);
		return NULL;
	}
	return f;
}

// amphi_aac_send converts one frame of interleaved int16 into the
// encoder's planar float and sends it; pcm NULL sends the end of stream.
static int amphi_aac_send(AVCodecContext *c, AVFrame *f, const int16_t *pcm, int64_t pts) {
	if (!pcm) {
		return avcodec_send_frame(c, NULL);
	}
	int err = av_frame_make_writable(f);
	if (err < 0) {
		return err;
	}
	int channels = c->ch_layout.nb_channels;
	for (int ch = 0; ch < channels; ch++) {
		float *plane = (float *)f->extended_data[ch];
		for (int i = 0; i < f->nb_samples; i++) {
			plane[i] = pcm[i * channels + ch] / 32768.0f;
		}
	}
	f->pts = pts;
	return avcodec_send_frame(c, f);
}

static int amphi_aac_receive(AVCodecContext *c, AVPacket *p) { return avcodec_receive_packet(c, p); }
static int amphi_aac_eagain(int err) { return err == AVERROR(EAGAIN); }
static int amphi_aac_eof(int err) { return err == AVERROR_EOF; }
*/
import "C"

import (
	"errors"
	"fmt"
	"unsafe"
)

// Available says whether this build can encode: it has libavcodec.
const Available = true

// libavcodec logs to stderr by default, and its encoder chats (the
// average quantizer at each close); amphi reports errors itself.
func init() { C.av_log_set_level(C.AV_LOG_ERROR) }

// avError wraps a libavcodec error code with its message.
func avError(op string, code C.int) error {
	var buf [C.AV_ERROR_MAX_STRING_SIZE]C.char
	C.av_strerror(code, &buf[0], C.size_t(len(buf)))
	return fmt.Errorf("aac: %s: %s", op, C.GoString(&buf[0]))
}

// Encoder turns interleaved int16 PCM into AAC-LC access units. It is not
// safe for concurrent use. Close frees its C memory.
type Encoder struct {
	ctx      *C.AVCodecContext
	frame    *C.AVFrame
	pkt      *C.AVPacket
	channels int
	config   []byte
	delay    int
	// pending holds the input short of a whole frame, interleaved.
	pending []int16
	pts     int64
}

// NewEncoder opens an encoder of sampleRate Hz, channels channels and
// bitrate bit/s.
func NewEncoder(sampleRate, channels, bitrate int) (*Encoder, error) {
	var code C.int
	ctx := C.amphi_aac_open(C.int(sampleRate), C.int(channels), C.long(bitrate), &code)
	if ctx == nil {
		return nil, avError("open encoder", code)
	}
	e := &Encoder{ctx: ctx, channels: channels}
	if n := int(C.amphi_aac_frame_size(ctx)); n != FrameSize {
		e.Close()
		return nil, fmt.Errorf("aac: the encoder's frames are %d samples, not %d", n, FrameSize)
	}
	e.frame = C.amphi_aac_frame(ctx)
	e.pkt = C.av_packet_alloc()
	if e.frame == nil || e.pkt == nil {
		e.Close()
		return nil, errors.New("aac: out of memory")
	}
	e.config = C.GoBytes(unsafe.Pointer(C.amphi_aac_extradata(ctx)), C.amphi_aac_extradata_size(ctx))
	e.delay = int(C.amphi_aac_delay(ctx))
	e.pending = make([]int16, 0, FrameSize*channels)
	return e, nil
}

// Config returns the AudioSpecificConfig (ISO/IEC 14496-3 §1.6.2.1): the
// DecSpecificInfo of an MP4 esds box.
func (e *Encoder) Config() []byte { return e.config }

// Delay returns the encoder's priming, in samples: the silence before the
// input's first sample in the decoded output (1024 for libavcodec's
// encoder), which a player must skip, as Opus's pre-skip.
func (e *Encoder) Delay() int { return e.delay }

// Encode feeds interleaved pcm and appends the access units it completes
// to dst, each a new slice of FrameSize samples, in order. The encoder
// buffers what is short of a frame, and lags its input by Delay.
func (e *Encoder) Encode(dst [][]byte, pcm []int16) ([][]byte, error) {
	if e.ctx == nil {
		return dst, ErrClosed
	}
	whole := FrameSize * e.channels
	for len(pcm) > 0 {
		if len(e.pending) == 0 && len(pcm) >= whole {
			// Whole frames straight from the input: no copy.
			var err error
			if dst, err = e.send(dst, pcm[:whole]); err != nil {
				return dst, err
			}
			pcm = pcm[whole:]
			continue
		}
		n := min(whole-len(e.pending), len(pcm))
		e.pending, pcm = append(e.pending, pcm[:n]...), pcm[n:]
		if len(e.pending) == whole {
			var err error
			if dst, err = e.send(dst, e.pending); err != nil {
				return dst, err
			}
			e.pending = e.pending[:0]
		}
	}
	return dst, nil
}

// Flush ends the stream: the input short of a frame is completed with
// silence, and the access units the encoder still holds are appended to
// dst. The Encoder encodes nothing after it, but must still be closed.
func (e *Encoder) Flush(dst [][]byte) ([][]byte, error) {
	if e.ctx == nil {
		return dst, ErrClosed
	}
	var err error
	if len(e.pending) > 0 {
		e.pending = append(e.pending, make([]int16, FrameSize*e.channels-len(e.pending))...)
		if dst, err = e.send(dst, e.pending); err != nil {
			return dst, err
		}
		e.pending = e.pending[:0]
	}
	if code := C.amphi_aac_send(e.ctx, e.frame, nil, 0); code < 0 {
		return dst, avError("flush", code)
	}
	return e.receive(dst)
}

// send encodes one whole frame of interleaved pcm and collects the
// access units it releases.
func (e *Encoder) send(dst [][]byte, pcm []int16) ([][]byte, error) {
	if code := C.amphi_aac_send(e.ctx, e.frame, (*C.int16_t)(unsafe.Pointer(&pcm[0])), C.int64_t(e.pts)); code < 0 {
		return dst, avError("encode", code)
	}
	e.pts += FrameSize
	return e.receive(dst)
}

// receive appends the access units the encoder has ready, each copied
// into Go memory, which the segmenter keeps.
func (e *Encoder) receive(dst [][]byte) ([][]byte, error) {
	for {
		code := C.amphi_aac_receive(e.ctx, e.pkt)
		if C.amphi_aac_eagain(code) != 0 || C.amphi_aac_eof(code) != 0 {
			return dst, nil
		}
		if code < 0 {
			return dst, avError("receive", code)
		}
		dst = append(dst, C.GoBytes(unsafe.Pointer(e.pkt.data), e.pkt.size))
		C.av_packet_unref(e.pkt)
	}
}

// Close frees the encoder's C memory. It is safe to call more than once.
func (e *Encoder) Close() error {
	if e.ctx != nil {
		C.avcodec_free_context(&e.ctx)
	}
	if e.frame != nil {
		C.av_frame_free(&e.frame)
	}
	if e.pkt != nil {
		C.av_packet_free(&e.pkt)
	}
	return nil
}
