package ingest

import "github.com/quiver-ml/quiver/store/online"

// stateRecord is what ingest keeps of an entity: the encoded state and, for
// each source partition, the offset of the latest event it has applied. A
// replay skips events at or below that offset, which is what makes feature
// state effectively-once. It is written as online.AppendRecord.
type stateRecord struct {
	applied map[int32]int64 // source partition → latest applied offset
	state   []byte          // features.Engine.AppendState
}

func (r *stateRecord) appendTo(b []byte) []byte { return online.AppendRecord(b, r.applied, r.state) }

func decodeRecord(b []byte) (stateRecord, error) {
	applied, state, err := online.SplitRecord(b)
	return stateRecord{applied: applied, state: state}, err
}
