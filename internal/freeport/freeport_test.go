package freeport

import (
	"net"
	"strconv"
	"testing"
)

// TestBelowEphemeral: each port lies below the ephemeral range, where no
// outgoing connection takes it, and a server can bind it.
func TestBelowEphemeral(t *testing.T) {
	low := ephemeralLow()
	for range 100 {
		port := Get(t)
		if port < first || port >= low {
			t.Fatalf("port %d: want one in [%d, %d)", port, first, low)
		}
		l, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(port))
		if err != nil {
			t.Fatal(err)
		}
		l.Close()
	}
}
