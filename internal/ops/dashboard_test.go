package ops_test

import (
	"os"
	"regexp"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/amphi-audio/amphi/internal/ops"
)

// TestTheFleetDashboardQueriesOnlyMetricsThatExist keeps the Grafana
// dashboard in the repo true of the collector: a renamed metric fails here,
// not on an operator's screen during an event.
func TestTheFleetDashboardQueriesOnlyMetricsThatExist(t *testing.T) {
	b, err := os.ReadFile("../../docs/grafana/amphi-fleet.json")
	if err != nil {
		t.Fatal(err)
	}
	descs := make(chan *prometheus.Desc, 64)
	ops.NewCollector(func() ops.Snapshot { return ops.Snapshot{} }).Describe(descs)
	close(descs)
	var known []string
	for d := range descs {
		known = append(known, d.String())
	}
	used := regexp.MustCompile(`amphi_[a-z_]+`).FindAllString(string(b), -1)
	if len(used) == 0 {
		t.Fatal("the dashboard queries no amphi metric")
	}
	for _, name := range used {
		found := false
		for _, k := range known {
			found = found || strings.Contains(k, `fqName: "`+name+`"`)
		}
		if !found {
			t.Errorf("the dashboard queries %s, which the collector does not export", name)
		}
	}
}
