package features

import (
	"math"
	"math/rand/v2"
	"testing"
)

// The native form of a filter gives CEL's result on every event where it
// gives one, and defers to CEL only where CEL fails: random expressions of
// comparisons, has(), !, && and || over fields of every type, on random events with
// nulls, NaNs, infinities and signed zeros.
func TestNativeFilterMatchesCEL(t *testing.T) {
	defs, err := Parse("defs.yaml", []byte(`
project: t
entities: [{name: user, join_keys: [user_id]}]
sources:
  - {name: events, topic: events, format: json, event_time: ts,
     schema: {user_id: string, i: int, x: float, s: string, b: bool, ts: timestamp}}
feature_views:
  - {name: v, version: 1, entity: user, source: events, features: [{name: c, agg: count}]}
`))
	if err != nil {
		t.Fatal(err)
	}
	src := defs.Source("events")
	rng := rand.New(rand.NewPCG(7, 8))
	pick := func(s ...string) string { return s[rng.IntN(len(s))] }
	literal := map[string]func() string{
		"i": func() string { return pick("0", "-1", "2", "9223372036854775807", "-9223372036854775808") },
		"x": func() string { return pick("0.0", "-0.0", "-1.5", "2.5", "1e300") },
		"s": func() string { return pick(`""`, `"a"`, `"b"`, `"ab"`, `"é"`) },
		"b": func() string { return pick("true", "false") },
	}
	ops := []string{"==", "!=", "<", "<=", ">", ">="}
	var expr func(depth int) string
	expr = func(depth int) string {
		switch k := rng.IntN(10); {
		case depth > 0 && k < 2:
			return "!(" + expr(depth-1) + ")"
		case depth > 0 && k < 6:
			return "(" + expr(depth-1) + pick(" && ", " || ") + expr(depth-1) + ")"
		case k < 7:
			return pick("e.b", "true", "false", "has(e."+pick("i", "x", "s", "b", "ts")+")")
		}
		f := pick("i", "x", "s", "b")
		op := ops[rng.IntN(len(ops))]
		if f == "b" && op != "==" && op != "!=" && rng.IntN(2) == 0 {
			op = "==" // bools are ordered in CEL, but not natively: mostly equality
		}
		lit := literal[f]()
		if op != "==" && op != "!=" && rng.IntN(3) == 0 { // numbers order across int and double
			switch f {
			case "x":
				lit = pick("0", "-1", "3", "9007199254740992", "9007199254740993", "-9223372036854775808")
			case "i":
				lit = pick("0.0", "2.5", "-1.0", "9.3e18")
			}
		}
		if rng.IntN(2) == 0 {
			return lit + " " + op + " e." + f
		}
		return "e." + f + " " + op + " " + lit
	}
	value := map[Type]func() Value{
		TypeInt: func() Value { return Int([]int64{0, -1, 2, 3, math.MaxInt64, math.MinInt64}[rng.IntN(6)]) },
		TypeFloat: func() Value {
			return Float([]float64{0, math.Copysign(0, -1), -1.5, 2.5, 3, math.NaN(), math.Inf(1), math.Inf(-1), 1e300}[rng.IntN(9)])
		},
		TypeString:    func() Value { return String(pick("", "a", "b", "ab", "é", "z")) },
		TypeBool:      func() Value { return Bool(rng.IntN(2) == 0) },
		TypeTimestamp: func() Value { return Timestamp(rng.Int64N(1e12)) },
	}
	ev := Event{Fields: make([]Value, len(src.Schema))}
	compiled, known, failed := 0, 0, 0
	for range 2000 {
		e := expr(3)
		f, err := compileFilter(src, e)
		if err != nil {
			t.Fatalf("%s: %v", e, err)
		}
		if f.native == nil {
			continue
		}
		compiled++
		for range 50 {
			for i, fd := range src.Schema {
				if ev.Fields[i] = Null; rng.IntN(5) > 0 {
					ev.Fields[i] = value[fd.Type]()
				}
			}
			want, err := f.eval(&ev)
			got, ok := f.native(&ev)
			switch {
			case ok && err != nil:
				t.Fatalf("%s on %v: native gives %v, CEL fails: %v", e, ev.Fields, got, err)
			case ok && got != want:
				t.Fatalf("%s on %v: native gives %v, CEL %v", e, ev.Fields, got, want)
			case !ok && err == nil:
				t.Fatalf("%s on %v: native defers, CEL gives %v", e, ev.Fields, want)
			case ok:
				known++
			default:
				failed++
			}
		}
	}
	// Not vacuous: most expressions compile, and both outcomes occur.
	if compiled < 1500 || known < 1000 || failed < 1000 {
		t.Errorf("%d of 2000 expressions compiled; %d results known, %d deferred", compiled, known, failed)
	}
}

// Expressions beyond comparisons with constants, !, && and || stay CEL's.
func TestNativeFilterDeclines(t *testing.T) {
	defs, err := Load("../examples/fraud/definitions.yaml")
	if err != nil {
		t.Fatal(err)
	}
	src := defs.Source("transactions")
	for expr, native := range map[string]bool{
		`e.amount > 0.0`:                              true,
		`e.amount > 0`:                                true,
		`e.amount > 9007199254740993`:                 false, // not a float
		`0.0 < e.amount`:                              true,
		`e.amount > 0.0 && e.country != "US"`:         true,
		`!(e.country == "FR" || 10.0 <= e.amount)`:    true,
		`e.amount > double(1)`:                        false,
		`e.amount > e.amount`:                         false,
		`e.country.startsWith("U")`:                   false,
		`e.country in ["US", "FR"]`:                   false,
		`e.ts > timestamp("2026-01-01T00:00:00Z")`:    false,
		`e.amount > 0.0 ? true : false`:               false,
		`size(e.country) > 1`:                         false,
		`e.amount > 0.0 && e.country.startsWith("U")`: false,
	} {
		f, err := compileFilter(src, expr)
		if err != nil {
			t.Fatalf("%s: %v", expr, err)
		}
		if (f.native != nil) != native {
			t.Errorf("%s: native form %v, want %v", expr, f.native != nil, native)
		}
	}
}
