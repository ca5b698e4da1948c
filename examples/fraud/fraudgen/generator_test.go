package fraudgen_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"math"
	"strings"
	"testing"
	"time"

	"github.com/quiver-ml/quiver/examples/fraud/fraudgen"
	"github.com/quiver-ml/quiver/features"
)

func newGen(t testing.TB, cfg fraudgen.Config) *fraudgen.Generator {
	t.Helper()
	g, err := fraudgen.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return g
}

func TestSameSeedSameStream(t *testing.T) {
	cfg := fraudgen.Config{Seed: 42, OutOfOrder: time.Second, DriftAt: fraudgen.DefaultStart.Add(10 * time.Second)}
	a, b := newGen(t, cfg), newGen(t, cfg)
	for i := range 20000 {
		ea, eb := a.Next(), b.Next()
		if !bytes.Equal(ea.JSON(), eb.JSON()) || ea.Suspicious != eb.Suspicious {
			t.Fatalf("event %d differs:\n%s\n%s", i, ea.JSON(), eb.JSON())
		}
	}
}

func TestDifferentSeedsDiffer(t *testing.T) {
	a, b := newGen(t, fraudgen.Config{Seed: 1}), newGen(t, fraudgen.Config{Seed: 2})
	same := 0
	for range 1000 {
		ea, eb := a.Next(), b.Next()
		if ea.UserID == eb.UserID && ea.Amount == eb.Amount {
			same++
		}
	}
	if same > 10 {
		t.Errorf("%d of 1000 events have the same user and amount under different seeds", same)
	}
}

// TestDecodesWithDefinitions decodes every event with the demo's own source
// definition, as ingest will.
func TestDecodesWithDefinitions(t *testing.T) {
	defs, err := features.Load("../definitions.yaml")
	if err != nil {
		t.Fatal(err)
	}
	src := defs.Source("transactions")
	if src == nil {
		t.Fatal("no transactions source in definitions.yaml")
	}
	field := func(e *features.Event, name string) features.Value {
		i := src.Field(name)
		if i < 0 {
			t.Fatalf("schema has no field %s", name)
		}
		return e.Fields[i]
	}
	cfg := fraudgen.Config{
		Seed:       7,
		Users:      300,
		OutOfOrder: 2 * time.Second,
		BurstShare: 0.005,
		DriftAt:    fraudgen.DefaultStart.Add(time.Minute),
	}
	g := newGen(t, cfg)
	var e features.Event
	suspicious, txnIDs := 0, map[string]bool{}
	for i := range 20000 {
		ev := g.Next()
		data := ev.JSON()
		if err := src.DecodeJSON(data, &e); err != nil {
			t.Fatalf("event %d: %s: %v", i, data, err)
		}
		want := map[string]features.Value{
			"txn_id":      features.String(ev.TxnID),
			"user_id":     features.String(ev.UserID),
			"merchant_id": features.String(ev.MerchantID),
			"amount":      features.Float(ev.Amount),
			"country":     features.String(ev.Country),
			"ts":          features.Timestamp(ev.Time.UnixMilli()),
		}
		for name, v := range want {
			if got := field(&e, name); !got.Equal(v) {
				t.Fatalf("event %d: %s: field %s = %v, want %v", i, data, name, got, v)
			}
		}
		if e.Time != ev.Time.UnixMilli() {
			t.Fatalf("event %d: event time %d, want %d", i, e.Time, ev.Time.UnixMilli())
		}
		if string(ev.Key()) != ev.UserID || ev.Time.Location() != time.UTC {
			t.Fatalf("event %d: key %q, time %v", i, ev.Key(), ev.Time)
		}
		if ev.Amount <= 0 || math.Round(ev.Amount*100)/100 != ev.Amount {
			t.Fatalf("event %d: amount %v is not a positive amount in cents", i, ev.Amount)
		}
		if len(ev.Country) != 2 || ev.TxnID == "" || ev.MerchantID == "" {
			t.Fatalf("event %d: %s", i, data)
		}
		if txnIDs[ev.TxnID] {
			t.Fatalf("event %d: txn_id %s repeats", i, ev.TxnID)
		}
		txnIDs[ev.TxnID] = true
		if ev.Suspicious {
			suspicious++
		}
	}
	if suspicious == 0 || suspicious > 20000/5 {
		t.Errorf("%d of 20000 events suspicious", suspicious)
	}
}

func TestRateSpacing(t *testing.T) {
	for _, ooo := range []time.Duration{0, 3 * time.Second} {
		t.Run("out-of-order="+ooo.String(), func(t *testing.T) {
			start := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
			const rate = 50.0
			g := newGen(t, fraudgen.Config{Rate: rate, Start: start, OutOfOrder: ooo})
			interval := time.Duration(float64(time.Second) / rate)
			var latest time.Time
			decreases := 0
			for n := range 10000 {
				ev := g.Next()
				slot := start.Add(time.Duration(n) * interval)
				if ev.Time.Before(slot.Add(-ooo-time.Millisecond)) || !ev.Time.Before(slot.Add(interval)) {
					t.Fatalf("event %d at %v, outside [%v - %v, %v)", n, ev.Time, slot, ooo, slot.Add(interval))
				}
				if ev.Time.Before(latest.Add(-ooo)) {
					t.Fatalf("event %d at %v, more than %v before %v", n, ev.Time, ooo, latest)
				}
				if ev.Time.Before(latest) {
					decreases++
				}
				if ev.Time.After(latest) {
					latest = ev.Time
				}
			}
			if ooo == 0 && decreases > 0 {
				t.Errorf("%d events out of order with OutOfOrder 0", decreases)
			}
			if ooo > 0 && decreases == 0 {
				t.Errorf("no event out of order with OutOfOrder %v", ooo)
			}
		})
	}
}

// TestDrift compares a stream that drifts half-way with the same stream
// without drift: identical before DriftAt; afterwards, amounts grow and more
// transactions leave the users' home countries.
func TestDrift(t *testing.T) {
	const n = 200000 // 2000 s at the default rate
	driftAt := fraudgen.DefaultStart.Add(1000 * time.Second)
	base := fraudgen.Config{Seed: 3, Users: 500}
	drifting := base
	drifting.DriftAt = driftAt

	type stats struct{ sum, count, away float64 }
	run := func(cfg fraudgen.Config) (before, after stats, events []fraudgen.Event) {
		g := newGen(t, cfg)
		home := map[string]map[string]int{} // country counts by user, before drift
		for range n {
			ev := g.Next()
			events = append(events, ev)
			if ev.Time.Before(driftAt) {
				if home[ev.UserID] == nil {
					home[ev.UserID] = map[string]int{}
				}
				home[ev.UserID][ev.Country]++
			}
		}
		modal := func(user string) string {
			best, bestN := "", 0
			for c, k := range home[user] {
				if k > bestN || k == bestN && c < best {
					best, bestN = c, k
				}
			}
			return best
		}
		for _, ev := range events {
			if ev.Suspicious {
				continue
			}
			s := &before
			if !ev.Time.Before(driftAt) {
				s = &after
			}
			s.sum += ev.Amount
			s.count++
			if ev.Country != modal(ev.UserID) {
				s.away++
			}
		}
		return before, after, events
	}
	b0, a0, plain := run(base)
	b1, a1, drifted := run(drifting)

	for i := range plain {
		if !plain[i].Time.Before(driftAt) {
			break
		}
		if !bytes.Equal(plain[i].JSON(), drifted[i].JSON()) {
			t.Fatalf("event %d, before DriftAt, differs:\n%s\n%s", i, plain[i].JSON(), drifted[i].JSON())
		}
	}
	mean := func(s stats) float64 { return s.sum / s.count }
	awayShare := func(s stats) float64 { return s.away / s.count }
	if r := mean(a0) / mean(b0); r < 0.85 || r > 1.15 {
		t.Errorf("without drift, mean amount after/before = %.3f, want about 1", r)
	}
	if r := mean(a1) / mean(b1); r < 1.3 {
		t.Errorf("with drift, mean amount after/before = %.3f, want above 1.3", r)
	}
	if d := awayShare(a0) - awayShare(b0); math.Abs(d) > 0.02 {
		t.Errorf("without drift, share away from home changed by %.3f", d)
	}
	if d := awayShare(a1) - awayShare(b1); d < 0.05 {
		t.Errorf("with drift, share away from home rose by %.3f, want above 0.05", d)
	}
	t.Logf("mean amount %.2f → %.2f (no drift %.2f → %.2f); away from home %.3f → %.3f",
		mean(b1), mean(a1), mean(b0), mean(a0), awayShare(b1), awayShare(a1))
}

func TestValidateReportsEveryProblem(t *testing.T) {
	cfg := fraudgen.Config{
		Users:       -1,
		Merchants:   -2,
		Rate:        math.NaN(),
		Start:       time.Date(1960, 1, 1, 0, 0, 0, 0, time.UTC),
		OutOfOrder:  -time.Second,
		BurstShare:  0.5,
		DriftShare:  2,
		DriftFactor: -1,
	}
	_, err := fraudgen.New(cfg)
	var ce *fraudgen.ConfigError
	if !errors.As(err, &ce) {
		t.Fatalf("New: %v, want a *ConfigError", err)
	}
	for _, want := range []string{"users -1", "merchants -2", "rate NaN", "start 1960", "out-of-order -1s", "burst share 0.5", "drift share 2", "drift factor -1"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not mention %q", err, want)
		}
	}
	if len(ce.Problems) != 8 {
		t.Errorf("%d problems, want 8: %q", len(ce.Problems), ce.Problems)
	}
	for _, ok := range []fraudgen.Config{{}, fraudgen.DefaultConfig(), {Rate: fraudgen.MaxRate, DriftShare: 1, BurstShare: fraudgen.MaxBurstShare}} {
		if err := ok.Validate(); err != nil {
			t.Errorf("Validate(%+v): %v", ok, err)
		}
	}
	if err := (fraudgen.Config{Rate: math.Inf(1), DriftFactor: math.Inf(1)}).Validate(); err == nil ||
		len(err.(*fraudgen.ConfigError).Problems) != 2 {
		t.Errorf("infinite rate and drift factor: %v", err)
	}
}

func TestDefaults(t *testing.T) {
	g := newGen(t, fraudgen.Config{})
	if got, want := g.Config(), fraudgen.DefaultConfig(); got != want {
		t.Errorf("Config() = %+v, want %+v", got, want)
	}
	if ev := g.Next(); ev.Time.Before(fraudgen.DefaultStart) || ev.Time.After(fraudgen.DefaultStart.Add(10*time.Millisecond)) {
		t.Errorf("first event at %v, want just after %v", ev.Time, fraudgen.DefaultStart)
	}
	users, merchants := map[string]bool{}, map[string]bool{}
	for range 100000 {
		ev := g.Next()
		users[ev.UserID], merchants[ev.MerchantID] = true, true
	}
	if len(users) > fraudgen.DefaultUsers || len(users) < fraudgen.DefaultUsers*9/10 ||
		len(merchants) > fraudgen.DefaultMerchants || len(merchants) < fraudgen.DefaultMerchants*9/10 {
		t.Errorf("%d users and %d merchants seen", len(users), len(merchants))
	}
}

func TestJSONEscapes(t *testing.T) {
	ev := fraudgen.Event{
		TxnID: `a"b\c`, UserID: "u\n1", MerchantID: "m\x01", Amount: 12.5, Country: "ÅÉ",
		Time: time.Date(2026, 5, 6, 7, 8, 9, 123456789, time.FixedZone("CEST", 7200)),
	}
	var got map[string]any
	if err := json.Unmarshal(ev.JSON(), &got); err != nil {
		t.Fatalf("%s: %v", ev.JSON(), err)
	}
	want := map[string]any{
		"txn_id": `a"b\c`, "user_id": "u\n1", "merchant_id": "m\x01", "amount": 12.5, "country": "ÅÉ",
		"ts": "2026-05-06T05:08:09.123Z",
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s = %#v, want %#v", k, got[k], v)
		}
	}
	if len(got) != len(want) {
		t.Errorf("keys %v, want those of %v", got, want)
	}
}

func BenchmarkNextJSON(b *testing.B) {
	g := newGen(b, fraudgen.Config{})
	var buf []byte
	b.ReportAllocs()
	for b.Loop() {
		buf = g.Next().AppendJSON(buf[:0])
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "events/s")
}
