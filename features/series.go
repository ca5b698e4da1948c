package features

import "slices"

// tiles holds a feature's per-tile aggregates, sorted by tile index. A
// lifetime feature has a single tile, index 0.
type tiles[A any] struct {
	idx []int64
	acc []A
}

// at returns the aggregate of tile i, adding an empty one if needed. Events
// mostly land in the newest tile, so the search starts from the end.
func (t *tiles[A]) at(i int64) *A {
	n := len(t.idx)
	if n > 0 && t.idx[n-1] == i {
		return &t.acc[n-1]
	}
	if n == 0 || t.idx[n-1] < i {
		t.idx = append(t.idx, i)
		var zero A
		t.acc = append(t.acc, zero)
		return &t.acc[n]
	}
	j, found := slices.BinarySearch(t.idx, i)
	if !found {
		t.idx = slices.Insert(t.idx, j, i)
		var zero A
		t.acc = slices.Insert(t.acc, j, zero)
	}
	return &t.acc[j]
}

// from returns the aggregates of tiles numbered lo or more.
func (t *tiles[A]) from(lo int64) []A {
	if len(t.idx) == 0 || t.idx[0] >= lo {
		return t.acc
	}
	j, _ := slices.BinarySearch(t.idx, lo)
	return t.acc[j:]
}

// before returns the aggregates of tiles numbered below lo.
func (t *tiles[A]) before(lo int64) []A {
	return t.acc[:len(t.acc)-len(t.from(lo))]
}

// prune drops tiles numbered below lo.
func (t *tiles[A]) prune(lo int64) {
	if len(t.idx) == 0 || t.idx[0] >= lo {
		return
	}
	j, _ := slices.BinarySearch(t.idx, lo)
	t.idx = slices.Delete(t.idx, 0, j)
	t.acc = slices.Delete(t.acc, 0, j) // zeroes the vacated tail
}

func (t *tiles[A]) appendTo(b []byte, enc func([]byte, *A) []byte) []byte {
	b = appendUvarint(b, uint64(len(t.idx)))
	prev := int64(0)
	for i := range t.idx {
		b = appendVarint(b, t.idx[i]-prev) // the first absolute, then deltas
		prev = t.idx[i]
		b = enc(b, &t.acc[i])
	}
	return b
}

func (t *tiles[A]) readFrom(r *reader, dec func(*reader, *A)) {
	n := r.count(maxTiles + 1)
	t.idx, t.acc = make([]int64, n), make([]A, n)
	prev := int64(0)
	for i := range n {
		d := r.varint()
		if i > 0 && d <= 0 {
			r.fail("tile indexes out of order")
		}
		prev += d
		t.idx[i] = prev
		dec(r, &t.acc[i])
	}
}

// series is one feature's state: how it takes an event's value and answers
// for the tiles from lo on.
type series interface {
	add(tile int64, v Value, o order)
	prune(lo int64)
	value(lo int64) Value
	appendTo(b []byte) []byte
	readFrom(r *reader)
}

// order places events for `last`: by event time, then source partition, then offset.
type order struct {
	time      int64
	partition int32
	offset    int64
}

func (o order) after(p order) bool {
	if o.time != p.time {
		return o.time > p.time
	}
	if o.partition != p.partition {
		return o.partition > p.partition
	}
	return o.offset > p.offset
}

func newSeries(agg Agg) series {
	switch agg {
	case AggCount:
		return &countSeries{}
	case AggSum:
		return &sumSeries{}
	case AggAvg:
		return &sumSeries{avg: true}
	case AggMin:
		return &extremeSeries{}
	case AggMax:
		return &extremeSeries{max: true}
	case AggStddev:
		return &stddevSeries{}
	case AggCountDistinct:
		return &distinctSeries{}
	case AggLast:
		return &lastSeries{}
	}
	panic("features: no series for aggregation " + string(agg)) // validation admits only the above
}

// countSeries, sumSeries and stddevSeries keep a running total of their
// tiles, so that evaluating a window costs only the tiles that left it since
// the latest event. Their sums are exact, so taking a tile out of a total is
// exact too. Totals are not encoded; decoding recomputes them.

type countSeries struct {
	tiles[int64]
	total int64
}

func (s *countSeries) add(tile int64, _ Value, _ order) {
	*s.at(tile)++
	s.total++
}

func (s *countSeries) prune(lo int64) {
	for _, c := range s.before(lo) {
		s.total -= c
	}
	s.tiles.prune(lo)
}

func (s *countSeries) value(lo int64) Value {
	n := s.total
	for _, c := range s.before(lo) {
		n -= c
	}
	return Int(n)
}

func (s *countSeries) appendTo(b []byte) []byte {
	return s.tiles.appendTo(b, func(b []byte, n *int64) []byte { return appendUvarint(b, uint64(*n)) })
}

func (s *countSeries) readFrom(r *reader) {
	s.tiles.readFrom(r, func(r *reader, n *int64) { *n = int64(r.count(1 << 40)); s.total += *n })
}

type sumAcc struct {
	n   int64
	sum xsum
}

// sumSeries is sum, or avg = sum / count of non-null values.
type sumSeries struct {
	tiles[sumAcc]
	total sumAcc
	avg   bool
}

func (s *sumSeries) add(tile int64, v Value, _ order) {
	if v.IsNull() {
		return
	}
	a, x := s.at(tile), v.Float()
	a.n++
	a.sum.add(x)
	s.total.n++
	s.total.sum.add(x)
}

func (s *sumSeries) prune(lo int64) {
	for _, a := range s.before(lo) {
		s.total.n -= a.n
		s.total.sum.unmerge(a.sum)
	}
	s.tiles.prune(lo)
}

func (s *sumSeries) value(lo int64) Value {
	n, sum := s.total.n, s.total.sum
	if old := s.before(lo); len(old) > 0 {
		sum = slices.Clone(sum)
		for _, a := range old {
			n -= a.n
			sum.unmerge(a.sum)
		}
	}
	if !s.avg {
		return Float(sum.value())
	}
	if n == 0 {
		return Null
	}
	return Float(sum.value() / float64(n))
}

func (s *sumSeries) appendTo(b []byte) []byte {
	return s.tiles.appendTo(b, func(b []byte, a *sumAcc) []byte {
		return appendXsum(appendUvarint(b, uint64(a.n)), a.sum)
	})
}

func (s *sumSeries) readFrom(r *reader) {
	s.tiles.readFrom(r, func(r *reader, a *sumAcc) {
		a.n, a.sum = int64(r.count(1<<40)), r.xsum()
		s.total.n += a.n
		s.total.sum.merge(a.sum)
	})
}

type stddevAcc struct {
	n      int64
	s1, s2 xsum
}

type stddevSeries struct {
	tiles[stddevAcc]
	total stddevAcc
}

func (s *stddevSeries) add(tile int64, v Value, _ order) {
	if v.IsNull() {
		return
	}
	a, x := s.at(tile), v.Float()
	for _, acc := range []*stddevAcc{a, &s.total} {
		acc.n++
		acc.s1.add(x)
		acc.s2.addSquare(x)
	}
}

func (t *stddevAcc) unmerge(a *stddevAcc) {
	t.n -= a.n
	t.s1.unmerge(a.s1)
	t.s2.unmerge(a.s2)
}

func (s *stddevSeries) prune(lo int64) {
	for i := range s.before(lo) {
		s.total.unmerge(&s.acc[i])
	}
	s.tiles.prune(lo)
}

func (s *stddevSeries) value(lo int64) Value {
	t := s.total
	if old := s.before(lo); len(old) > 0 {
		t.s1, t.s2 = slices.Clone(t.s1), slices.Clone(t.s2)
		for i := range old {
			t.unmerge(&old[i])
		}
	}
	if t.n == 0 {
		return Null
	}
	return Float(stddev(t.n, t.s1, t.s2))
}

func (s *stddevSeries) appendTo(b []byte) []byte {
	return s.tiles.appendTo(b, func(b []byte, a *stddevAcc) []byte {
		return appendXsum(appendXsum(appendUvarint(b, uint64(a.n)), a.s1), a.s2)
	})
}

func (s *stddevSeries) readFrom(r *reader) {
	s.tiles.readFrom(r, func(r *reader, a *stddevAcc) {
		a.n, a.s1, a.s2 = int64(r.count(1<<40)), r.xsum(), r.xsum()
		s.total.n += a.n
		s.total.s1.merge(a.s1)
		s.total.s2.merge(a.s2)
	})
}

// extremeSeries is min, or max.
type extremeSeries struct {
	tiles[Value]
	max bool
}

func (s *extremeSeries) better(v, than Value) bool {
	if than.IsNull() {
		return true
	}
	if s.max {
		return than.less(v)
	}
	return v.less(than)
}

func (s *extremeSeries) add(tile int64, v Value, _ order) {
	if v.IsNull() {
		return
	}
	if a := s.at(tile); s.better(v, *a) {
		*a = v
	}
}

func (s *extremeSeries) value(lo int64) Value {
	best := Null
	for _, v := range s.from(lo) {
		if s.better(v, best) {
			best = v
		}
	}
	return best
}

func (s *extremeSeries) appendTo(b []byte) []byte {
	return s.tiles.appendTo(b, func(b []byte, v *Value) []byte { return appendValue(b, *v) })
}

func (s *extremeSeries) readFrom(r *reader) {
	s.tiles.readFrom(r, func(r *reader, v *Value) { *v = r.value() })
}

type lastAcc struct {
	v  Value
	at order
	ok bool
}

type lastSeries struct{ tiles[lastAcc] }

// last is the field of the latest event, null if that event has none.
func (s *lastSeries) add(tile int64, v Value, o order) {
	if a := s.at(tile); !a.ok || o.after(a.at) {
		*a = lastAcc{v: v, at: o, ok: true}
	}
}

func (s *lastSeries) value(lo int64) Value {
	var best lastAcc
	for _, a := range s.from(lo) {
		if !best.ok || a.at.after(best.at) {
			best = a
		}
	}
	return best.v
}

func (s *lastSeries) appendTo(b []byte) []byte {
	return s.tiles.appendTo(b, func(b []byte, a *lastAcc) []byte {
		b = appendVarint(b, a.at.time)
		b = appendVarint(b, int64(a.at.partition))
		b = appendVarint(b, a.at.offset)
		return appendValue(b, a.v)
	})
}

func (s *lastSeries) readFrom(r *reader) {
	s.tiles.readFrom(r, func(r *reader, a *lastAcc) {
		a.at = order{time: r.varint(), partition: int32(r.varint()), offset: r.varint()}
		a.v = r.value()
		a.ok = true
	})
}

type distinctSeries struct{ tiles[distinct] }

func (s *distinctSeries) add(tile int64, v Value, _ order) {
	if v.IsNull() {
		return
	}
	s.at(tile).add(hashValue(v))
}

func (s *distinctSeries) value(lo int64) Value { return Int(countDistinct(s.from(lo))) }

func (s *distinctSeries) appendTo(b []byte) []byte {
	return s.tiles.appendTo(b, appendDistinct)
}

func (s *distinctSeries) readFrom(r *reader) { s.tiles.readFrom(r, readDistinct) }
