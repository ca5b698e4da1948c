package backfill

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"slices"

	"github.com/quiver-ml/quiver/features"
)

// spillFile holds the events of one bucket of an entity's keys until the
// bucket is computed. A record is one event of one entity, cut to the
// fields its views read:
//
//	uvarint  its size, then
//	uvarint  the entity's number in the bucket (entityWork.ord)
//	uvarint  the source's index in the entity's sources
//	varint   the event time less the previous record's
//	varint   partition, then offset
//	each field of entitySource.fields: its type (a byte), then
//	  string:          uvarint k, then if k = 0 the uvarint length and
//	                   bytes, else the (k-1)th string of spillStrings
//	  int, timestamp:  varint
//	  float:           8 bytes, little endian
//	  bool:            a byte
//
// Join keys, ids and categories repeat: a string numbered in spillStrings,
// which the files of one reading worker share, is written by its number.
// The files stay small, and the events loaded back share one copy of each
// string (applying hashes them for distinct counts: shared copies are in
// the cache, copies of their own are not).
type spillFile struct {
	f        *os.File
	w        *bufio.Writer
	rec      []byte
	strings  *spillStrings
	lastTime int64
	sizes    []spillSize // per entity, by entityWork.ord: what the file holds
}

// spillStrings numbers strings for spill files, from 1, up to
// maxSpillStrings of them.
type spillStrings struct {
	nums map[string]uint32
	list []string // by number, from 1
}

func newSpillStrings() *spillStrings { return &spillStrings{nums: map[string]uint32{}} }

// number returns the number of str, numbering it if it has none yet, or 0
// if there are maxSpillStrings already.
func (s *spillStrings) number(str string) uint32 {
	if k, ok := s.nums[str]; ok {
		return k
	}
	if len(s.list) >= maxSpillStrings {
		return 0
	}
	s.list = append(s.list, str)
	s.nums[str] = uint32(len(s.list))
	return uint32(len(s.list))
}

// spillEvent is an event as a spill file takes it: the fields of its
// entity source (entitySource.fields) in order, and each string's number in
// the file's spillStrings, or 0.
type spillEvent struct {
	time      int64
	partition int32
	offset    int64
	fields    []features.Value
	nums      []uint32
}

// spillSize is what a spill file holds of one entity: events, and their
// fields in all.
type spillSize struct{ events, fields int }

// maxSpillStrings bounds the strings a reading worker numbers, and so the
// memory numbering takes; later strings are written whole.
const maxSpillStrings = 1 << 20

// newSpillFile creates a spill file in dir for a bucket of entities,
// buffering buffer bytes, its strings numbered in strs.
func newSpillFile(dir string, entities, buffer int, strs *spillStrings) (*spillFile, error) {
	f, err := os.CreateTemp(dir, "quiver-backfill-*.spill")
	if err != nil {
		return nil, fmt.Errorf("spill events: %w", err)
	}
	// Unlinked at once, the file lives as long as it is open: a process
	// killed mid-run leaves no spill behind for anyone to clean up.
	if err := os.Remove(f.Name()); err != nil {
		f.Close()
		return nil, fmt.Errorf("spill events: %w", err)
	}
	return &spillFile{f: f, w: bufio.NewWriterSize(f, buffer), strings: strs, sizes: make([]spillSize, entities)}, nil
}

// write appends an event of the entity numbered ord, from its source
// number si.
func (s *spillFile) write(ord, si int, ev *spillEvent) error {
	b := binary.AppendUvarint(s.rec[:0], uint64(ord))
	b = binary.AppendUvarint(b, uint64(si))
	b = binary.AppendVarint(b, ev.time-s.lastTime)
	s.lastTime = ev.time
	b = binary.AppendVarint(b, int64(ev.partition))
	b = binary.AppendVarint(b, ev.offset)
	for j, v := range ev.fields {
		b = append(b, byte(v.Type()))
		switch v.Type() {
		case features.TypeString:
			b = binary.AppendUvarint(b, uint64(ev.nums[j]))
			if ev.nums[j] == 0 {
				b = binary.AppendUvarint(b, uint64(len(v.Str())))
				b = append(b, v.Str()...)
			}
		case features.TypeInt, features.TypeTimestamp:
			b = binary.AppendVarint(b, v.Int())
		case features.TypeFloat:
			b = binary.LittleEndian.AppendUint64(b, math.Float64bits(v.Float()))
		case features.TypeBool:
			b = append(b, boolByte(v.Bool()))
		}
	}
	s.rec = b
	s.sizes[ord].events++
	s.sizes[ord].fields += len(ev.fields)
	// Size and record in one write, straight into the buffer if they fit.
	if _, err := s.w.Write(append(binary.AppendUvarint(s.w.AvailableBuffer(), uint64(len(b))), b...)); err != nil {
		return fmt.Errorf("spill events: %w", err)
	}
	return nil
}

func boolByte(b bool) byte {
	if b {
		return 1
	}
	return 0
}

// errCorruptSpill is what a spill file that does not decode gives.
var errCorruptSpill = errors.New("read spilled events: corrupt record")

// loadSpills reads a bucket's spill files back into the work of its
// entities, ws indexed by entityWork.ord, each entity's arrays sized once.
// It returns the strings the events' string fields index.
func loadSpills(ej *entityJob, ws []*entityWork, files []*spillFile) ([]string, error) {
	for i, w := range ws {
		var n spillSize
		for _, s := range files {
			n.events += s.sizes[i].events
			n.fields += s.sizes[i].fields
		}
		w.events = make([]packedEvent, 0, n.events)
		w.fields = make([]cell, 0, n.fields)
	}
	var strs []string
	for _, s := range files {
		var err error
		if strs, err = s.load(ej, ws, strs); err != nil {
			return nil, err
		}
	}
	return strs, nil
}

// load reads the file's events back into the work of their entities, ws
// indexed by entityWork.ord, their strings appended to strs.
func (s *spillFile) load(ej *entityJob, ws []*entityWork, strs []string) ([]string, error) {
	if err := s.w.Flush(); err != nil {
		return nil, fmt.Errorf("spill events: %w", err)
	}
	st, err := s.f.Stat()
	if err != nil {
		return nil, err
	}
	if _, err := s.f.Seek(0, io.SeekStart); err != nil {
		return nil, err
	}
	r := bufio.NewReaderSize(s.f, 256<<10)
	d := spillDecoder{ej: ej, numbered: s.strings.list, strs: strs}
	var big []byte
	for left := uint64(st.Size()); ; {
		size, err := binary.ReadUvarint(r)
		if errors.Is(err, io.EOF) {
			return d.strs, nil
		}
		if err != nil {
			return nil, fmt.Errorf("%w: %v", errCorruptSpill, err)
		}
		left -= uint64(uvarintLen(size))
		if size > left {
			return nil, fmt.Errorf("%w: a record of %d bytes, %d left", errCorruptSpill, size, left)
		}
		left -= size
		rec, err := r.Peek(int(min(size, uint64(r.Size()))))
		if err != nil {
			return nil, fmt.Errorf("%w: %v", errCorruptSpill, err)
		}
		peeked := uint64(len(rec)) == size
		if !peeked { // larger than the buffer
			big = slices.Grow(big[:0], int(size))[:size]
			if _, err := io.ReadFull(r, big); err != nil {
				return nil, fmt.Errorf("%w: %v", errCorruptSpill, err)
			}
			rec = big
		}
		if err := d.record(rec, ws); err != nil {
			return nil, err
		}
		if peeked {
			r.Discard(len(rec))
		}
	}
}

func uvarintLen(x uint64) int {
	var b [binary.MaxVarintLen64]byte
	return binary.PutUvarint(b[:], x)
}

// spillDecoder decodes a spill file's records in order.
type spillDecoder struct {
	ej       *entityJob
	numbered []string // the file's spillStrings, by number from 1
	strs     []string // the strings string cells index
	index    []uint32 // per number: its string's index in strs, plus 1; 0 if not there yet
	lastTime int64
}

// record decodes one record and packs its event into its entity's work: a
// cell per field, a string's cell the string's index in d.strs.
func (d *spillDecoder) record(b []byte, ws []*entityWork) error {
	fail := func(what string) error { return fmt.Errorf("%w: %s", errCorruptSpill, what) }
	uvarint := func() uint64 {
		x, n := binary.Uvarint(b)
		if n <= 0 {
			b = nil
			return math.MaxUint64 // out of range of every use
		}
		b = b[n:]
		return x
	}
	ord, si := uvarint(), uvarint()
	if ord >= uint64(len(ws)) || si >= uint64(len(d.ej.sources)) {
		return fail("entity or source out of range")
	}
	dt, n := binary.Varint(b)
	if n <= 0 {
		return fail("time")
	}
	b = b[n:]
	d.lastTime += dt
	part, n := binary.Varint(b)
	if n <= 0 || part < math.MinInt32 || part > math.MaxInt32 {
		return fail("partition")
	}
	b = b[n:]
	off, n := binary.Varint(b)
	if n <= 0 {
		return fail("offset")
	}
	b = b[n:]
	es, w := d.ej.sources[si], ws[ord]
	at := len(w.fields)
	for _, f := range es.fields {
		if len(b) == 0 {
			return fail("fields")
		}
		typ := features.Type(b[0])
		b = b[1:]
		if typ != features.TypeNull && typ != es.source.Schema[f].Type {
			return fail("field of another type")
		}
		var bits uint64
		switch typ {
		case features.TypeNull:
		case features.TypeString:
			k := uvarint()
			switch {
			case k == 0:
				size := uvarint()
				if size > uint64(len(b)) {
					return fail("string")
				}
				bits = uint64(len(d.strs))
				d.strs = append(d.strs, string(b[:size]))
				b = b[size:]
			case k <= uint64(len(d.numbered)):
				if d.index == nil {
					d.index = make([]uint32, len(d.numbered)+1)
				}
				if d.index[k] == 0 {
					d.strs = append(d.strs, d.numbered[k-1])
					d.index[k] = uint32(len(d.strs))
				}
				bits = uint64(d.index[k] - 1)
			default:
				return fail("string number")
			}
		case features.TypeInt, features.TypeTimestamp:
			x, n := binary.Varint(b)
			if n <= 0 {
				return fail("integer")
			}
			b = b[n:]
			bits = uint64(x)
		case features.TypeFloat:
			if len(b) < 8 {
				return fail("float")
			}
			bits = binary.LittleEndian.Uint64(b)
			b = b[8:]
		case features.TypeBool:
			if len(b) < 1 {
				return fail("bool")
			}
			if b[0] != 0 {
				bits = 1
			}
			b = b[1:]
		default:
			return fail("type")
		}
		w.fields = append(w.fields, cell{bits: bits, typ: typ})
	}
	if len(b) != 0 {
		return fail("trailing bytes")
	}
	w.events = append(w.events, packedEvent{time: d.lastTime, offset: off, partition: int32(part), source: int32(si), at: at})
	return nil
}

// remove closes the file, which frees its space: it has no name.
func (s *spillFile) remove() {
	if s.f != nil {
		s.f.Close()
		s.f = nil
	}
}
