package cli

import (
	"testing"

	"github.com/prometheus/client_golang/prometheus/testutil"
)

// TestRegistry: the registry every binary serves says what it runs.
func TestRegistry(t *testing.T) {
	reg := Registry()
	n, err := testutil.GatherAndCount(reg, "go_build_info", "go_goroutines", "process_start_time_seconds")
	if err != nil {
		t.Fatal(err)
	}
	if n != 3 {
		t.Fatalf("%d of go_build_info, go_goroutines and process_start_time_seconds gathered, want 3", n)
	}
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != "go_build_info" {
			continue
		}
		for _, l := range mf.GetMetric()[0].GetLabel() {
			if l.GetName() == "path" && l.GetValue() != "github.com/quiver-ml/quiver" {
				t.Errorf("go_build_info's path %q, want the module's", l.GetValue())
			}
		}
	}
}
