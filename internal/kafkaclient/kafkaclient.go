// Package kafkaclient closes franz-go clients within a bound.
package kafkaclient

import (
	"fmt"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
)

// Timeout is how long Close waits.
const Timeout = 5 * time.Second

// Close closes cl, leaving its group if it is in one, and returns within
// Timeout. A broker that takes connections but answers nothing (frozen, or
// cut off) holds the leave, and the request that ends a fetch session,
// until the request times out, and a stopping process must not outlast its
// supervisor's grace period. The group gives the partitions of a member
// that did not leave to the others at the session timeout; what the close
// has not done by then goes on in the background, and Close says so.
func Close(cl *kgo.Client) error {
	cl.AllowRebalance() // a blocked rebalance would hold the leave
	done := make(chan struct{})
	go func() {
		cl.Close()
		close(done)
	}()
	select {
	case <-done:
		return nil
	case <-time.After(Timeout):
		return fmt.Errorf("close the Kafka client: the brokers did not answer within %s; a group it was in gives its partitions away at the session timeout", Timeout)
	}
}
