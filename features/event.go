package features

// Event is one decoded source event.
type Event struct {
	Time      int64   // event time, epoch milliseconds UTC
	Partition int32   // source partition, orders `last` among equal times
	Offset    int64   // source offset, likewise
	Fields    []Value // by the source schema's field index; null where missing
}
