package features

import (
	"encoding/binary"
	"fmt"
	"math"

	"github.com/axiomhq/hyperloglog"
)

// Encoding helpers for states. Every reader method checks bounds and records
// the first problem in r.err instead of panicking: states come from disks and
// topics, and a corrupt one must fail with ErrCorruptState.

func appendUvarint(b []byte, x uint64) []byte { return binary.AppendUvarint(b, x) }
func appendVarint(b []byte, x int64) []byte   { return binary.AppendVarint(b, x) }

func appendFloat(b []byte, f float64) []byte {
	return binary.LittleEndian.AppendUint64(b, math.Float64bits(f))
}

// appendXsum writes an exact sum in its canonical form, so that equal sums,
// however they were added up, encode to equal bytes.
func appendXsum(b []byte, s *xsum) []byte {
	var buf, c [maxPartials]float64
	p := s.parts(&buf)
	if s.wide != nil {
		p = canonical(p, c[:0])
	}
	b = appendUvarint(b, uint64(len(p)))
	for _, f := range p {
		b = appendFloat(b, f)
	}
	return b
}

func appendValue(b []byte, v Value) []byte {
	b = append(b, byte(v.typ))
	switch v.typ {
	case TypeString:
		b = appendUvarint(b, uint64(len(v.str)))
		return append(b, v.str...)
	case TypeInt, TypeTimestamp:
		return appendVarint(b, v.Int())
	case TypeFloat:
		return appendFloat(b, v.Float())
	case TypeBool:
		return append(b, byte(v.num))
	}
	return b
}

func appendDistinct(b []byte, d *distinct) []byte {
	if d.sketch == nil {
		b = appendUvarint(b, uint64(len(d.hashes)))
		for _, h := range d.hashes {
			b = binary.LittleEndian.AppendUint64(b, h)
		}
		return b
	}
	sk, err := d.sketch.MarshalBinary()
	if err != nil {
		panic(err) // marshalling a sketch in memory does not fail
	}
	b = appendUvarint(b, exactDistinct+1) // marks a sketch
	b = appendUvarint(b, uint64(len(sk)))
	return append(b, sk...)
}

type reader struct {
	b   []byte
	err error
}

func (r *reader) fail(format string, args ...any) {
	if r.err == nil {
		r.err = fmt.Errorf("%w: %s", ErrCorruptState, fmt.Sprintf(format, args...))
	}
}

func (r *reader) byte() byte {
	if r.err != nil || len(r.b) == 0 {
		r.fail("truncated")
		return 0
	}
	c := r.b[0]
	r.b = r.b[1:]
	return c
}

func (r *reader) bytes(n int) []byte {
	if r.err != nil || n < 0 || len(r.b) < n {
		r.fail("truncated")
		return nil
	}
	p := r.b[:n]
	r.b = r.b[n:]
	return p
}

func (r *reader) uvarint() uint64 {
	if r.err != nil {
		return 0
	}
	x, n := binary.Uvarint(r.b)
	if n <= 0 {
		r.fail("bad varint")
		return 0
	}
	r.b = r.b[n:]
	return x
}

func (r *reader) varint() int64 {
	if r.err != nil {
		return 0
	}
	x, n := binary.Varint(r.b)
	if n <= 0 {
		r.fail("bad varint")
		return 0
	}
	r.b = r.b[n:]
	return x
}

// count reads a length or counter no larger than limit.
func (r *reader) count(limit uint64) int {
	n := r.uvarint()
	if n > limit {
		r.fail("count %d over %d", n, limit)
		return 0
	}
	return int(n)
}

// maxPartials bounds an exact sum's partials: float64 exponents span about
// 2100 bits, 53 per partial.
const maxPartials = 48

// maxMagnitude bounds the numbers sum, avg and stddev take, so that no sum
// of 2^53 of them, or of their squares, comes near overflowing.
const maxMagnitude = 1e140

// maxPartial bounds the partials a decoded exact sum may hold: more than any
// sum of 2^53 squares of numbers within maxMagnitude.
const maxPartial = 1e300

func (r *reader) float() float64 {
	p := r.bytes(8)
	if p == nil {
		return 0
	}
	return math.Float64frombits(binary.LittleEndian.Uint64(p))
}

// xsum reads partials. What appendXsum wrote is canonical, and so already
// what the exact-sum code relies on (sorted, not overlapping); anything else
// is added up again and compacted, whatever the bytes were.
func (r *reader) xsum(s *xsum) {
	var buf [maxPartials]float64
	p := buf[:r.count(maxPartials)]
	for i := range p {
		p[i] = r.float()
		if !(math.Abs(p[i]) <= maxPartial) {
			r.fail("partial sum %v out of range", p[i])
			return
		}
	}
	if isCanonical(p) {
		s.setCanonical(p)
		return
	}
	for _, f := range p {
		s.add(f)
	}
	s.compact()
}

func (r *reader) value() Value {
	switch t := Type(r.byte()); t {
	case TypeNull:
		return Null
	case TypeString:
		return String(string(r.bytes(r.count(uint64(len(r.b))))))
	case TypeInt:
		return Int(r.varint())
	case TypeTimestamp:
		return Timestamp(r.varint())
	case TypeFloat:
		f := r.float()
		if math.IsNaN(f) {
			r.fail("NaN value")
		}
		return Float(f)
	case TypeBool:
		b := r.byte()
		if b > 1 {
			r.fail("bad bool %d", b)
		}
		return Bool(b == 1)
	default:
		r.fail("unknown value type %d", t)
		return Null
	}
}

func readDistinct(r *reader, d *distinct) {
	n := r.count(exactDistinct + 1)
	if n <= exactDistinct {
		d.hashes = make([]uint64, n)
		for i := range d.hashes {
			if p := r.bytes(8); p != nil {
				d.hashes[i] = binary.LittleEndian.Uint64(p)
			}
			if i > 0 && d.hashes[i] <= d.hashes[i-1] {
				r.fail("distinct hashes out of order")
			}
		}
		return
	}
	p := r.bytes(r.count(uint64(len(r.b))))
	if r.err != nil {
		return
	}
	sk := new(hyperloglog.Sketch)
	if err := sk.UnmarshalBinary(p); err != nil {
		r.fail("sketch: %v", err)
		return
	}
	if err := newSketch().Merge(sk); err != nil {
		r.fail("sketch: %v", err) // not of sketchPrecision
		return
	}
	d.sketch = sk
}
