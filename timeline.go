package amphi

import "time"

// SpeakerSpan is a stretch of a space's recording during which one
// speaker was audible. Times are the recording's (see internal/timeline).
type SpeakerSpan struct {
	// Speaker is the speaker's id on the stage.
	Speaker string
	// Name is how the speaker appeared on stage; "" when not known.
	Name string
	// From and To bound the span in the recording.
	From, To time.Duration
}

// ReactionCount is how many reactions of one kind arrived during one
// bucket of a space's recording.
type ReactionCount struct {
	// At is the start of the bucket in the recording.
	At    time.Duration
	Kind  string
	Count int
}
