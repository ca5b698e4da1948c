//go:build !linux

package model

import "io/fs"

// fileID is empty where the build does not read the inode and change
// time: a file's size and modification time alone describe it.
func fileID(fs.FileInfo) string { return "" }
