package online

import (
	"context"
	"errors"
	"strconv"

	"github.com/quiver-ml/quiver/features"
)

// Store reads state records. Implementations are safe for concurrent use.
type Store interface {
	// Get reads the records of the given entities of one view version and
	// calls fn, one call at a time in any order, with each record found and
	// the index of its entity in keys; an entity without a record gets no
	// call. rec is valid only during the call and must not be modified (it
	// may be the store's cache): fn copies what it keeps. An error from fn
	// ends Get, which returns it.
	Get(ctx context.Context, t Table, keys []string, fn func(i int, rec []byte) error) error
	// Ready returns nil once the store serves current data, and otherwise
	// an error saying what it waits for.
	Ready(ctx context.Context) error
	Close() error
}

// Watched is a Store that alone writes its copy of the records, as serve's
// Pebble replica does, and so sees every change: a reader may keep what it
// derives from a record, without reading the store again, until the store
// says the record changed.
type Watched interface {
	Store
	// Watch calls changed after a change of a table's record (a write or a
	// delete) is visible to Get, and dropped after all of a table's records
	// were removed at once. Calls come one at a time, from the goroutine
	// that applies changes: they must be quick. Call Watch before reading
	// what it is to guard; a later call replaces the functions.
	Watch(changed func(t Table, key string), dropped func(t Table))
}

// Table is one view version: the records of one changelog topic.
type Table struct {
	View    string
	Version int
}

// TableOf returns the table of a view version.
func TableOf(v *features.View) Table { return Table{View: v.Name, Version: v.Version} }

func (t Table) String() string { return t.View + "@" + strconv.Itoa(t.Version) }

// Record is one entity's state record in a table, as ingest writes it.
type Record struct {
	Table Table
	Key   string
	Value []byte
}

// ErrClosed is returned by a Store used after Close.
var ErrClosed = errors.New("online: store closed")

// ErrUnavailable is wrapped by an error of Get when the store could not be
// reached or cannot answer for now (a connection refused or timed out, a
// Redis still loading its data, a cluster without a master for a slot): the
// same read may succeed if it is tried again.
var ErrUnavailable = errors.New("online: store unavailable")

// MaxRecordBytes bounds a record of the topics Quiver produces to, a state
// record of a changelog included: the topics are created to take it
// (max.message.bytes) and the producers to send it. A dense distinct-count
// tile takes 16 kB, and a busy entity's view of two 24-hour windows of them
// about 2 MB, past the 1 MB a Kafka topic takes by default. Definitions
// bound each view's state below it (features.MaxStateBytes), leaving room
// for the key and the applied offsets.
const MaxRecordBytes = 8 << 20

// ChangelogTopic is the compacted topic holding a table's records, keyed by
// entity: <prefix>.changelog.<view>.v<version>.
func ChangelogTopic(prefix string, t Table) string {
	return prefix + ".changelog." + t.View + ".v" + strconv.Itoa(t.Version)
}

// RedisKey is the Redis key of an entity's record:
// <prefix>:<view>:v<version>:<entity key>.
func RedisKey(prefix string, t Table, key string) string {
	return RedisKeyPrefix(prefix, t) + key
}

// RedisKeyPrefix is what every Redis key of a table starts with.
func RedisKeyPrefix(prefix string, t Table) string {
	return prefix + ":" + t.View + ":v" + strconv.Itoa(t.Version) + ":"
}

// RedisSeededKey is the Redis key that says ingest has written every state
// of a changelog partition of a table to Redis (package redis's Markers
// write its value, and on a Redis Cluster a copy per master). View names
// start with a letter, so it is no table's key.
func RedisSeededKey(prefix string, t Table, partition int32) string {
	return prefix + ":_seeded:" + t.View + ":v" + strconv.Itoa(t.Version) + ":" + strconv.Itoa(int(partition))
}

// AppendEntityKey appends an entity's join-key values to dst as one readable
// key: the values in join-key order, separated by '|', with '|' and '\'
// escaped by a backslash, so that distinct keys never collide. It is the Kafka
// record key of repartitioned events and of changelog records, so Kafka's key
// hashing gives one entity one partition everywhere, and the key serve looks
// up. ok is false if a value is neither a string nor an int: join keys are
// never null.
func AppendEntityKey(dst []byte, values ...features.Value) (_ []byte, ok bool) {
	for i, v := range values {
		if i > 0 {
			dst = append(dst, '|')
		}
		switch v.Type() {
		case features.TypeString:
			s := v.Str()
			for j := 0; j < len(s); j++ {
				if s[j] == '|' || s[j] == '\\' {
					dst = append(dst, '\\')
				}
				dst = append(dst, s[j])
			}
		case features.TypeInt:
			dst = strconv.AppendInt(dst, v.Int(), 10)
		default:
			return dst, false
		}
	}
	return dst, true
}
