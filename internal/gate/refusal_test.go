package gate

import (
	"regexp"
	"testing"
)

// TestEveryRefusalHasARowInTheTable fails when a Refusal is added without
// its name: it would be counted under "" and judged as neither invalid nor
// capacity.
func TestEveryRefusalHasARowInTheTable(t *testing.T) {
	label := regexp.MustCompile(`^[a-z][a-z_]*$`)
	seen := map[string]Refusal{}
	for _, r := range Refusals() {
		name := r.String()
		if !label.MatchString(name) {
			t.Errorf("Refusal %d has the name %q: add its row to the refusals table", r, name)
		}
		if prev, dup := seen[name]; dup {
			t.Errorf("Refusals %d and %d are both named %q", prev, r, name)
		}
		seen[name] = r
		if r.Invalid() && r.Capacity() {
			t.Errorf("%v is both invalid and capacity", r)
		}
	}
	if len(seen) != int(numRefusals)-1 {
		t.Errorf("Refusals() returned %d of %d", len(seen), numRefusals-1)
	}
	if Refusal(0).String() != "" || Refusal(0).Invalid() || numRefusals.String() != "" {
		t.Error("a value that is no refusal has a name or a kind")
	}
	for c := range numCauses {
		if e := powRefusals[c]; e == nil || e.Reason == 0 {
			t.Errorf("proof-of-work cause %d has no refusal", c)
		}
	}
	for _, c := range []cause{rMalformed, rUnknownKey, rBadSignature, rWrongSpace, rExpired} {
		if e := ticketRefusals[c]; e == nil || e.Reason == 0 {
			t.Errorf("ticket cause %d has no refusal", c)
		}
	}
}

func TestRefusalNamesListsTheKind(t *testing.T) {
	capacity := RefusalNames(Refusal.Capacity)
	if len(capacity) != 2 || capacity[0] != "room_full" || capacity[1] != "waiting_full" {
		t.Errorf("capacity refusals %v, want room_full and waiting_full", capacity)
	}
	for _, name := range RefusalNames(Refusal.Invalid) {
		if name == "ticket_lapsed" || name == "pow_outdated" || name == "room_full" {
			t.Errorf("%s counted as invalid: it happens to legitimate clients", name)
		}
	}
}
