package ingest

import (
	"encoding/binary"
	"errors"
	"fmt"
	"maps"
	"slices"

	"github.com/quiver-ml/quiver/features"
)

// stateRecord is what ingest stores for one entity of one view version, in
// Pebble, in the changelog and in Redis: the engine's state and, for each
// source partition, the offset of the latest event it has applied. A replay
// skips events at or below that offset, which is what makes feature state
// effectively-once.
type stateRecord struct {
	applied map[int32]int64 // source partition → latest applied offset
	state   []byte          // features.Engine.AppendState
}

const recordVersion = 1

var errCorruptRecord = errors.New("ingest: corrupt state record")

func (r *stateRecord) appendTo(b []byte) []byte {
	b = append(b, recordVersion)
	b = binary.AppendUvarint(b, uint64(len(r.applied)))
	for _, p := range slices.Sorted(maps.Keys(r.applied)) {
		b = binary.AppendVarint(b, int64(p))
		b = binary.AppendVarint(b, r.applied[p])
	}
	return append(b, r.state...)
}

func decodeRecord(b []byte) (stateRecord, error) {
	if len(b) == 0 || b[0] != recordVersion {
		return stateRecord{}, fmt.Errorf("%w: unknown version", errCorruptRecord)
	}
	b = b[1:]
	n, k := binary.Uvarint(b)
	if k <= 0 || n > 1<<20 {
		return stateRecord{}, fmt.Errorf("%w: bad partition count", errCorruptRecord)
	}
	b = b[k:]
	r := stateRecord{applied: make(map[int32]int64, n)}
	for range n {
		p, k1 := binary.Varint(b)
		if k1 <= 0 {
			return stateRecord{}, fmt.Errorf("%w: bad partition", errCorruptRecord)
		}
		o, k2 := binary.Varint(b[k1:])
		if k2 <= 0 {
			return stateRecord{}, fmt.Errorf("%w: bad offset", errCorruptRecord)
		}
		r.applied[int32(p)] = o
		b = b[k1+k2:]
	}
	r.state = b
	return r, nil
}

// DecodeStateRecord decodes a state record, as the changelog and the state
// store hold it: the engine's state, and for each source partition the
// offset of the latest event applied to it.
func DecodeStateRecord(eng *features.Engine, b []byte) (*features.State, map[int32]int64, error) {
	r, err := decodeRecord(b)
	if err != nil {
		return nil, nil, err
	}
	st, err := eng.DecodeState(r.state)
	return st, r.applied, err
}

// AppendStateRecord appends a state record: st, encoded by eng, and for each
// source partition the offset of the latest event applied to it.
func AppendStateRecord(b []byte, eng *features.Engine, st *features.State, applied map[int32]int64) []byte {
	r := stateRecord{applied: applied, state: eng.AppendState(nil, st)}
	return r.appendTo(b)
}
