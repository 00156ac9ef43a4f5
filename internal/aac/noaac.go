//go:build noaac

package aac

// Available says whether this build can encode: not without libavcodec.
const Available = false

// Encoder is the type of a build with libavcodec; here NewEncoder makes
// none.
type Encoder struct{}

// NewEncoder returns ErrUnavailable.
func NewEncoder(sampleRate, channels, bitrate int) (*Encoder, error) { return nil, ErrUnavailable }

// Config returns nothing.
func (e *Encoder) Config() []byte { return nil }

// Delay returns 0.
func (e *Encoder) Delay() int { return 0 }

// Encode returns ErrUnavailable.
func (e *Encoder) Encode(dst [][]byte, pcm []int16) ([][]byte, error) { return dst, ErrUnavailable }

// Flush returns ErrUnavailable.
func (e *Encoder) Flush(dst [][]byte) ([][]byte, error) { return dst, ErrUnavailable }

// Close does nothing.
func (e *Encoder) Close() error { return nil }
