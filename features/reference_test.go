package features_test

// A deliberately naive evaluator of DESIGN §4, written from the text of the
// design and not from the engine: it keeps every applied event and, for each
// query, scans all of them, with exact arithmetic from math/big. It is slow on
// purpose; the property test compares the engine against it.

import (
	"fmt"
	"math"
	"math/big"
	"strings"

	"github.com/quiver-ml/quiver/features"
)

// The schema of the property test's source, in declared order. The reference
// addresses fields by these indices; the generator writes the schema in this
// order and checks that the loader agrees.
const (
	fUID = iota
	fAmount
	fQty
	fCat
	fOK
	fTS
	fSeen
	numFields
)

var refFieldNames = [numFields]string{"uid", "amount", "qty", "cat", "ok", "ts", "seen"}

var refFieldTypes = [numFields]features.Type{
	features.TypeString, features.TypeFloat, features.TypeInt, features.TypeString,
	features.TypeBool, features.TypeTimestamp, features.TypeTimestamp,
}

func refFieldIndex(name string) int {
	for i, n := range refFieldNames {
		if n == name {
			return i
		}
	}
	panic("reference: unknown field " + name)
}

// refFeature is the reference's own description of one feature, taken from
// what the generator wrote into the YAML (not from the loaded definitions).
type refFeature struct {
	name   string
	agg    string // count, sum, avg, min, max, stddev, count_distinct, last
	field  int    // schema index; -1 for count
	window int64  // ms; 0 for a lifetime feature
	gran   int64  // ms; 0 for a lifetime feature
}

// refEvent is one event the engine applied (it passed the filter).
type refEvent struct {
	time      int64
	partition int32
	offset    int64
	fields    []features.Value
}

func refFloorDiv(a, b int64) int64 {
	q := a / b
	if a%b != 0 && (a < 0) != (b < 0) {
		q--
	}
	return q
}

// covers reports whether an event at te is in f's window at time t:
// te <= t and tile(te) >= tile(t) - K + 1.
func (f *refFeature) covers(te, t int64) bool {
	if te > t {
		return false
	}
	if f.window == 0 {
		return true
	}
	k := f.window / f.gran
	return refFloorDiv(te, f.gran) >= refFloorDiv(t, f.gran)-k+1
}

// refLater reports whether a comes after b in the order of `last`:
// (event time, partition, offset).
func refLater(a, b *refEvent) bool {
	if a.time != b.time {
		return a.time > b.time
	}
	if a.partition != b.partition {
		return a.partition > b.partition
	}
	return a.offset > b.offset
}

// refNumber converts a non-null int or float to float64, as sum, avg and
// stddev do.
func refNumber(v features.Value) float64 {
	switch v.Type() {
	case features.TypeInt:
		return float64(v.Int())
	case features.TypeFloat:
		return v.Float()
	}
	panic(fmt.Sprintf("reference: %v is not a number", v))
}

// exactPrec is enough bits to hold any sum of float64s exactly: their
// exponents span under 2,200 bits, plus a few for carries. Squares need
// twice as many.
const exactPrec = 8192

// refExactSum returns Σ xs exactly.
func refExactSum(xs []float64) *big.Float {
	s := new(big.Float).SetPrec(exactPrec)
	for _, x := range xs {
		s.Add(s, new(big.Float).SetFloat64(x))
		if s.Acc() != big.Exact {
			panic("reference: inexact sum")
		}
	}
	return s
}

// refExactSumSquares returns Σ xs² exactly.
func refExactSumSquares(xs []float64) *big.Float {
	s := new(big.Float).SetPrec(exactPrec)
	sq := new(big.Float).SetPrec(exactPrec)
	for _, x := range xs {
		bx := new(big.Float).SetFloat64(x)
		sq.Mul(bx, bx)
		if sq.Acc() != big.Exact {
			panic("reference: inexact square")
		}
		s.Add(s, sq)
		if s.Acc() != big.Exact {
			panic("reference: inexact sum of squares")
		}
	}
	return s
}

// refRound rounds an exact value to the nearest float64, ties to even.
func refRound(x *big.Float) float64 {
	f, _ := x.Float64() // big.Float rounds ToNearestEven
	return f
}

// refVariance returns the exact population variance Σ(x-mean)²/n =
// (n·Σx² − (Σx)²)/n², as a rational.
func refVariance(xs []float64) *big.Rat {
	n := new(big.Rat).SetInt64(int64(len(xs)))
	s1, _ := refExactSum(xs).Rat(nil)
	s2, _ := refExactSumSquares(xs).Rat(nil)
	num := new(big.Rat).Mul(n, s2)
	num.Sub(num, new(big.Rat).Mul(s1, s1))
	den := new(big.Rat).Mul(n, n)
	return num.Quo(num, den)
}

// refEvaluate computes f at time t from every applied event, by brute force.
func refEvaluate(f *refFeature, events []refEvent, t int64) features.Value {
	var in []*refEvent
	for i := range events {
		if f.covers(events[i].time, t) {
			in = append(in, &events[i])
		}
	}
	if f.agg == "count" {
		return features.Int(int64(len(in)))
	}
	var vals []features.Value // non-null field values of the events in the window
	for _, e := range in {
		if v := e.fields[f.field]; !v.IsNull() {
			vals = append(vals, v)
		}
	}
	var xs []float64
	if f.agg == "sum" || f.agg == "avg" || f.agg == "stddev" {
		for _, v := range vals {
			xs = append(xs, refNumber(v))
		}
	}
	switch f.agg {
	case "sum":
		if len(xs) == 0 {
			return features.Float(0)
		}
		return features.Float(refRound(refExactSum(xs)))
	case "avg":
		if len(xs) == 0 {
			return features.Null
		}
		return features.Float(refRound(refExactSum(xs)) / float64(len(xs)))
	case "stddev":
		if len(xs) == 0 {
			return features.Null
		}
		v, _ := refVariance(xs).Float64()
		return features.Float(math.Sqrt(v))
	case "min", "max":
		if len(vals) == 0 {
			return features.Null
		}
		best := vals[0]
		for _, v := range vals[1:] {
			if c := refCompare(v, best); f.agg == "min" && c < 0 || f.agg == "max" && c > 0 {
				best = v
			}
		}
		return best
	case "count_distinct":
		seen := map[string]bool{}
		for _, v := range vals {
			seen[refKey(v)] = true
		}
		return features.Int(int64(len(seen)))
	case "last":
		var latest *refEvent
		for _, e := range in {
			if latest == nil || refLater(e, latest) {
				latest = e
			}
		}
		if latest == nil {
			return features.Null
		}
		return latest.fields[f.field]
	}
	panic("reference: unknown aggregation " + f.agg)
}

// refCompare orders two non-null values of one int, float or timestamp field.
func refCompare(a, b features.Value) int {
	if a.Type() == features.TypeFloat {
		x, y := a.Float(), b.Float()
		switch {
		case x < y:
			return -1
		case x > y:
			return 1
		}
		return 0
	}
	x, y := a.Int(), b.Int()
	switch {
	case x < y:
		return -1
	case x > y:
		return 1
	}
	return 0
}

// refKey identifies a value for count_distinct: type and content.
func refKey(v features.Value) string {
	switch v.Type() {
	case features.TypeString:
		return "s" + v.Str()
	case features.TypeFloat:
		return fmt.Sprintf("f%x", math.Float64bits(v.Float()))
	case features.TypeBool:
		return fmt.Sprintf("b%t", v.Bool())
	default:
		return fmt.Sprintf("%d:%d", v.Type(), v.Int())
	}
}

// A filter's outcome under CEL semantics: true, false, or an evaluation
// error (an operator applied to a null field, a null result, ...).
type tri uint8

const (
	triFalse tri = iota
	triTrue
	triErr
)

func triOf(b bool) tri {
	if b {
		return triTrue
	}
	return triFalse
}

// triAnd and triOr are CEL's commutative && and ||: a false (true) operand
// decides the result even when the other is an error.
func triAnd(a, b tri) tri {
	switch {
	case a == triFalse || b == triFalse:
		return triFalse
	case a == triErr || b == triErr:
		return triErr
	}
	return triTrue
}

func triOr(a, b tri) tri {
	switch {
	case a == triTrue || b == triTrue:
		return triTrue
	case a == triErr || b == triErr:
		return triErr
	}
	return triFalse
}

func triNot(a tri) tri {
	if a == triErr {
		return triErr
	}
	return triOf(a == triFalse)
}

// Operand helpers: an ordering or arithmetic operator on a null is an error;
// equality is heterogeneous in CEL, so null == 'a' is false, not an error.
func floatGT(v features.Value, c float64) tri {
	if v.IsNull() {
		return triErr
	}
	return triOf(v.Float() > c)
}

func floatGE(v features.Value, c float64) tri {
	if v.IsNull() {
		return triErr
	}
	return triOf(v.Float() >= c)
}

func intGT(v features.Value, c int64) tri {
	if v.IsNull() {
		return triErr
	}
	return triOf(v.Int() > c)
}

func intLT(v features.Value, c int64) tri {
	if v.IsNull() {
		return triErr
	}
	return triOf(v.Int() < c)
}

func strEq(v features.Value, c string) tri {
	return triOf(!v.IsNull() && v.Str() == c)
}

func boolOf(v features.Value) tri {
	if v.IsNull() {
		return triErr
	}
	return triOf(v.Bool())
}

// refFilters are the filters the generator picks from, each with its meaning
// written out by hand.
var refFilters = map[string]func(f []features.Value) tri{
	"e.amount > 10.0": func(f []features.Value) tri { return floatGT(f[fAmount], 10) },
	"e.cat != 'x'":    func(f []features.Value) tri { return triNot(strEq(f[fCat], "x")) },
	"e.cat == 'a'":    func(f []features.Value) tri { return strEq(f[fCat], "a") },
	"e.ok":            func(f []features.Value) tri { return boolOf(f[fOK]) },
	"!e.ok":           func(f []features.Value) tri { return triNot(boolOf(f[fOK])) },
	"e.seen < e.ts":   func(f []features.Value) tri { return seenBeforeTS(f) },
	"e.uid != ''":     func(f []features.Value) tri { return triNot(strEq(f[fUID], "")) },
	"e.qty % 2 == 0": func(f []features.Value) tri {
		if f[fQty].IsNull() {
			return triErr
		}
		return triOf(f[fQty].Int()%2 == 0)
	},
	"e.ok && e.amount > 10.0": func(f []features.Value) tri {
		return triAnd(boolOf(f[fOK]), floatGT(f[fAmount], 10))
	},
	"e.cat == 'a' || e.qty > 5": func(f []features.Value) tri {
		return triOr(strEq(f[fCat], "a"), intGT(f[fQty], 5))
	},
	"e.amount >= 0.0 && e.qty < 10": func(f []features.Value) tri {
		return triAnd(floatGE(f[fAmount], 0), intLT(f[fQty], 10))
	},
	"has(e.cat) && e.cat != 'x'": func(f []features.Value) tri {
		return triAnd(triOf(!f[fCat].IsNull()), triNot(strEq(f[fCat], "x")))
	},
	"!has(e.amount) || e.amount > 10.0": func(f []features.Value) tri {
		return triOr(triOf(f[fAmount].IsNull()), floatGT(f[fAmount], 10))
	},
}

func seenBeforeTS(f []features.Value) tri {
	if f[fSeen].IsNull() || f[fTS].IsNull() {
		return triErr
	}
	return triOf(f[fSeen].Int() < f[fTS].Int())
}

// refFilterNames lists refFilters' keys in a fixed order, for the generator.
var refFilterNames = func() []string {
	names := []string{
		"e.amount > 10.0", "e.cat != 'x'", "e.cat == 'a'", "e.ok", "!e.ok", "e.seen < e.ts",
		"e.uid != ''", "e.qty % 2 == 0", "e.ok && e.amount > 10.0", "e.cat == 'a' || e.qty > 5",
		"e.amount >= 0.0 && e.qty < 10", "has(e.cat) && e.cat != 'x'", "!has(e.amount) || e.amount > 10.0",
	}
	if len(names) != len(refFilters) {
		panic("reference: refFilterNames out of date")
	}
	for _, n := range names {
		if refFilters[n] == nil {
			panic("reference: no filter " + strings.TrimSpace(n))
		}
	}
	return names
}()
