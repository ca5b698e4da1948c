package fraudgen_test

import (
	"fmt"
	"time"

	"github.com/quiver-ml/quiver/examples/fraud/fraudgen"
)

func Example() {
	g, err := fraudgen.New(fraudgen.Config{
		Seed:    1,
		Rate:    10, // events per second of event time
		Start:   time.Date(2026, 6, 1, 0, 0, 0, 0, time.UTC),
		DriftAt: time.Date(2026, 6, 2, 0, 0, 0, 0, time.UTC),
	})
	if err != nil {
		panic(err)
	}
	for range 3 {
		ev := g.Next()
		fmt.Printf("%s %s\n", ev.Key(), ev.JSON())
	}
	// Output:
	// u000908 {"txn_id":"tx_a1c876380df91ee3","user_id":"u000908","merchant_id":"m00198","amount":9.36,"country":"NL","ts":"2026-06-01T00:00:00.020Z"}
	// u000198 {"txn_id":"tx_2d64141f76694b8b","user_id":"u000198","merchant_id":"m00143","amount":73.19,"country":"US","ts":"2026-06-01T00:00:00.120Z"}
	// u000261 {"txn_id":"tx_f26733f6c4fdccc2","user_id":"u000261","merchant_id":"m00196","amount":80.61,"country":"US","ts":"2026-06-01T00:00:00.266Z"}
}
