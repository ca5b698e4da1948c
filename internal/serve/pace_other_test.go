//go:build !linux

package serve_test

import "time"

// pace sends 0..n-1 to due, the ith at start + i×interval, then closes it.
// Go's timers may wake up to a millisecond late; see pace_linux_test.go.
func pace(start time.Time, interval time.Duration, n int, due chan<- int) {
	for i := range n {
		time.Sleep(time.Until(start.Add(time.Duration(i) * interval)))
		due <- i
	}
	close(due)
}
