package offline

import (
	"context"
	"io"
	"time"
)

// bucket is where a Dir keeps its files: a directory on a local disk (disk)
// or a key prefix in an S3 bucket (s3Bucket). Everything above it (the
// layout, batch identities, high-water marks, compaction) is the same for
// both. Names are slash-separated paths relative to the store's root, checked
// by Dir before they get here.
type bucket interface {
	// open opens a file for reading at any offset and returns its size; the
	// error matches fs.ErrNotExist when there is none.
	open(ctx context.Context, name string) (file, int64, error)
	// stat returns a file's entry; the error matches fs.ErrNotExist when
	// there is none.
	stat(ctx context.Context, name string) (entry, error)
	// dirTime returns when the entries of a directory last changed, so that
	// an unchanged directory need not be listed again; the zero time when
	// the bucket cannot tell (an object store has no directories: list it
	// every time). The error matches fs.ErrNotExist when the bucket knows
	// the directory is not there.
	dirTime(ctx context.Context, dir string) (time.Time, error)
	// list returns the entries directly in a directory, in no order,
	// temporary files included. A directory that is not there has none, or
	// the error matches fs.ErrNotExist.
	list(ctx context.Context, dir string) ([]entry, error)
	// stage writes a file that readers cannot see, to be put in place in
	// dir: write is called once with where the contents go. Either place or
	// discard must follow.
	stage(ctx context.Context, dir string, write func(io.Writer) error) (staged, error)
	// remove removes files of one directory, durably; a file that is not
	// there is no error.
	remove(ctx context.Context, dir string, names ...string) error
}

// tempRemover is a bucket that a crash can leave temporary files in: on a
// disk, a writer killed between stage and place leaves its file. A bucket
// whose staged files are nowhere a listing finds them (S3 stages in memory
// and places with one PUT) does not implement it.
type tempRemover interface {
	// removeTemps removes the temporary files directly in dir that were
	// last modified before cutoff, and returns how many it removed.
	removeTemps(ctx context.Context, dir string, cutoff time.Time) (int, error)
}

// A staged file is written in full, durably, and invisible to readers until
// it is placed.
type staged interface {
	// size is the file's size in bytes.
	size() int64
	// place puts the file in place atomically, durably, as name in the
	// directory it was staged for: readers see the whole file or none. It
	// replaces a file of that name, unless exclusive: then it fails with an
	// error matching fs.ErrExist if the name is taken, also when another
	// process places a file there at the same moment.
	place(ctx context.Context, name string, exclusive bool) error
	// discard drops the file if it was not placed; it is safe to defer.
	discard()
}

// entry is a file or directory a bucket lists.
type entry struct {
	name string // base name
	dir  bool
	size int64     // of a file
	mod  time.Time // of a file, when stat returns it
}

// file is what a bucket's open returns: random access, for Parquet footers.
// A read of a file replaced since it was opened gets the old contents (a
// disk) or fails with an error matching ErrReplaced (S3).
type file interface {
	io.ReaderAt
	io.Closer
}
