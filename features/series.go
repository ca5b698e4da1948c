package features

import (
	"slices"
	"sync/atomic"

	"github.com/axiomhq/hyperloglog"
)

// tiles holds a feature's per-tile aggregates, sorted by tile index. A
// lifetime feature has a single tile, index 0.
//
// The live tiles are a window onto a backing array. Expiring tiles only
// moves the window's start, and the slots behind it are reset and reused,
// buffers and all, by later tiles: a sliding window allocates nothing once it
// has reached its size. Index and aggregate share a slot, so finding a tile
// and updating it touch the same memory.
type tiles[A any, P slot[A]] struct {
	live []tile[A] // buf[off : off+len(live)]
	buf  []tile[A]
	off  int
}

type tile[A any] struct {
	idx int64
	a   A
}

// slot is an aggregate that can be emptied for reuse, keeping its buffers.
type slot[A any] interface {
	*A
	reset()
}

// at returns the aggregate of tile i, adding an empty one if needed. Events
// mostly land in the newest tile, so the search starts from the end.
func (t *tiles[A, P]) at(i int64) *A {
	n := len(t.live)
	if n > 0 && t.live[n-1].idx == i {
		return &t.live[n-1].a
	}
	if n == 0 || t.live[n-1].idx < i {
		t.extend()
		t.live[n].idx = i
		return &t.live[n].a
	}
	j, found := slices.BinarySearchFunc(t.live, i, func(x tile[A], i int64) int { return cmpInt(x.idx, i) })
	if !found {
		t.extend() // the new, empty slot is at n: move it to j
		spare := t.live[n]
		copy(t.live[j+1:], t.live[j:n])
		t.live[j] = spare
		t.live[j].idx = i
	}
	return &t.live[j].a
}

func cmpInt(a, b int64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// extend adds an empty slot after the live tiles.
func (t *tiles[A, P]) extend() {
	n := len(t.live)
	if t.off+n == len(t.buf) {
		if t.off > 0 && t.off >= n { // at least half the buffer has expired: compact
			rotateLeft(t.buf[:t.off+n], t.off) // the reset slots go behind the live ones
		} else {
			buf := make([]tile[A], max(4, 2*len(t.buf)))
			copy(buf, t.live)
			t.buf = buf
		}
		t.off = 0
	}
	t.live = t.buf[t.off : t.off+n+1]
}

// rotateLeft moves the first k elements of s to its end, in place.
func rotateLeft[E any](s []E, k int) {
	slices.Reverse(s[:k])
	slices.Reverse(s[k:])
	slices.Reverse(s)
}

// split returns the position of the first live tile numbered lo or more.
// Tiles mostly expire one at a time, so it looks at the first two before
// searching.
func (t *tiles[A, P]) split(lo int64) int {
	if len(t.live) == 0 || t.live[0].idx >= lo {
		return 0
	}
	if len(t.live) == 1 || t.live[1].idx >= lo {
		return 1
	}
	j, _ := slices.BinarySearchFunc(t.live, lo, func(x tile[A], lo int64) int { return cmpInt(x.idx, lo) })
	return j
}

// from returns the tiles numbered lo or more.
func (t *tiles[A, P]) from(lo int64) []tile[A] { return t.live[t.split(lo):] }

// before returns the tiles numbered below lo.
func (t *tiles[A, P]) before(lo int64) []tile[A] { return t.live[:t.split(lo)] }

// prune drops tiles numbered below lo, resetting their slots for reuse.
func (t *tiles[A, P]) prune(lo int64) { t.drop(t.split(lo)) }

// drop drops the first j tiles, resetting their slots for reuse.
func (t *tiles[A, P]) drop(j int) {
	if j == 0 {
		return
	}
	for k := range j {
		P(&t.live[k].a).reset()
	}
	t.off += j
	t.live = t.live[j:]
}

func (t *tiles[A, P]) appendTo(b []byte, enc func([]byte, *A) []byte) []byte {
	b = appendUvarint(b, uint64(len(t.live)))
	prev := int64(0)
	for i := range t.live {
		b = appendVarint(b, t.live[i].idx-prev) // the first absolute, then deltas
		prev = t.live[i].idx
		b = enc(b, &t.live[i].a)
	}
	return b
}

func (t *tiles[A, P]) readFrom(r *reader, dec func(*reader, *A)) {
	n := r.count(min(maxTiles+1, uint64(len(r.b)))) // a tile takes a byte at least
	t.live, t.off = make([]tile[A], n), 0
	t.buf = t.live
	prev := int64(0)
	for i := range n {
		d := r.varint()
		if i > 0 && d <= 0 {
			r.fail("tile indexes out of order")
		}
		prev += d
		t.live[i].idx = prev
		dec(r, &t.live[i].a)
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
	old := s.before(lo)
	for _, t := range old {
		s.total -= int64(t.a)
	}
	s.drop(len(old))
}

func (s *countSeries) value(lo int64) Value {
	n := s.total
	for _, t := range s.before(lo) {
		n -= int64(t.a)
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

func (a *sumAcc) reset() { a.n = 0; a.sum.reset() }

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
	var t term
	t.set(v.Float())
	a := s.at(tile)
	a.n++
	a.sum.addTerm(&t)
	s.total.n++
	s.total.sum.addTerm(&t)
}

func (s *sumSeries) prune(lo int64) {
	old := s.before(lo)
	for i := range old {
		s.total.n -= old[i].a.n
		s.total.sum.unmerge(&old[i].a.sum)
	}
	s.drop(len(old))
}

func (s *sumSeries) value(lo int64) Value {
	n, sum := s.total.n, &s.total.sum
	if old := s.before(lo); len(old) > 0 {
		rest := sum.clone()
		for i := range old {
			n -= old[i].a.n
			rest.unmerge(&old[i].a.sum)
		}
		sum = &rest
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
		return appendXsum(appendUvarint(b, uint64(a.n)), &a.sum)
	})
}

func (s *sumSeries) readFrom(r *reader) {
	s.tiles.readFrom(r, func(r *reader, a *sumAcc) {
		a.n = int64(r.count(1 << 40))
		r.xsum(&a.sum)
		s.total.n += a.n
		s.total.sum.merge(&a.sum)
	})
}

type stddevAcc struct {
	n      int64
	s1, s2 xsum
}

func (a *stddevAcc) reset() { a.n = 0; a.s1.reset(); a.s2.reset() }

func (a *stddevAcc) add(x, sq *term) {
	a.n++
	a.s1.addTerm(x)
	a.s2.addTerm(sq)
}

func (a *stddevAcc) unmerge(o *stddevAcc) {
	a.n -= o.n
	a.s1.unmerge(&o.s1)
	a.s2.unmerge(&o.s2)
}

type stddevSeries struct {
	tiles[stddevAcc, *stddevAcc]
	total stddevAcc
}

func (s *stddevSeries) add(tile int64, v Value, _ order) {
	if v.IsNull() {
		return
	}
	var x, sq term
	x.set(v.Float())
	sq.setSquare(v.Float())
	s.at(tile).add(&x, &sq)
	s.total.add(&x, &sq)
}

func (s *stddevSeries) prune(lo int64) {
	old := s.before(lo)
	for i := range old {
		s.total.unmerge(&old[i].a)
	}
	s.drop(len(old))
}

func (s *stddevSeries) value(lo int64) Value {
	t := &s.total
	if old := s.before(lo); len(old) > 0 {
		rest := stddevAcc{n: t.n, s1: t.s1.clone(), s2: t.s2.clone()}
		for i := range old {
			rest.unmerge(&old[i].a)
		}
		t = &rest
	}
	if t.n == 0 {
		return Null
	}
	return Float(stddev(t.n, &t.s1, &t.s2))
}

func (s *stddevSeries) appendTo(b []byte) []byte {
	return s.tiles.appendTo(b, func(b []byte, a *stddevAcc) []byte {
		return appendXsum(appendXsum(appendUvarint(b, uint64(a.n)), &a.s1), &a.s2)
	})
}

func (s *stddevSeries) readFrom(r *reader) {
	s.tiles.readFrom(r, func(r *reader, a *stddevAcc) {
		a.n = int64(r.count(1 << 40))
		r.xsum(&a.s1)
		r.xsum(&a.s2)
		s.total.n += a.n
		s.total.s1.merge(&a.s1)
		s.total.s2.merge(&a.s2)
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
	for _, t := range s.from(lo) {
		if s.better(t.a, best) {
			best = t.a
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

// lastSeries keeps only the latest event and its tile: the latest event of
// a window is the latest of all if its tile is in the window, and there is
// none otherwise, every other event being as old or older, in the same tile
// or an earlier one. So a view's `last` features hold the fields of one
// event between them, whatever their windows. It is encoded as tiles are,
// with one tile at most; a state of many (written before) decodes to its
// latest.
type lastSeries struct {
	tile int64
	a    lastAcc // !a.ok: no event
}

// last is the field of the latest event, null if that event has none.
func (s *lastSeries) add(tile int64, v Value, o order) {
	if !s.a.ok || o.after(s.a.at) {
		s.tile, s.a = tile, lastAcc{v: v, at: o, ok: true}
	}
}

func (s *lastSeries) prune(lo int64) {
	if s.tile < lo {
		s.a = lastAcc{}
	}
}

func (s *lastSeries) value(lo int64) Value {
	if s.tile < lo {
		return Null
	}
	return s.a.v // null if there is no event
}

func (s *lastSeries) appendTo(b []byte) []byte {
	if !s.a.ok {
		return appendUvarint(b, 0)
	}
	b = appendVarint(appendUvarint(b, 1), s.tile)
	b = appendVarint(b, s.a.at.time)
	b = appendVarint(b, int64(s.a.at.partition))
	b = appendVarint(b, s.a.at.offset)
	return appendValue(b, s.a.v)
}

func (s *lastSeries) readFrom(r *reader) {
	var t tiles[lastAcc, *lastAcc]
	t.readFrom(r, func(r *reader, a *lastAcc) {
		a.at = order{time: r.varint(), partition: int32(r.varint()), offset: r.varint()}
		a.v = r.value()
		a.ok = true
	})
	*s = lastSeries{}
	for _, x := range t.live {
		s.add(x.idx, x.a.v, x.a.at)
	}
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
	// merged is the sketches of a window's tiles but its newest, merged
	// (mergedTiles): merging every tile's again for each evaluation took
	// milliseconds once they hold sketches. Evaluations may run at once
	// (serve shares a state between requests): it is replaced, never
	// changed, and add, which runs alone, drops it.
	merged atomic.Pointer[mergedTiles]
}

// mergedTiles is the sketches of the tiles numbered lo to hi (excluded),
// merged in order (mergeSketches): with the sketch of tile hi merged after
// them, as value would merge them all, the same sketch bit for bit.
type mergedTiles struct {
	lo, hi int64
	sketch *hyperloglog.Sketch // nil if none of them holds one; never changed
}

func (s *distinctSeries) add(tile int64, v Value, _ order) {
	if v.IsNull() {
		return
	}
	if m := s.merged.Load(); m != nil && tile < m.hi {
		s.merged.Store(nil)
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
	for _, t := range old {
		if t.a.sketch != nil {
			s.sketches--
		}
		for _, h := range t.a.hashes {
			s.forget(h)
		}
	}
	s.drop(len(old))
}

func (s *distinctSeries) value(lo int64) Value {
	old := s.before(lo)
	sketches := s.sketches
	for _, t := range old {
		if t.a.sketch != nil {
			sketches--
		}
	}
	if sketches > 0 {
		tail := s.from(lo)
		last := len(tail) - 1
		m := s.merged.Load()
		if m == nil || m.lo != lo || m.hi != tail[last].idx {
			m = &mergedTiles{lo: lo, hi: tail[last].idx, sketch: mergeSketches(nil, tail[:last])}
			s.merged.Store(m)
		}
		var sk *hyperloglog.Sketch
		if m.sketch != nil {
			sk = m.sketch.Clone()
		}
		sk = mergeSketches(sk, tail[last:]) // not nil: some tile holds a sketch
		for i := range tail {
			for _, h := range tail[i].a.hashes {
				sk.InsertHash(h)
			}
		}
		return Int(int64(sk.Estimate()))
	}
	n := len(s.hashes)
	if len(old) > 0 { // drop hashes that only expired tiles hold
		var gone []uint64
		for _, t := range old {
			gone = append(gone, t.a.hashes...)
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
	s.merged.Store(nil)
	s.tiles.readFrom(r, readDistinct)
	for _, t := range s.live {
		if t.a.sketch != nil {
			s.sketches++
		}
		for _, h := range t.a.hashes {
			s.remember(h)
		}
	}
}
