package api

import (
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/amphi-audio/amphi"
)

// textField is a free-text field that one person types and others see: a
// space's title and description, a speaker's or a request's name. Every
// such field is checked by check, so none can carry what would corrupt or
// disguise how it and the text around it are shown.
type textField struct {
	name      string // as the API calls it, for messages
	max       int    // characters
	required  bool
	multiline bool // newlines and tabs allowed
}

// The API's free-text fields.
var (
	titleText       = textField{name: "title", max: maxTitle, required: true}
	descriptionText = textField{name: "description", max: maxDescription, multiline: true}
)

// refusedInText are the characters no free text may hold: control
// characters (NUL, escapes and the like), the bidirectional controls
// (U+061C, U+200E-U+200F, U+202A-U+202E, U+2066-U+2069) that make text
// display in an order other than the one it is read in, so a name or title
// can pose as another, and the line and paragraph separators, which
// newlines replace. Other format characters stay allowed: the zero-width
// joiners shape Arabic, Indic scripts and emoji sequences.
var refusedInText = []*unicode.RangeTable{unicode.Cc, unicode.Bidi_Control, unicode.Zl, unicode.Zp}

// check trims s and returns it, or an amphi.EInvalid error saying what is
// wrong in words its author can act on.
func (f textField) check(s string) (string, error) {
	s = strings.TrimSpace(s)
	switch {
	case s == "" && f.required:
		return "", amphi.Errorf(amphi.EInvalid, "%s is required", f.name)
	case !utf8.ValidString(s):
		return "", amphi.Errorf(amphi.EInvalid, "%s must be UTF-8 text", f.name)
	case utf8.RuneCountInString(s) > f.max:
		return "", amphi.Errorf(amphi.EInvalid, "%s is longer than %d characters", f.name, f.max)
	}
	visible := s == ""
	for i, r := range []rune(s) {
		if unicode.IsOneOf(refusedInText, r) && !(f.multiline && (r == '\n' || r == '\t')) {
			return "", amphi.Errorf(amphi.EInvalid, "%s must not contain control characters or text-direction marks: %U at character %d", f.name, r, i+1)
		}
		visible = visible || unicode.In(r, unicode.L, unicode.N, unicode.P, unicode.S)
	}
	if !visible {
		return "", amphi.Errorf(amphi.EInvalid, "%s has no visible characters", f.name)
	}
	return s, nil
}

// displayName checks a name people will see on stage; required says
// whether it may be empty.
func displayName(name string, required bool) (string, error) {
	return textField{name: "name", max: maxName, required: required}.check(name)
}
