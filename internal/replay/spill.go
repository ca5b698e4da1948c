package replay

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"

	"github.com/cespare/xxhash/v2"

	"github.com/quiver-ml/quiver/features"
)

// slots is how many files a replay spills to: the most buckets it can
// split its entities into, so events beyond slots times the memory limit
// exceed it.
const slots = 256

// slotOf returns the slot of an entity: its spill file, and the unit by
// which a replay's feature log rows are complete. It is the same in every
// run, so that a rerun knows which rows an earlier one wrote.
func slotOf(key string) int { return int(xxhash.Sum64String(key) % slots) }

// spill holds the events of a replay that do not fit in memory, in files
// by the hash of their entity's key, until their bucket is computed.
type spill struct {
	src   *features.Source
	files [slots]*os.File
	w     [slots]*bufio.Writer
	size  [slots]int64 // what each file's events take in memory
	rec   []byte
}

func newSpill(dir string, src *features.Source) (*spill, error) {
	s := &spill{src: src}
	for i := range s.files {
		f, err := os.CreateTemp(dir, "quiver-replay-*.spill")
		if err != nil {
			s.close()
			return nil, fmt.Errorf("spill events: %w", err)
		}
		s.files[i] = f
		// Unlinked at once, the file lives as long as it is open: a
		// process killed mid-run leaves no spill behind.
		if err := os.Remove(f.Name()); err != nil {
			s.close()
			return nil, fmt.Errorf("spill events: %w", err)
		}
		s.w[i] = bufio.NewWriterSize(f, 32<<10)
	}
	return s, nil
}

// add writes an event of the entity key: its partition, offset, and the
// event as features encodes it.
func (s *spill) add(key string, ev *features.Event) error {
	i := slotOf(key)
	s.rec = binary.AppendUvarint(s.rec[:0], uint64(ev.Partition))
	s.rec = binary.AppendUvarint(s.rec, uint64(ev.Offset))
	s.rec = s.src.AppendEvent(s.rec, ev)
	s.size[i] += eventSize(len(ev.Fields))
	var n [binary.MaxVarintLen64]byte
	if _, err := s.w[i].Write(binary.AppendUvarint(n[:0], uint64(len(s.rec)))); err != nil {
		return fmt.Errorf("spill events: %w", err)
	}
	if _, err := s.w[i].Write(s.rec); err != nil {
		return fmt.Errorf("spill events: %w", err)
	}
	return nil
}

// buckets groups the files into buckets whose events take at most limit
// each, but for a file that alone takes more, and returns each file's
// bucket.
func (s *spill) buckets(limit int64) (of [slots]int, n int) {
	var size int64
	for i := range slots {
		if size > 0 && size+s.size[i] > limit {
			n, size = n+1, 0
		}
		of[i], size = n, size+s.size[i]
	}
	return of, n + 1
}

// load reads the events of file i back, calling fn with each.
func (s *spill) load(i int, fn func(*features.Event)) error {
	if err := s.w[i].Flush(); err != nil {
		return fmt.Errorf("spill events: %w", err)
	}
	if _, err := s.files[i].Seek(0, io.SeekStart); err != nil {
		return fmt.Errorf("spill events: %w", err)
	}
	r := bufio.NewReaderSize(s.files[i], 32<<10)
	var ev features.Event
	for {
		n, err := binary.ReadUvarint(r)
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("read spilled events: %w", err)
		}
		s.rec = slices.Grow(s.rec[:0], int(n))[:n]
		if _, err := io.ReadFull(r, s.rec); err != nil {
			return fmt.Errorf("read spilled events: %w", err)
		}
		b := s.rec
		p, k := binary.Uvarint(b)
		b = b[max(k, 0):]
		o, k2 := binary.Uvarint(b)
		if k <= 0 || k2 <= 0 {
			return errors.New("read spilled events: corrupt record")
		}
		if err := s.src.DecodeEvent(b[k2:], &ev); err != nil {
			return fmt.Errorf("read spilled events: %w", err)
		}
		ev.Partition, ev.Offset = int32(p), int64(o)
		fn(&ev)
	}
}

func (s *spill) close() {
	for _, f := range s.files {
		if f != nil {
			f.Close()
		}
	}
}
