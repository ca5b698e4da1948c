package model

import (
	"fmt"
	"io/fs"
	"syscall"
)

// fileID describes what, beyond its size and modification time, replacing
// a file changes: its device and inode, new for a file renamed over it
// (cp -p, rsync -t and tar keep the old time), and its change time, which
// a write in place sets and nothing sets back (to the clock tick: before
// Linux 6.13, two writes within one look alike). A replacement of the same
// size and time reloads, and no file is read to tell.
func fileID(info fs.FileInfo) string {
	st, ok := info.Sys().(*syscall.Stat_t)
	if !ok {
		return ""
	}
	return fmt.Sprintf("%d:%d %d.%09d", st.Dev, st.Ino, st.Ctim.Sec, st.Ctim.Nsec)
}
