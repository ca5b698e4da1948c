package backfill

import (
	"runtime"
	"slices"
	"testing"

	"github.com/quiver-ml/quiver/features"
	"github.com/quiver-ml/quiver/store/offline"
)

// A training set's on-demand features see a spine row as serve sees a
// request's context: every column (has() and size() included), integers
// as doubles; rows on every core give what one at a time would.
func TestOnDemandSeesTheWholeRow(t *testing.T) {
	defs, err := features.Parse("defs.yaml", []byte(`
project: t
entities: [{name: user, join_keys: [user_id]}]
sources:
  - {name: events, topic: events, format: json, event_time: ts, schema: {user_id: string, amount: float, ts: timestamp}}
feature_views:
  - {name: v, version: 1, entity: user, source: events, features: [{name: c, agg: count}]}
feature_services:
  - name: svc
    features: [v@1:c]
    on_demand:
      - {name: bonus, expr: "has(request.bonus) ? request.bonus : -1.0"}
      - {name: keys, expr: "double(request.size())"}
      - {name: ratio, expr: "request.amount / (double(f['v@1:c']) + 1.0)"}
`))
	if err != nil {
		t.Fatal(err)
	}
	p, err := newPlan(defs, nil, "svc")
	if err != nil {
		t.Fatal(err)
	}
	cols := []offline.Column{{Name: "user_id", Type: features.TypeString}, {Name: "ts", Type: features.TypeTimestamp},
		{Name: "amount", Type: features.TypeFloat}, {Name: "bonus", Type: features.TypeInt}}
	type want struct{ bonus, keys, ratio float64 }
	var rows [][]features.Value
	var wants []want
	for i := range 5 * runtime.GOMAXPROCS(0) {
		rows = append(rows, []features.Value{features.String("u1"), features.Timestamp(int64(i)), features.Float(float64(10 * i)), features.Int(int64(i))})
		wants = append(wants, want{bonus: float64(i), keys: 4, ratio: float64(10*i) / float64(i+1)})
	}
	sp := &spine{cols: cols, table: tableOf(cols, rows)}
	types := make([]features.Type, len(p.outputs))
	for o, out := range p.outputs {
		types[o] = out.typ
	}
	values := newTable(len(rows), types)
	for r := range rows {
		values.set(r, 0, features.Int(int64(r))) // v@1:c
	}
	if err := onDemand(p, sp, values); err != nil {
		t.Fatal(err)
	}
	for r, w := range wants {
		got := want{values.get(r, 1).Float(), values.get(r, 2).Float(), values.get(r, 3).Float()}
		if got != w {
			t.Errorf("row %d: bonus, keys, ratio = %v, want %v", r, got, w)
		}
	}
	if err := onDemand(p, &spine{cols: cols, table: tableOf(cols, nil)}, newTable(0, types)); err != nil {
		t.Errorf("no rows: %v", err)
	}
	// A shard's row numbers are not the spine's: the request is the same.
	shardCols := append(slices.Clone(cols), offline.Column{Name: SpineRowColumn, Type: features.TypeInt})
	var shardRows [][]features.Value
	for r, row := range rows {
		shardRows = append(shardRows, append(slices.Clone(row), features.Int(int64(r))))
	}
	if err := onDemand(p, &spine{cols: shardCols, table: tableOf(shardCols, shardRows), sharded: true}, values); err != nil {
		t.Fatal(err)
	}
	for r, w := range wants {
		if got := (want{values.get(r, 1).Float(), values.get(r, 2).Float(), values.get(r, 3).Float()}); got != w {
			t.Errorf("sharded, row %d: bonus, keys, ratio = %v, want %v", r, got, w)
		}
	}

	// A column of a type an expression cannot use is an error naming the
	// first row it fails on; a null there is a null, as online. A column
	// of text that has numbers says which cell made it text.
	cols[2].Type = features.TypeString
	for r := range rows {
		rows[r][2] = features.Null
	}
	rows[7][2], rows[len(rows)-1][2] = features.String("12.5"), features.String("x")
	err = onDemand(p, &spine{path: "spine.csv", cols: cols, table: tableOf(cols, rows)}, values)
	const wantErr = `spine spine.csv: row 9 (the header is row 1): on-demand feature ratio cannot use column amount = "12.5": no such overload` +
		`; column amount is text, as not all of its cells are numbers (row 11: "x")`
	if err == nil || err.Error() != wantErr {
		t.Errorf("string amounts: %v, want %s", err, wantErr)
	}
}
