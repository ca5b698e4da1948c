package ingest

import (
	"strconv"

	"github.com/quiver-ml/quiver/features"
)

// appendEntityKey appends an entity's join-key values to dst as one readable
// key: the values in join-key order, separated by '|', with '|' and '\' escaped
// by a backslash, so that distinct keys never collide. It is the Kafka record
// key of repartitioned events and of changelog records, so Kafka's key hashing
// gives one entity one partition everywhere. ok is false if a join key is null.
func appendEntityKey(dst []byte, ev *features.Event, fields []int) ([]byte, bool) {
	for i, f := range fields {
		v := ev.Fields[f]
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
			return dst, false // null; validation admits only string and int keys
		}
	}
	return dst, true
}
