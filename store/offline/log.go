package offline

import (
	"cmp"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math"
	"path"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/parquet-go/parquet-go"
	"github.com/parquet-go/parquet-go/compress/zstd"
	"github.com/segmentio/ksuid"

	"github.com/quiver-ml/quiver/features"
)

// logCodec compresses the logs with zstd's fastest level: ingest writes them
// on its critical path, and compaction can rewrite them smaller.
var logCodec = &zstd.Codec{Level: zstd.SpeedFastest}

// ErrInvalidBatch is matched by the errors WriteBatch returns for a batch it
// refuses without writing anything: bad columns, rows that do not fit them.
var ErrInvalidBatch = errors.New("offline: invalid batch")

// Key/value metadata of every log file, identifying the batch it came from.
const (
	MetaStream      = "quiver.stream"       // Batch.Stream
	MetaFirstOffset = "quiver.first_offset" // Batch.FirstOffset, decimal
	MetaLastOffset  = "quiver.last_offset"  // Batch.LastOffset, decimal
	MetaBatchDates  = "quiver.batch_dates"  // every date the batch wrote, "YYYY-MM-DD,..."
)

// Batch is rows for one log, from one input stream, covering a contiguous
// range of its offsets.
type Batch struct {
	// Dir is the log's directory in the store, e.g. "events/transactions"
	// or "features/user_txn/v1".
	Dir string
	// Columns are the log's columns, in file order.
	Columns []Column
	// TimeColumn is the index in Columns of the event time (normally
	// _event_time, a timestamp). Rows go to date=YYYY-MM-DD partitions by it, in UTC.
	TimeColumn int
	// Rows hold one value per column, in column order; features.Null is null.
	Rows [][]features.Value
	// Stream identifies the input the batch was made from, e.g. "transactions/3"
	// (topic/partition).
	Stream string
	// FirstOffset and LastOffset are the input offsets the batch covers,
	// inclusive.
	FirstOffset, LastOffset int64
}

// maxRowErrors bounds how many row problems one error reports.
const maxRowErrors = 10

func (b *Batch) validate() error {
	var errs []error
	if err := validLogDir(b.Dir); err != nil {
		errs = append(errs, err)
	}
	if b.Stream == "" {
		errs = append(errs, errors.New("empty stream"))
	}
	if b.FirstOffset > b.LastOffset {
		errs = append(errs, fmt.Errorf("first offset %d after last offset %d", b.FirstOffset, b.LastOffset))
	}
	if err := ValidateColumns(b.Columns); err != nil {
		errs = append(errs, err)
	}
	required := make([]bool, len(b.Columns))
	for j, c := range b.Columns {
		required[j] = c.Stored.Required
		if r, ok := reservedColumns[c.Name]; ok {
			if c.Type != r.Type {
				errs = append(errs, fmt.Errorf("column %q: type %s, want %s", c.Name, c.Type, r.Type))
			}
		}
	}
	if b.TimeColumn < 0 || b.TimeColumn >= len(b.Columns) {
		errs = append(errs, fmt.Errorf("time column %d out of range", b.TimeColumn))
	} else if t := b.Columns[b.TimeColumn].Type; t != features.TypeTimestamp {
		errs = append(errs, fmt.Errorf("time column %q: type %s, want timestamp", b.Columns[b.TimeColumn].Name, t))
	}
	if len(errs) > 0 {
		return fmt.Errorf("%w: %w", ErrInvalidBatch, errors.Join(errs...))
	}
	required[b.TimeColumn] = true
	for i, row := range b.Rows {
		if len(row) != len(b.Columns) {
			errs = append(errs, fmt.Errorf("row %d: %d values for %d columns", i, len(row), len(b.Columns)))
		} else {
			for j, v := range row {
				if err := checkValue(b.Columns[j], v, required[j]); err != nil {
					errs = append(errs, fmt.Errorf("row %d column %q: %w", i, b.Columns[j].Name, err))
				}
			}
			// Dates name partitions: YYYY-MM-DD.
			if t := row[b.TimeColumn]; t.Type() == features.TypeTimestamp {
				if err := features.CheckTime(t.Int()); err != nil {
					errs = append(errs, fmt.Errorf("row %d: event time %w", i, err))
				}
			}
		}
		if len(errs) >= maxRowErrors {
			errs = append(errs, errors.New("(more problems not shown)"))
			break
		}
	}
	if len(errs) > 0 {
		return fmt.Errorf("%w: %w", ErrInvalidBatch, errors.Join(errs...))
	}
	return nil
}

// validLogDir checks a log directory name: a slash-separated relative path
// whose elements do not start with a dot and are not date partitions.
func validLogDir(dir string) error {
	if dir == "" || dir == "." || !fs.ValidPath(dir) {
		return fmt.Errorf("invalid log directory %q", dir)
	}
	for el := range strings.SplitSeq(dir, "/") {
		if strings.HasPrefix(el, ".") || strings.HasPrefix(el, datePrefix) {
			return fmt.Errorf("invalid log directory %q", dir)
		}
	}
	return nil
}

const (
	datePrefix = "date="
	dateLayout = "2006-01-02"
	fileSuffix = ".parquet"
	// Temporary files do not end in .parquet: a crash can leave one behind,
	// and tools that read dir/*.parquet must not see it.
	tempPrefix  = ".tmp-"
	tempPattern = tempPrefix + "*"
)

// datePart is the rows of a batch that fall on one date.
type datePart struct {
	day  int64 // days since the epoch
	rows []int // indexes into Batch.Rows
}

func (p datePart) date() string {
	return time.UnixMilli(p.day * msPerDay).UTC().Format(dateLayout)
}

// splitByDate groups row indexes by the UTC date of their event time, in date
// order, and returns the earliest event time.
func splitByDate(b *Batch) ([]datePart, int64) {
	var parts []datePart
	minTime := int64(math.MaxInt64)
	for i, row := range b.Rows {
		ms := row[b.TimeColumn].Int()
		minTime = min(minTime, ms)
		day := floorDiv(ms, msPerDay)
		k := slices.IndexFunc(parts, func(p datePart) bool { return p.day == day })
		if k < 0 {
			k = len(parts)
			parts = append(parts, datePart{day: day})
		}
		parts[k].rows = append(parts[k].rows, i)
	}
	slices.SortFunc(parts, func(a, b datePart) int { return cmp.Compare(a.day, b.day) })
	return parts, minTime
}

// fileName is the deterministic name of a batch's file for one date: a KSUID
// whose time is the batch's earliest event time (whole seconds, clamped to
// what a KSUID holds) and whose payload is a hash of the batch's identity.
func fileName(b *Batch, minTime int64, date string) string {
	const ksuidEpoch = 1400000000 // KSUID times are uint32 seconds from this
	sec := min(max(floorDiv(minTime, 1000), ksuidEpoch), ksuidEpoch+math.MaxUint32)
	return batchFileName(b.Stream, b.FirstOffset, b.LastOffset, date, time.Unix(sec, 0))
}

// batchFileName is the name of the file for date of the batch of stream
// from offset first to last, whose files' names have the time t.
func batchFileName(stream string, first, last int64, date string, t time.Time) string {
	h := sha256.New()
	var buf [binary.MaxVarintLen64]byte
	h.Write(buf[:binary.PutUvarint(buf[:], uint64(len(stream)))])
	h.Write([]byte(stream))
	h.Write(binary.BigEndian.AppendUint64(nil, uint64(first)))
	h.Write(binary.BigEndian.AppendUint64(nil, uint64(last)))
	h.Write([]byte(date))
	sum := h.Sum(nil)
	id, err := ksuid.FromParts(t, sum[:16])
	if err != nil {
		panic(err) // the payload has the right size
	}
	return id.String() + fileSuffix
}

// WriteBatch writes a batch's rows to its log, one file per date
// (Dir/date=YYYY-MM-DD/<ksuid>.parquet), each appearing atomically. The file
// names depend only on the batch's stream, offsets and dates, so writing the
// same batch again replaces its files rather than adding rows. An empty batch
// writes nothing. A batch that spans dates is put in place file by file:
// should that fail, or the process die, part way, the files already in place
// are removed by the next HighWaterMark call for the stream. So after an
// error, write the same batch again, or call HighWaterMark and go on from
// there; never skip the batch.
func (d *Dir) WriteBatch(ctx context.Context, b Batch) error {
	if len(b.Rows) == 0 {
		return nil
	}
	b.Columns = logLayout(b.Columns)
	if err := b.validate(); err != nil {
		return fmt.Errorf("write batch %s %s@%d-%d: %w", b.Dir, b.Stream, b.FirstOffset, b.LastOffset, err)
	}
	if err := d.writeBatch(ctx, &b); err != nil {
		return fmt.Errorf("write batch %s %s@%d-%d: %w", b.Dir, b.Stream, b.FirstOffset, b.LastOffset, err)
	}
	return nil
}

func (d *Dir) writeBatch(ctx context.Context, b *Batch) error {
	parts, minTime := splitByDate(b)
	dates := make([]string, len(parts))
	for i, p := range parts {
		dates[i] = p.date()
	}
	info := fileInfo{
		stream: b.Stream,
		first:  b.FirstOffset,
		last:   b.LastOffset,
		dates:  strings.Join(dates, ","),
	}
	schema := d.schema(b.Columns)
	opts := []parquet.WriterOption{
		schema,
		parquet.Compression(logCodec),
		parquet.KeyValueMetadata(MetaStream, info.stream),
		parquet.KeyValueMetadata(MetaFirstOffset, strconv.FormatInt(info.first, 10)),
		parquet.KeyValueMetadata(MetaLastOffset, strconv.FormatInt(info.last, 10)),
		parquet.KeyValueMetadata(MetaBatchDates, info.dates),
	}

	// Stage every date's file first (written and synced under a temporary
	// name), so that a failure here leaves nothing behind.
	sc := scratchPool.Get().(*scratch)
	defer scratchPool.Put(sc)
	files := make([]staged, len(parts))
	defer func() {
		for _, f := range files {
			if f != nil {
				f.discard()
			}
		}
	}()
	for i, p := range parts {
		if err := ctx.Err(); err != nil {
			return err
		}
		f, err := d.b.stage(ctx, path.Join(b.Dir, datePrefix+dates[i]), func(w io.Writer) error {
			return writeRows(w, opts, b, p.rows, sc)
		})
		if err != nil {
			return err
		}
		files[i] = f
	}

	// Then put them in place. The index must not be refreshed while a
	// batch is half in place, lest its files be taken for a crash's remains.
	ix := d.logIndex(b.Dir)
	ix.lock.RLock()
	defer ix.lock.RUnlock()
	placed := make([]string, 0, len(parts))
	sizes := make([]int64, 0, len(parts))
	defer func() { ix.added(dates[:len(placed)], placed, sizes, info) }()
	for i, f := range files {
		name := fileName(b, minTime, dates[i])
		if err := f.place(ctx, name, false); err != nil {
			return err
		}
		placed = append(placed, name)
		sizes = append(sizes, f.size())
	}
	return nil
}

// scratch is reusable encoding space.
type scratch struct {
	vals []parquet.Value
}

var scratchPool = sync.Pool{New: func() any { return new(scratch) }}

// writeRows writes rows idx of b to w as a Parquet file.
func writeRows(w io.Writer, opts []parquet.WriterOption, b *Batch, idx []int, sc *scratch) error {
	pw := parquet.NewGenericWriter[any](w, opts...)
	var err error
	sc.vals, err = encodeRows(pw, b.Columns, b.Rows, idx, sc.vals)
	if err != nil {
		return fmt.Errorf("encode rows: %w", err)
	}
	if err := pw.Close(); err != nil {
		return fmt.Errorf("encode rows: %w", err)
	}
	return nil
}

// schema returns the Parquet schema of cols, cached by their names and types.
func (d *Dir) schema(cols []Column) *parquet.Schema {
	var key strings.Builder
	for _, c := range cols {
		key.WriteString(c.Name)
		key.WriteByte(0)
		key.WriteByte(byte(c.Type))
	}
	if s, ok := d.schemas.Load(key.String()); ok {
		return s.(*parquet.Schema)
	}
	s, _ := d.schemas.LoadOrStore(key.String(), newSchema(cols))
	return s.(*parquet.Schema)
}
