// Package regularfile reads files that others write (a model repository
// synced from object storage, a tokens file, a spine): only a regular file,
// and only up to a size. A FIFO would block the reader for good, and a
// device or a huge file exhaust its memory.
package regularfile

import (
	"fmt"
	"io"
	"os"
)

// Check returns the information of the file at path (a symbolic link is
// followed), or an error if it is not a regular file.
func Check(path string) (os.FileInfo, error) {
	info, err := os.Stat(path)
	if err != nil {
		return nil, err
	}
	if !info.Mode().IsRegular() {
		return nil, fmt.Errorf("%s: not a regular file (%s)", path, info.Mode().Type())
	}
	return info, nil
}

// Read returns the contents of the regular file at path (a symbolic link
// is followed), which must hold at most limit bytes.
func Read(path string, limit int64) ([]byte, error) {
	info, err := Check(path)
	if err != nil {
		return nil, err
	}
	if info.Size() > limit {
		return nil, fmt.Errorf("%s: %d bytes, over the limit of %d", path, info.Size(), limit)
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, limit+1))
	if err != nil {
		return nil, err
	}
	if int64(len(b)) > limit { // it grew since
		return nil, fmt.Errorf("%s: over the limit of %d bytes", path, limit)
	}
	return b, nil
}
