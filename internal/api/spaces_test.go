package api

import (
	"strings"
	"testing"
	"unicode/utf8"
)

// FuzzCalendarText checks that any title or description makes content
// lines of at most 75 octets, never split inside a character, which unfold
// (RFC 5545 §3.1) to the escaped text.
func FuzzCalendarText(f *testing.F) {
	for _, s := range []string{"Launch; party, with\nnew lines", strings.Repeat("ü", 100), `back\slash`, ""} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, in string) {
		if !utf8.ValidString(in) {
			return // titles are checked to be UTF-8 before they get here
		}
		line := "SUMMARY:" + icsText(in)
		folded := icsFold(line)
		if !strings.HasSuffix(folded, "\r\n") {
			t.Fatalf("%q: no CRLF at the end", folded)
		}
		parts := strings.Split(strings.TrimSuffix(folded, "\r\n"), "\r\n")
		for i, p := range parts {
			if len(p) > 75 || !utf8.ValidString(p) {
				t.Fatalf("line %d of %q: %d octets, valid UTF-8 %v", i, in, len(p), utf8.ValidString(p))
			}
			if i > 0 && !strings.HasPrefix(p, " ") {
				t.Fatalf("continuation line %d does not start with a space: %q", i, p)
			}
		}
		if unfolded := strings.ReplaceAll(strings.TrimSuffix(folded, "\r\n"), "\r\n ", ""); unfolded != line {
			t.Fatalf("unfolds to %q, want %q", unfolded, line)
		}
		if strings.ContainsAny(icsText(in), "\r\n") {
			t.Fatalf("escaped text %q keeps a line break", icsText(in))
		}
	})
}
