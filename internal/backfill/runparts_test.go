package backfill

import "testing"

func TestRunsDiffer(t *testing.T) {
	for _, c := range []struct{ a, b, want string }{
		{"spine=1 definitions=2 flags=3 build=4", "spine=1 definitions=2 flags=3 build=5", "the Quiver version that built them"},
		{"spine=1 definitions=2 flags=3 build=4", "spine=9 definitions=2 flags=8 build=4 log-marks=7",
			"the spine's content, --inclusive or --timestamp-column and the event log's marks (--log-marks)"},
		// A shard of a build that did not record the parts.
		{"spine=1 definitions=2 flags=3 build=4", "",
			"the spine's content, the features' definitions, --inclusive, --timestamp-column, the event log's marks (--log-marks) or the Quiver version that built them"},
	} {
		if got := runsDiffer(c.a, c.b); got != c.want {
			t.Errorf("runsDiffer(%q, %q) = %q, want %q", c.a, c.b, got, c.want)
		}
	}
}
