//go:build unix

package backfill

import (
	"math"
	"syscall"
)

// openFileLimit returns how many files the process may have open at once:
// its soft limit, which Go raises to the hard limit as it starts.
func openFileLimit() int {
	var l syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &l); err != nil || l.Cur > math.MaxInt32 {
		return math.MaxInt32
	}
	return int(l.Cur)
}
