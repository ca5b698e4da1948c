//go:build linux

package serve_test

import (
	"os"
	"time"

	"golang.org/x/sys/unix"
)

// pace sends 0..n-1 to due, the ith at start + i×interval, then closes it.
// Go's timers cannot: when the process is idle they wake in whole
// milliseconds (the runtime's epoll wait rounds up), which would add up to
// a millisecond of the harness's own to every latency measured. pace reads
// a timerfd through the runtime's poller instead, ticking every 100µs, and
// releases what is due at each tick: the harness's own lateness stays
// around 0.1 ms.
func pace(start time.Time, interval time.Duration, n int, due chan<- int) {
	defer close(due)
	fd, err := unix.TimerfdCreate(unix.CLOCK_MONOTONIC, unix.TFD_NONBLOCK|unix.TFD_CLOEXEC)
	if err != nil {
		panic(err)
	}
	timer := os.NewFile(uintptr(fd), "timerfd")
	defer timer.Close()
	tick := unix.NsecToTimespec(int64(100 * time.Microsecond))
	if err := unix.TimerfdSettime(fd, 0, &unix.ItimerSpec{Interval: tick, Value: tick}, nil); err != nil {
		panic(err)
	}
	var expirations [8]byte
	for i := 0; i < n; {
		for now := time.Now(); i < n && !start.Add(time.Duration(i)*interval).After(now); i++ {
			due <- i
		}
		if _, err := timer.Read(expirations[:]); err != nil {
			panic(err)
		}
	}
}
