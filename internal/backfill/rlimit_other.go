//go:build !unix

package backfill

import "math"

// openFileLimit returns how many files the process may have open at once:
// no limit is known here.
func openFileLimit() int { return math.MaxInt32 }
