package replay

// SetRowsFlush sets the size of the feature log rows held before they are
// written, and returns a function that restores it.
func SetRowsFlush(n int64) (restore func()) {
	old := rowsFlush
	rowsFlush = n
	return func() { rowsFlush = old }
}
