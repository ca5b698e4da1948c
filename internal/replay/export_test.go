package replay

import (
	"testing"

	"github.com/quiver-ml/quiver/features"
	"github.com/quiver-ml/quiver/store/offline"
)

// FraudStore returns the fraud example's definitions and an empty offline
// store in a temporary directory.
func FraudStore(tb testing.TB) (*features.Definitions, *offline.Dir) {
	tb.Helper()
	defs, err := features.Load("../../examples/fraud/definitions.yaml")
	if err != nil {
		tb.Fatal(err)
	}
	off, err := offline.NewDir(tb.TempDir())
	if err != nil {
		tb.Fatal(err)
	}
	return defs, off
}

// SetRowsFlush sets the size of the feature log rows held before they are
// written, and returns a function that restores it.
func SetRowsFlush(n int64) (restore func()) {
	old := rowsFlush
	rowsFlush = n
	return func() { rowsFlush = old }
}
