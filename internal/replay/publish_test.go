package replay_test

import (
	"context"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/quiver-ml/quiver/internal/ingesttest"
	"github.com/quiver-ml/quiver/internal/replay"
)

// TestScanChangelogEveryPartition: a scan reads every partition, or fails.
// A partition whose end offset cannot be listed is not left out, which
// would leave its states out of a catch-up; a retriable error is asked
// again.
func TestScanChangelogEveryPartition(t *testing.T) {
	const topic = "quiver.changelog.v.v1"
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(2, topic))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	kafka := []kgo.Opt{kgo.SeedBrokers(c.ListenAddrs()...)}
	cl, err := kgo.NewClient(append(kafka, kgo.RecordPartitioner(kgo.ManualPartitioner()))...)
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	for i, k := range []string{"a", "b", "c", "d"} {
		if err := cl.ProduceSync(context.Background(), &kgo.Record{Topic: topic, Partition: int32(i % 2), Key: []byte(k), Value: []byte(k)}).FirstErr(); err != nil {
			t.Fatal(err)
		}
	}
	// Partition 1's end offset fails `fails` times with code.
	var fails atomic.Int32
	var code int16
	c.ControlKey(int16(kmsg.ListOffsets), func(r kmsg.Request) (kmsg.Response, error, bool) {
		c.KeepControl()
		if fails.Load() == 0 {
			return nil, nil, false
		}
		fails.Add(-1)
		return ingesttest.ListOffsetsAnswer(r.(*kmsg.ListOffsetsRequest), func(_ string, p int32) (int64, int16) {
			if p == 1 {
				return -1, code
			}
			return 2, 0
		}), nil, true
	})
	scan := func() (string, error) {
		var keys []string
		err := replay.ScanChangelog(context.Background(), kafka, topic, func(key, _ []byte) { keys = append(keys, string(key)) })
		return strings.Join(keys, ","), err
	}
	code = kerr.NotLeaderForPartition.Code
	fails.Store(3)
	if keys, err := scan(); err != nil || len(keys) != len("a,b,c,d") {
		t.Errorf("partition 1's leader unknown for a moment: scanned %q, %v; want every key", keys, err)
	}
	code = kerr.UnknownServerError.Code
	fails.Store(1)
	if keys, err := scan(); err == nil || !strings.Contains(err.Error(), "end offsets") {
		t.Errorf("partition 1's end offset failing: scanned %q, %v; want an error", keys, err)
	}
}
