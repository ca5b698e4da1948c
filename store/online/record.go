package online

import (
	"encoding/binary"
	"errors"
	"fmt"
	"maps"
	"slices"

	"github.com/quiver-ml/quiver/features"
)

// A state record is what the online store holds for one entity of one view
// version, in the changelog, Redis and serve's replica: a format version
// byte, then for each source partition the offset of the latest event
// applied (what makes replays effectively-once), then the engine's state.

const recordVersion = 1

// ErrCorruptRecord is returned for bytes that are not a state record.
var ErrCorruptRecord = errors.New("online: corrupt state record")

// AppendRecord appends a state record of an encoded state to b.
func AppendRecord(b []byte, applied map[int32]int64, state []byte) []byte {
	b = append(b, recordVersion)
	b = binary.AppendUvarint(b, uint64(len(applied)))
	for _, p := range slices.Sorted(maps.Keys(applied)) {
		b = binary.AppendVarint(b, int64(p))
		b = binary.AppendVarint(b, applied[p])
	}
	return append(b, state...)
}

// SplitRecord splits a state record into its applied offsets and the
// encoded state, which aliases b.
func SplitRecord(b []byte) (applied map[int32]int64, state []byte, err error) {
	if len(b) == 0 || b[0] != recordVersion {
		return nil, nil, fmt.Errorf("%w: unknown version", ErrCorruptRecord)
	}
	b = b[1:]
	n, k := binary.Uvarint(b)
	if k <= 0 || n > 1<<20 {
		return nil, nil, fmt.Errorf("%w: bad partition count", ErrCorruptRecord)
	}
	b = b[k:]
	applied = make(map[int32]int64, n)
	for range n {
		p, k1 := binary.Varint(b)
		if k1 <= 0 {
			return nil, nil, fmt.Errorf("%w: bad partition", ErrCorruptRecord)
		}
		o, k2 := binary.Varint(b[k1:])
		if k2 <= 0 {
			return nil, nil, fmt.Errorf("%w: bad offset", ErrCorruptRecord)
		}
		applied[int32(p)] = o
		b = b[k1+k2:]
	}
	return applied, b, nil
}

// EncodeState returns the state record of st, encoded by eng.
func EncodeState(eng *features.Engine, st *features.State, applied map[int32]int64) []byte {
	return AppendRecord(nil, applied, eng.AppendState(nil, st))
}

// DecodeState decodes a state record with the engine of its view version.
func DecodeState(eng *features.Engine, b []byte) (*features.State, map[int32]int64, error) {
	applied, state, err := SplitRecord(b)
	if err != nil {
		return nil, nil, err
	}
	st, err := eng.DecodeState(state)
	return st, applied, err
}
