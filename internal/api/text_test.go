package api

import (
	"strings"
	"testing"
	"unicode"
	"unicode/utf8"

	"github.com/amphi-audio/amphi"
)

func TestFreeTextRefusesControlAndDirectionCharacters(t *testing.T) {
	for _, tc := range []struct {
		field textField
		in    string
		want  string // "" accepts; else a part of the message
	}{
		{titleText, "Launch 🚀 día", ""},
		{titleText, "نقاش مفتوح", ""},
		{titleText, "שיחה פתוחה", ""},
		{titleText, "👩‍💻 family 👨‍👩‍👧", ""}, // zero-width joiners
		{titleText, "東京\u3000ラジオ", ""},      // ideographic space
		{descriptionText, "Line one\n\tLine two", ""},
		{descriptionText, "", ""},
		{titleText, "  ", "title is required"},
		{titleText, "a\x00b", "U+0000 at character 2"},
		{titleText, "a\nb", "U+000A"},
		{titleText, "\u202egnp.exe", "U+202E at character 1"},
		{descriptionText, "ok\u2066hidden\u2069", "U+2066"},
		{descriptionText, "a\rb", "U+000D"},
		{descriptionText, "a\u2028b", "U+2028"},
		{descriptionText, "x\u200fy", "U+200F"},
		{descriptionText, "\x1b[31mred", "U+001B"},
		{titleText, "\u200d\u200d", "no visible characters"},
		{titleText, strings.Repeat("é", maxTitle+1), "longer than 200"},
	} {
		got, err := tc.field.check(tc.in)
		switch {
		case tc.want == "" && err != nil:
			t.Errorf("%s %q: %v, want accepted", tc.field.name, tc.in, err)
		case tc.want == "" && got != strings.TrimSpace(tc.in):
			t.Errorf("%s %q: accepted as %q", tc.field.name, tc.in, got)
		case tc.want != "" && (amphi.ErrorCode(err) != amphi.EInvalid || !strings.Contains(amphi.ErrorMessage(err), tc.want)):
			t.Errorf("%s %q: %v, want invalid saying %q", tc.field.name, tc.in, err, tc.want)
		}
	}
}

// FuzzFreeText checks that whatever someone types into a title, a
// description or a name, it is refused as invalid or accepted trimmed,
// short, UTF-8, visible and free of control and bidirectional characters.
func FuzzFreeText(f *testing.F) {
	for _, s := range []string{"Ada", "  Grace  ", "", "a\x00b", "\u202eevil", "a\u2067b", strings.Repeat("é", 61),
		"\xff", "line\nline", "👩‍💻", "\u200d", "مرحبا", "\u2028"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, in string) {
		for _, field := range []textField{titleText, descriptionText, {name: "name", max: maxName}, {name: "name", max: maxName, required: true}} {
			out, err := field.check(in)
			if err != nil {
				if amphi.ErrorCode(err) != amphi.EInvalid {
					t.Fatalf("%s %q: %v", field.name, in, err)
				}
				continue
			}
			if out != strings.TrimSpace(out) || !utf8.ValidString(out) || utf8.RuneCountInString(out) > field.max ||
				(out == "" && field.required) ||
				(out != "" && !strings.ContainsFunc(out, func(r rune) bool { return unicode.In(r, unicode.L, unicode.N, unicode.P, unicode.S) })) {
				t.Fatalf("%s %q accepted as %q", field.name, in, out)
			}
			for _, r := range out {
				if unicode.In(r, unicode.Bidi_Control, unicode.Zl, unicode.Zp) || (unicode.IsControl(r) && !(field.multiline && (r == '\n' || r == '\t'))) {
					t.Fatalf("%s %q accepted with %U", field.name, in, r)
				}
			}
		}
	})
}
