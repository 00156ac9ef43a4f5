package edge

import "testing"

// TestEveryEndReasonHasARowInTheTable fails when an EndReason is added
// without its name: it would be counted under "" and never as a cut.
func TestEveryEndReasonHasARowInTheTable(t *testing.T) {
	seen := map[string]bool{}
	for _, r := range EndReasons() {
		if r.String() == "" || seen[r.String()] {
			t.Errorf("EndReason %d is named %q: give it its own row in endReasons", r, r.String())
		}
		seen[r.String()] = true
	}
	if len(seen) != int(numEndReasons)-1 || EndReason(0).String() != "" || numEndReasons.String() != "" {
		t.Errorf("EndReasons() = %v", EndReasons())
	}
	var cut []EndReason
	for _, r := range EndReasons() {
		if r.Cut() {
			cut = append(cut, r)
		}
	}
	if len(cut) != 2 || cut[0] != EndBehind || cut[1] != EndWrite {
		t.Errorf("cut reasons %v, want behind and write: a listener who leaves is not an edge error", cut)
	}
}
