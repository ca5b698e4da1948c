package features_test

import (
	"fmt"
	"log"
	"time"

	"github.com/quiver-ml/quiver/features"
)

// Load reads and validates definitions; a feature reference resolves to its
// view and feature.
func ExampleLoad() {
	defs, err := features.Load("../examples/fraud/definitions.yaml")
	if err != nil {
		log.Fatal(err)
	}
	ref, _ := features.ParseFeatureRef("user_txn:amount_avg_24h") // the highest version
	view, feature, err := defs.Resolve(ref)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(view.Ref(), feature.Agg, feature.Window, feature.Granularity)
	for _, r := range defs.Service("fraud_v1").Features[:2] {
		fmt.Println(r)
	}
	// Output:
	// user_txn@1 avg 24h0m0s 1h0m0s
	// user_txn@1:txn_count_1h
	// user_txn@1:amount_sum_1h
}

// Parse reports every problem at once, each with file, line, column and field.
func ExampleParse_errors() {
	_, err := features.Parse("bad.yaml", []byte(`project: demo
entities: [{name: user, join_keys: [user_id]}]
sources:
  - {name: txns, topic: txns, event_time: ts, schema: {user_id: string, amount: float, ts: timestamp}}
feature_views:
  - name: spend
    version: 1
    entity: user
    source: txns
    features:
      - {name: total, agg: sum, field: amont}
      - {name: n, agg: count, window: 90m, granularity: 7m}
`))
	fmt.Println(err)
	// Output:
	// definitions: 2 problem(s):
	// bad.yaml:11:40: feature_views[0].features[0].field: field "amont" is not in the schema of source "txns" (did you mean "amount"?)
	// bad.yaml:12:57: feature_views[0].features[1].granularity: 7m does not divide the window 1h30m
}

// An Engine applies events to an entity's state and evaluates the view's
// features as of a time.
func ExampleEngine() {
	defs, err := features.Load("../examples/fraud/definitions.yaml")
	if err != nil {
		log.Fatal(err)
	}
	engine, err := features.NewEngine(defs, defs.View("user_txn", 1))
	if err != nil {
		log.Fatal(err)
	}
	src := defs.Source("transactions")
	start := time.Date(2026, 11, 20, 9, 0, 0, 0, time.UTC)
	state := engine.NewState()
	for i, txn := range []struct {
		minutes  int
		merchant string
		amount   float64
		country  string
	}{
		{0, "m1", 12.50, "DE"},
		{20, "m2", 80.00, "DE"},
		{50, "m1", 7.25, "FR"},
		{70, "m3", -5.00, "FR"}, // a refund: the view's filter drops it
	} {
		at := start.Add(time.Duration(txn.minutes) * time.Minute).UnixMilli()
		fields := make([]features.Value, len(src.Schema))
		fields[src.Field("txn_id")] = features.String(fmt.Sprint("t", i))
		fields[src.Field("user_id")] = features.String("u1")
		fields[src.Field("merchant_id")] = features.String(txn.merchant)
		fields[src.Field("amount")] = features.Float(txn.amount)
		fields[src.Field("country")] = features.String(txn.country)
		fields[src.Field("ts")] = features.Timestamp(at)
		if _, err := engine.Apply(state, &features.Event{Time: at, Offset: int64(i), Fields: fields}); err != nil {
			log.Fatal(err)
		}
	}
	values := make([]features.Value, len(engine.View().Features))
	asOf := start.Add(65 * time.Minute).UnixMilli()
	if err := engine.Evaluate(state, asOf, values); err != nil {
		log.Fatal(err)
	}
	for i, f := range engine.View().Features {
		fmt.Printf("%s = %v\n", f.Name, values[i])
	}
	// Output:
	// txn_count_1h = 2
	// amount_sum_1h = 87.25
	// amount_avg_24h = 33.25
	// amount_max_24h = 80
	// amount_std_7d = 33.126650902256934
	// merchants_24h = 2
	// last_country = "FR"
}
