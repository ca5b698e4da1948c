package cli

import (
	"os"
	"slices"
)

// Stamps record what some files were when they were read, to tell when one
// of them has changed since: rewritten, or replaced as the kubelet
// replaces a Secret's or ConfigMap's files.
type Stamps []os.FileInfo

// Stat returns the stamps of the files at paths, skipping empty paths; nil
// if one of them cannot be had, which is the same as no stamps.
func Stat(paths ...string) Stamps {
	stamps := Stamps{}
	for _, p := range paths {
		if p == "" {
			continue
		}
		fi, err := os.Stat(p)
		if err != nil {
			return nil
		}
		stamps = append(stamps, fi)
	}
	return stamps
}

// Same reports whether s and o stamp the same files, unchanged: the same
// file (device and inode), size and modification time.
func (s Stamps) Same(o Stamps) bool {
	return s != nil && o != nil && slices.EqualFunc(s, o, func(a, b os.FileInfo) bool {
		return os.SameFile(a, b) && a.ModTime().Equal(b.ModTime()) && a.Size() == b.Size()
	})
}
