// Package freeport finds ports for servers a test starts, or restarts,
// while clients already dial them.
package freeport

import (
	"math/rand/v2"
	"net"
	"os"
	"strconv"
	"strings"
	"testing"
)

// Get returns a port on 127.0.0.1 that nothing listens on, below the
// kernel's range of ephemeral ports. A port from listening on :0 is an
// ephemeral one, and so is the local end of every outgoing connection: until
// the test's server binds it, any connection on the machine (a client
// dialling that very server in vain, even) may take it, and the server
// fails with "address already in use". Below the range, only a server
// asking for the port by number takes it.
func Get(t testing.TB) int {
	t.Helper()
	low := ephemeralLow()
	if low-first < 1000 {
		t.Fatalf("the ephemeral ports start at %d: too few ports below them for tests", low)
	}
	for range 100 {
		port := first + rand.IntN(low-first)
		if l, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(port)); err == nil {
			l.Close()
			return port
		}
	}
	t.Fatal("no free port found below the ephemeral range")
	return 0
}

// first is the lowest port Get returns: below it lie the well-known
// services' ports.
const first = 10000

// ephemeralLow returns the lowest ephemeral port.
func ephemeralLow() int {
	if b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range"); err == nil {
		if f := strings.Fields(string(b)); len(f) == 2 {
			if n, err := strconv.Atoi(f[0]); err == nil {
				return n
			}
		}
	}
	return 32768 // Linux's default
}
