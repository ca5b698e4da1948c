package ingest

import (
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"syscall"

	"github.com/cockroachdb/pebble/v2"

	onlinepebble "github.com/quiver-ml/quiver/store/online/pebble"
)

// store is ingest's local state store: every state record of the partitions
// this instance owns or owned, and for each changelog partition the offset up
// to which the store reflects it. The changelog is the truth; the store only
// saves replaying it from the start. It is never ahead of the changelog:
// records are written here only after the changelog has them.
type store struct {
	db *pebble.DB
}

func openStore(dir string, cacheBytes int64, log *slog.Logger) (*store, error) {
	cache := pebble.NewCache(cacheBytes)
	defer cache.Unref()
	db, err := pebble.Open(dir, &pebble.Options{Cache: cache, FormatMajorVersion: pebble.FormatNewest, Logger: onlinepebble.Logger(log)})
	if errors.Is(err, syscall.EAGAIN) { // the directory's lock, held by another process
		return nil, fmt.Errorf("open state store %s: in use by another process (each ingest instance needs a --data-dir of its own): %w", dir, err)
	}
	if err != nil {
		return nil, fmt.Errorf("open state store: %w", err)
	}
	return &store{db: db}, nil
}

func (s *store) Close() error { return s.db.Close() }

// Keys: "s\x00<changelog topic>\x00<entity key>" for state records,
// "c\x00<changelog topic>\x00<partition>" for restore offsets.
func stateKey(changelog, entity string) []byte {
	return append(append(append([]byte("s\x00"), changelog...), 0), entity...)
}

func offsetKey(changelog string, partition int32) []byte {
	return binary.BigEndian.AppendUint32(append(append([]byte("c\x00"), changelog...), 0), uint32(partition))
}

// get returns the stored record, or nil if there is none.
func (s *store) get(changelog, entity string) ([]byte, error) {
	v, closer, err := s.db.Get(stateKey(changelog, entity))
	if errors.Is(err, pebble.ErrNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read state: %w", err)
	}
	defer closer.Close()
	return append([]byte(nil), v...), nil
}

// states calls fn with each state record of a changelog, in key order, as
// the store held them when it was called. The record is valid only during
// the call.
func (s *store) states(changelog string, fn func(entity string, record []byte) error) error {
	prefix := stateKey(changelog, "")
	end := append(prefix[:len(prefix)-1:len(prefix)-1], 1) // past every key of the prefix: a topic name has no zero byte
	it, err := s.db.NewIter(&pebble.IterOptions{LowerBound: prefix, UpperBound: end})
	if err != nil {
		return fmt.Errorf("read states: %w", err)
	}
	for it.First(); it.Valid(); it.Next() {
		v, err := it.ValueAndErr()
		if err == nil {
			err = fn(string(it.Key()[len(prefix):]), v)
		}
		if err != nil {
			it.Close()
			return err
		}
	}
	if err := it.Close(); err != nil {
		return fmt.Errorf("read states: %w", err)
	}
	return nil
}

// restoreOffset returns the changelog offset from which to catch up.
func (s *store) restoreOffset(changelog string, partition int32) (int64, error) {
	v, closer, err := s.db.Get(offsetKey(changelog, partition))
	if errors.Is(err, pebble.ErrNotFound) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("read restore offset: %w", err)
	}
	defer closer.Close()
	if len(v) != 8 {
		return 0, fmt.Errorf("read restore offset: %d bytes", len(v))
	}
	return int64(binary.BigEndian.Uint64(v)), nil
}

// write is one atomic, durable update: state records and the changelog
// offsets they bring the store up to.
type write struct {
	b *pebble.Batch
}

func (s *store) newWrite() write { return write{s.db.NewBatch()} }

// put stores an entity's state record, or deletes it for a tombstone (nil).
func (w write) put(changelog, entity string, record []byte) {
	// A batch's Set and Delete fail only when it is closed.
	if record == nil {
		_ = w.b.Delete(stateKey(changelog, entity), nil)
	} else {
		_ = w.b.Set(stateKey(changelog, entity), record, nil)
	}
}

func (w write) restoredTo(changelog string, partition int32, next int64) {
	_ = w.b.Set(offsetKey(changelog, partition), binary.BigEndian.AppendUint64(nil, uint64(next)), nil)
}

func (w write) commit() error {
	defer w.b.Close()
	if err := w.b.Commit(pebble.Sync); err != nil {
		return fmt.Errorf("write state: %w", err)
	}
	return nil
}
