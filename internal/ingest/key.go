package ingest

import (
	"strconv"
	"strings"

	"github.com/quiver-ml/quiver/features"
)

// entityKey renders an entity's join-key values as one readable key: the
// values in join-key order, separated by '|', with '|' and '\' escaped by a
// backslash, so that distinct keys never collide. It is the Kafka record key
// of repartitioned events and of changelog records, so Kafka's key hashing
// gives one entity one partition everywhere. ok is false if a join key is null.
func entityKey(ev *features.Event, fields []int) (string, bool) {
	var b strings.Builder
	for i, f := range fields {
		v := ev.Fields[f]
		if i > 0 {
			b.WriteByte('|')
		}
		switch v.Type() {
		case features.TypeString:
			escapeKey(&b, v.Str())
		case features.TypeInt:
			b.WriteString(strconv.FormatInt(v.Int(), 10))
		default:
			return "", false // null; validation admits only string and int keys
		}
	}
	return b.String(), true
}

func escapeKey(b *strings.Builder, s string) {
	for i := 0; i < len(s); i++ {
		if s[i] == '|' || s[i] == '\\' {
			b.WriteByte('\\')
		}
		b.WriteByte(s[i])
	}
}
