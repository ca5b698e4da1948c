package backfill

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/quiver-ml/quiver/features"
)

const spillDefs = `
project: p
entities: [{name: user, join_keys: [user_id]}]
sources:
  - name: events
    topic: events
    event_time: ts
    schema: {user_id: string, amount: float, n: int, cat: string, flag: bool, at: timestamp, note: string, ts: timestamp}
feature_views:
  - name: v
    version: 1
    entity: user
    source: events
    features:
      - {name: a, agg: sum, field: amount}
      - {name: b, agg: max, field: n}
      - {name: c, agg: count_distinct, field: cat}
      - {name: d, agg: last, field: flag}
      - {name: e, agg: last, field: at}
      - {name: f, agg: last, field: note}
`

// spillJob returns the entity job of spillDefs' one view.
func spillJob(t testing.TB) *entityJob {
	defs, err := features.Parse("spill.yaml", []byte(spillDefs))
	if err != nil {
		t.Fatal(err)
	}
	p, err := newPlan(defs, []string{"v@1:a", "v@1:b", "v@1:c", "v@1:d", "v@1:e", "v@1:f"}, "")
	if err != nil {
		t.Fatal(err)
	}
	return p.entities[0]
}

// spillEventOf is ev as the source es's spill event, its strings numbered
// in strs.
func spillEventOf(es *entitySource, ev *features.Event, strs *spillStrings) *spillEvent {
	se := &spillEvent{time: ev.Time, partition: ev.Partition, offset: ev.Offset}
	for _, f := range es.fields {
		v := ev.Fields[f]
		se.fields = append(se.fields, v)
		var k uint32
		if v.Type() == features.TypeString {
			k = strs.number(v.Str())
		}
		se.nums = append(se.nums, k)
	}
	return se
}

// TestSpillRoundTrip writes random events of every type, nulls included,
// to a spill file and requires each to load back into its entity as it was
// packed: more distinct strings than the file numbers, a record larger
// than the read buffer, times going back and forth.
func TestSpillRoundTrip(t *testing.T) {
	ej := spillJob(t)
	es := ej.sources[0]
	src := es.source
	rng := rand.New(rand.NewPCG(1, 2))
	const entities = 7
	// Other files numbered all but a few strings already: the unique ones
	// below go past the last number.
	strs := newSpillStrings()
	for i := range maxSpillStrings - 5000 {
		strs.number(fmt.Sprint("other-", i))
	}
	s, err := newSpillFile(t.TempDir(), entities, 256<<10, strs)
	if err != nil {
		t.Fatal(err)
	}
	defer s.remove()
	// What each entity was given: its events, and their fields' values.
	type packed struct {
		time, offset int64
		partition    int32
		fields       []features.Value
	}
	want := make([][]packed, entities)
	got := make([]*entityWork, entities)
	for i := range got {
		got[i] = &entityWork{ord: i}
	}
	ev := features.Event{Fields: make([]features.Value, len(src.Schema))}
	random := func(typ features.Type) features.Value {
		if rng.IntN(5) == 0 {
			return features.Null
		}
		switch typ {
		case features.TypeString:
			switch rng.IntN(4) {
			case 0:
				return features.String(fmt.Sprintf("unique-%d", rng.Int64())) // past the numbered ones
			case 1:
				return features.String("")
			}
			return features.String(fmt.Sprintf("s%d", rng.IntN(50)))
		case features.TypeInt:
			return features.Int(rng.Int64() - math.MaxInt64/2)
		case features.TypeFloat:
			return features.Float(rng.NormFloat64() * 1e6)
		case features.TypeBool:
			return features.Bool(rng.IntN(2) == 0)
		case features.TypeTimestamp:
			return features.Timestamp(rng.Int64N(4e12) - 1e12)
		}
		return features.Null
	}
	for i := range 200_000 {
		ev.Time = 1_700_000_000_000 + rng.Int64N(1e9) - 5e8
		ev.Partition, ev.Offset = rng.Int32N(64)-8, rng.Int64N(1<<40)-10 // a log ingest did not write may hold anything
		for f, fd := range src.Schema {
			ev.Fields[f] = random(fd.Type)
		}
		if i == 1000 {
			ev.Fields[src.Field("note")] = features.String(strings.Repeat("x", 1<<20)) // larger than the buffer
		}
		ord := rng.IntN(entities)
		p := packed{time: ev.Time, offset: ev.Offset, partition: ev.Partition}
		for _, f := range es.fields {
			p.fields = append(p.fields, ev.Fields[f])
		}
		want[ord] = append(want[ord], p)
		if err := s.write(ord, 0, spillEventOf(es, &ev, s.strings)); err != nil {
			t.Fatal(err)
		}
	}
	if len(strs.list) != maxSpillStrings {
		t.Fatalf("%d strings numbered: none went past the last number", len(strs.list))
	}
	loaded, err := loadSpills(ej, got, []*spillFile{s})
	if err != nil {
		t.Fatal(err)
	}
	for i, w := range want {
		g := got[i]
		if len(g.events) != len(w) || cap(g.events) != len(w) || cap(g.fields) != len(w)*len(es.fields) {
			t.Fatalf("entity %d: %d events, want %d", i, len(g.events), len(w))
		}
		for j, p := range w {
			e := g.events[j]
			if e.time != p.time || e.offset != p.offset || e.partition != p.partition || e.source != 0 || e.at != j*len(es.fields) {
				t.Fatalf("entity %d event %d: %+v, want %+v", i, j, e, p)
			}
			for k, v := range p.fields {
				x := g.fields[e.at+k]
				got := features.FromBits(x.typ, x.bits)
				if x.typ == features.TypeString {
					got = features.String(loaded[x.bits])
				}
				if !got.Equal(v) {
					t.Fatalf("entity %d event %d field %d: %v, want %v", i, j, k, got, v)
				}
			}
		}
	}
}

// TestSpillCorrupt requires a damaged spill file to fail to load with an
// error, not a panic or events made up.
func TestSpillCorrupt(t *testing.T) {
	ej := spillJob(t)
	es := ej.sources[0]
	dir := t.TempDir()
	// write returns a file of three records, and where each ends.
	write := func() (*spillFile, map[int64]bool) {
		s, err := newSpillFile(dir, 1, 256<<10, newSpillStrings())
		if err != nil {
			t.Fatal(err)
		}
		ev := features.Event{Time: 1e12, Fields: make([]features.Value, len(es.source.Schema))}
		ev.Fields[es.source.Field("cat")] = features.String("a category")
		ev.Fields[es.source.Field("amount")] = features.Float(2.5)
		ends := map[int64]bool{0: true}
		for range 3 {
			if err := s.write(0, 0, spillEventOf(es, &ev, s.strings)); err != nil {
				t.Fatal(err)
			}
			s.w.Flush()
			st, err := s.f.Stat()
			if err != nil {
				t.Fatal(err)
			}
			ends[st.Size()] = true
		}
		return s, ends
	}
	s, ends := write()
	st, _ := s.f.Stat()
	s.remove()
	for cut := range st.Size() {
		if ends[cut] {
			continue // a whole number of records is a shorter file, not a damaged one
		}
		s, _ := write()
		if err := s.f.Truncate(cut); err != nil {
			t.Fatal(err)
		}
		_, err := s.load(ej, []*entityWork{{}}, nil)
		if !errors.Is(err, errCorruptSpill) {
			t.Fatalf("cut at %d of %d bytes: %v, want a corrupt record", cut, st.Size(), err)
		}
		s.remove()
	}
}

// TestSpillCorruptSize: a record's size past the end of the file is an
// error, not an allocation of that size.
func TestSpillCorruptSize(t *testing.T) {
	ej := spillJob(t)
	for _, size := range []uint64{1 << 62, 1 << 36, 300<<10 + 1} {
		s, err := newSpillFile(t.TempDir(), 1, 256<<10, newSpillStrings())
		if err != nil {
			t.Fatal(err)
		}
		s.w.Write(binary.AppendUvarint(nil, size))
		s.w.Write(make([]byte, 300<<10))
		if _, err := s.load(ej, []*entityWork{{}}, nil); !errors.Is(err, errCorruptSpill) {
			t.Errorf("a record of %d bytes in a file of 300 KiB: %v, want a corrupt record", size, err)
		}
		s.remove()
	}
}

// FuzzSpillRecord decodes arbitrary records: an error or an event, never a
// panic.
func FuzzSpillRecord(f *testing.F) {
	ej := spillJob(f)
	s, err := newSpillFile(f.TempDir(), 1, 256<<10, newSpillStrings())
	if err != nil {
		f.Fatal(err)
	}
	defer s.remove()
	ev := features.Event{Time: 1e12, Fields: make([]features.Value, len(ej.sources[0].source.Schema))}
	for i := range ev.Fields {
		ev.Fields[i] = features.String("x")
	}
	s.write(0, 0, spillEventOf(ej.sources[0], &ev, s.strings))
	f.Add(s.rec)
	f.Add([]byte{0, 0, 2, 0, 0, 1, 0, 1, 'a'})
	f.Fuzz(func(t *testing.T, rec []byte) {
		d := spillDecoder{ej: ej, numbered: s.strings.list}
		ws := []*entityWork{{}, {}}
		if err := d.record(rec, ws); err == nil && len(ws[0].events)+len(ws[1].events) != 1 {
			t.Fatalf("decoded without an event")
		}
	})
}
