package features

import "slices"

// tiles holds a feature's per-tile aggregates, sorted by tile index. A
// lifetime feature has a single tile, index 0.
//
// The live tiles are a window onto backing arrays. Expiring tiles only moves
// the window's start, and the slots behind it are reset and reused, buffers
// and all, by later tiles: a sliding window allocates nothing once it has
// reached its size.
type tiles[A any, P slot[A]] struct {
	idx []int64 // live tile indexes: idxBuf[off : off+n]
	acc []A     // their aggregates: accBuf[off : off+n]

	idxBuf []int64
	accBuf []A
	off    int
}

// slot is an aggregate that can be emptied for reuse, keeping its buffers.
type slot[A any] interface {
	*A
	reset()
}

// at returns the aggregate of tile i, adding an empty one if needed. Events
// mostly land in the newest tile, so the search starts from the end.
func (t *tiles[A, P]) at(i int64) *A {
	n := len(t.idx)
	if n > 0 && t.idx[n-1] == i {
		return &t.acc[n-1]
	}
	if n == 0 || t.idx[n-1] < i {
		t.extend()
		t.idx[n] = i
		return &t.acc[n]
	}
	j, found := slices.BinarySearch(t.idx, i)
	if !found {
		t.extend() // the new, empty slot is at n: move it to j
		copy(t.idx[j+1:], t.idx[j:n])
		t.idx[j] = i
		spare := t.acc[n]
		copy(t.acc[j+1:], t.acc[j:n])
		t.acc[j] = spare
	}
	return &t.acc[j]
}

// extend adds an empty slot after the live tiles.
func (t *tiles[A, P]) extend() {
	n := len(t.idx)
	if t.off+n == len(t.idxBuf) {
		if t.off > 0 && t.off >= n { // at least half the buffer has expired: compact
			copy(t.idxBuf, t.idx)
			rotateLeft(t.accBuf[:t.off+n], t.off) // the reset slots go behind the live ones
		} else {
			size := max(4, 2*len(t.idxBuf))
			idx, acc := make([]int64, size), make([]A, size)
			copy(idx, t.idx)
			copy(acc, t.acc)
			t.idxBuf, t.accBuf = idx, acc
		}
		t.off = 0
	}
	t.idx = t.idxBuf[t.off : t.off+n+1]
	t.acc = t.accBuf[t.off : t.off+n+1]
}

// rotateLeft moves the first k elements of s to its end, in place.
func rotateLeft[E any](s []E, k int) {
	slices.Reverse(s[:k])
	slices.Reverse(s[k:])
	slices.Reverse(s)
}

// from returns the aggregates of tiles numbered lo or more.
func (t *tiles[A, P]) from(lo int64) []A {
	if len(t.idx) == 0 || t.idx[0] >= lo {
		return t.acc
	}
	j, _ := slices.BinarySearch(t.idx, lo)
	return t.acc[j:]
}

// before returns the aggregates of tiles numbered below lo.
func (t *tiles[A, P]) before(lo int64) []A {
	return t.acc[:len(t.acc)-len(t.from(lo))]
}

// prune drops tiles numbered below lo, resetting their slots for reuse.
func (t *tiles[A, P]) prune(lo int64) {
	if len(t.idx) == 0 || t.idx[0] >= lo {
		return
	}
	j, _ := slices.BinarySearch(t.idx, lo)
	for k := range j {
		P(&t.acc[k]).reset()
	}
	t.off += j
	t.idx, t.acc = t.idx[j:], t.acc[j:]
}

func (t *tiles[A, P]) appendTo(b []byte, enc func([]byte, *A) []byte) []byte {
	b = appendUvarint(b, uint64(len(t.idx)))
	prev := int64(0)
	for i := range t.idx {
		b = appendVarint(b, t.idx[i]-prev) // the first absolute, then deltas
		prev = t.idx[i]
		b = enc(b, &t.acc[i])
	}
	return b
}

func (t *tiles[A, P]) readFrom(r *reader, dec func(*reader, *A)) {
	n := r.count(maxTiles + 1)
	t.idx, t.acc = make([]int64, n), make([]A, n)
	t.idxBuf, t.accBuf, t.off = t.idx, t.acc, 0
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

// counter is a tile's event count.
type counter int64

func (c *counter) reset() { *c = 0 }

type countSeries struct {
	tiles[counter, *counter]
	total int64
}

func (s *countSeries) add(tile int64, _ Value, _ order) {
	*s.at(tile)++
	s.total++
}

func (s *countSeries) prune(lo int64) {
	for _, c := range s.before(lo) {
		s.total -= int64(c)
	}
	s.tiles.prune(lo)
}

func (s *countSeries) value(lo int64) Value {
	n := s.total
	for _, c := range s.before(lo) {
		n -= int64(c)
	}
	return Int(n)
}

func (s *countSeries) appendTo(b []byte) []byte {
	return s.tiles.appendTo(b, func(b []byte, n *counter) []byte { return appendUvarint(b, uint64(*n)) })
}

func (s *countSeries) readFrom(r *reader) {
	s.tiles.readFrom(r, func(r *reader, n *counter) { *n = counter(r.count(1 << 40)); s.total += int64(*n) })
}

type sumAcc struct {
	n   int64
	sum xsum
}

func (a *sumAcc) reset() { a.n, a.sum = 0, a.sum[:0] }

// sumSeries is sum, or avg = sum / count of non-null values.
type sumSeries struct {
	tiles[sumAcc, *sumAcc]
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

func (a *stddevAcc) reset() { a.n, a.s1, a.s2 = 0, a.s1[:0], a.s2[:0] }

type stddevSeries struct {
	tiles[stddevAcc, *stddevAcc]
	total stddevAcc
}

func (s *stddevSeries) add(tile int64, v Value, _ order) {
	if v.IsNull() {
		return
	}
	s.at(tile).add(v.Float())
	s.total.add(v.Float())
}

func (a *stddevAcc) add(x float64) {
	a.n++
	a.s1.add(x)
	a.s2.addSquare(x)
}

func (t *stddevAcc) unmerge(a *stddevAcc) {
	t.n -= a.n
	t.s1.unmerge(a.s1)
	t.s2.unmerge(a.s2)
}

func (s *stddevSeries) prune(lo int64) {
	old := s.before(lo)
	for i := range old {
		s.total.unmerge(&old[i])
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
	tiles[Value, *Value]
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

func (a *lastAcc) reset() { *a = lastAcc{} }

type lastSeries struct{ tiles[lastAcc, *lastAcc] }

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

// distinctSeries keeps, beside its tiles, the multiset of hashes held by the
// exact tiles: how many tiles hold each. A window whose tiles are all exact
// then counts its distinct values without a union, minus those held only by
// tiles that expired since the latest event. Windows with a sketch tile
// merge sketches instead.
type distinctSeries struct {
	tiles[distinct, *distinct]
	hashes   []uint64 // sorted
	holders  []int32  // tiles holding hashes[i]
	sketches int      // tiles holding a sketch
}

func (s *distinctSeries) add(tile int64, v Value, _ order) {
	if v.IsNull() {
		return
	}
	h := hashValue(v)
	added, dropped := s.at(tile).add(h)
	switch {
	case dropped != nil: // the tile switched to a sketch
		s.sketches++
		for _, old := range dropped {
			s.forget(old)
		}
	case added:
		s.remember(h)
	}
}

func (s *distinctSeries) remember(h uint64) {
	i, found := slices.BinarySearch(s.hashes, h)
	if found {
		s.holders[i]++
		return
	}
	s.hashes = slices.Insert(s.hashes, i, h)
	s.holders = slices.Insert(s.holders, i, 1)
}

func (s *distinctSeries) forget(h uint64) {
	i, found := slices.BinarySearch(s.hashes, h)
	if !found {
		return
	}
	if s.holders[i]--; s.holders[i] == 0 {
		s.hashes = slices.Delete(s.hashes, i, i+1)
		s.holders = slices.Delete(s.holders, i, i+1)
	}
}

func (s *distinctSeries) prune(lo int64) {
	old := s.before(lo)
	for i := range old {
		if old[i].sketch != nil {
			s.sketches--
		}
		for _, h := range old[i].hashes {
			s.forget(h)
		}
	}
	s.tiles.prune(lo)
}

func (s *distinctSeries) value(lo int64) Value {
	old := s.before(lo)
	sketches := s.sketches
	for i := range old {
		if old[i].sketch != nil {
			sketches--
		}
	}
	if sketches > 0 {
		return Int(countDistinct(s.from(lo)))
	}
	n := len(s.hashes)
	if len(old) > 0 { // drop hashes that only expired tiles hold
		var gone []uint64
		for i := range old {
			gone = append(gone, old[i].hashes...)
		}
		slices.Sort(gone)
		for i := 0; i < len(gone); {
			j := i + 1
			for j < len(gone) && gone[j] == gone[i] {
				j++
			}
			if k, _ := slices.BinarySearch(s.hashes, gone[i]); s.holders[k] == int32(j-i) {
				n--
			}
			i = j
		}
	}
	return Int(int64(n))
}

func (s *distinctSeries) appendTo(b []byte) []byte {
	return s.tiles.appendTo(b, appendDistinct)
}

func (s *distinctSeries) readFrom(r *reader) {
	s.tiles.readFrom(r, readDistinct)
	for i := range s.acc {
		if s.acc[i].sketch != nil {
			s.sketches++
		}
		for _, h := range s.acc[i].hashes {
			s.remember(h)
		}
	}
}
