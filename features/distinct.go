package features

import (
	"encoding/binary"
	"math"
	"slices"

	"github.com/axiomhq/hyperloglog"
	"github.com/cespare/xxhash/v2"
)

// exactDistinct is how many distinct values a tile counts exactly before it
// switches to a HyperLogLog sketch. A window is counted exactly while none of
// its tiles has switched, so counts below this are always exact.
const exactDistinct = 128

// sketchPrecision is the HyperLogLog precision: 2^14 registers give a 0.81%
// standard error, so 2% at 10^4 distinct values is about 2.5 standard errors.
const sketchPrecision = 14

// distinctTileBytes bounds the encoding of a distinct-count tile, its index
// included: a dense sketch of sketchPrecision, which a tile becomes once
// it holds several thousand distinct values (TestDistinctTileBytes).
const distinctTileBytes = 16_400 + 10

// distinct holds the distinct values of one tile: their 64-bit hashes, sorted,
// while there are few; a sketch after that.
type distinct struct {
	hashes []uint64
	sketch *hyperloglog.Sketch
}

func (d *distinct) reset() { d.hashes, d.sketch = d.hashes[:0], nil }

// add inserts a hash. It reports whether the exact set grew and, when this
// hash made the tile switch to a sketch, the hashes the set held.
func (d *distinct) add(h uint64) (added bool, dropped []uint64) {
	if d.sketch != nil {
		d.sketch.InsertHash(h)
		return false, nil
	}
	i, found := slices.BinarySearch(d.hashes, h)
	if found {
		return false, nil
	}
	if len(d.hashes) < exactDistinct {
		d.hashes = slices.Insert(d.hashes, i, h)
		return true, nil
	}
	d.sketch = newSketch()
	for _, x := range d.hashes {
		d.sketch.InsertHash(x)
	}
	d.sketch.InsertHash(h)
	dropped, d.hashes = d.hashes, nil
	return false, dropped // the caller reads dropped before anything reuses it
}

func newSketch() *hyperloglog.Sketch {
	sk, err := hyperloglog.NewSketch(sketchPrecision, true)
	if err != nil {
		panic(err) // the precision is a valid constant
	}
	return sk
}

// mergeSketches merges, in order, the sketches of tiles into sk, a new
// sketch if sk is nil and some tile holds one; nil if none does.
func mergeSketches(sk *hyperloglog.Sketch, tiles []tile[distinct]) *hyperloglog.Sketch {
	for i := range tiles {
		if tiles[i].a.sketch == nil {
			continue
		}
		if sk == nil {
			sk = newSketch()
		}
		if err := sk.Merge(tiles[i].a.sketch); err != nil {
			panic(err) // decodeDistinct admits only sketches of sketchPrecision
		}
	}
	return sk
}

// hashValue hashes a value with its type, stably across processes and
// releases: the hashes are stored.
func hashValue(v Value) uint64 {
	if v.typ == TypeString {
		// The hash of the type's byte, then the string: on the stack in one
		// call when it fits (a digest copies its input in pieces).
		var buf [64]byte
		buf[0] = byte(v.typ)
		if len(v.str) < len(buf) {
			return xxhash.Sum64(buf[:1+copy(buf[1:], v.str)])
		}
		var d xxhash.Digest
		d.Reset()
		d.Write(buf[:1])
		d.WriteString(v.str)
		return d.Sum64()
	}
	var buf [9]byte
	buf[0] = byte(v.typ)
	binary.LittleEndian.PutUint64(buf[1:], v.num)
	if v.typ == TypeFloat && v.Float() == 0 {
		binary.LittleEndian.PutUint64(buf[1:], math.Float64bits(0)) // -0 == 0
	}
	return xxhash.Sum64(buf[:])
}
