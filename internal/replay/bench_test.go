package replay_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/quiver-ml/quiver/features"
	"github.com/quiver-ml/quiver/internal/replay"
	"github.com/quiver-ml/quiver/store/offline"
)

// BenchmarkRun replays 1M events of 10,000 users of the fraud example into
// user_txn@1, without and with its feature log rows: the rows' cost.
func BenchmarkRun(b *testing.B) {
	defs, off := replay.FraudStore(b)
	src := defs.Source("transactions")
	start := time.Date(2026, 11, 20, 0, 0, 0, 0, time.UTC).UnixMilli()
	const events, batch = 1_000_000, 100_000
	for first := 0; first < events; first += batch {
		bt := offline.Batch{Dir: "events/transactions", Columns: offline.EventColumns(src), TimeColumn: len(src.Schema),
			Stream: "transactions/0", FirstOffset: int64(first), LastOffset: int64(first + batch - 1)}
		for o := first; o < first+batch; o++ {
			at := start + int64(o)*50 // 14 hours
			bt.Rows = append(bt.Rows, []features.Value{features.String(fmt.Sprintf("t%d", o)), features.String(fmt.Sprintf("u%d", o*7919%10000)),
				features.String(fmt.Sprintf("m%d", o%500)), features.Float(float64(o % 997)), features.String([]string{"DE", "FR", "US"}[o%3]),
				features.Timestamp(at), features.Timestamp(at), features.String("transactions"), features.Int(0), features.Int(int64(o))})
		}
		if err := off.WriteBatch(context.Background(), bt); err != nil {
			b.Fatal(err)
		}
	}
	v := defs.View("user_txn", 1)
	for _, rows := range []bool{false, true} {
		b.Run(fmt.Sprintf("rows=%v", rows), func(b *testing.B) {
			var res *replay.Result
			var err error
			for i := range b.N {
				cfg := replay.Config{Definitions: defs, View: v, Offline: off}
				if rows {
					if _, err := off.RemoveLog(context.Background(), offline.FeatureLogDir(v)); err != nil {
						b.Fatal(err)
					}
					cfg.Rows = fmt.Sprintf("bench/%d", i)
				}
				if res, err = replay.Run(context.Background(), cfg, func(*replay.Bucket) error { return nil }); err != nil {
					b.Fatal(err)
				}
			}
			if res.Events != events || rows != (res.Rows == res.Applied) {
				b.Fatalf("%d events read, %d applied, %d rows", res.Events, res.Applied, res.Rows)
			}
			b.ReportMetric(float64(events)*float64(b.N)/b.Elapsed().Seconds(), "events/s")
		})
	}
}
