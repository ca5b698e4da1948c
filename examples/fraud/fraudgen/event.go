package fraudgen

import (
	"math"
	"strconv"
	"time"

	"github.com/quiver-ml/quiver/internal/jsonenc"
)

// Event is one card transaction.
type Event struct {
	TxnID      string    // txn_id: unique within a stream
	UserID     string    // user_id: the card holder, and the Kafka key
	MerchantID string    // merchant_id
	Amount     float64   // amount: positive, in cents
	Country    string    // country: ISO 3166 alpha-2 code of where the card was used
	Time       time.Time // ts: the event time, UTC, whole milliseconds
	// Suspicious marks a transaction of a suspicious burst: ground truth for a
	// demo model, not part of the JSON.
	Suspicious bool
}

// Key returns the Kafka record key: the user_id.
func (e Event) Key() []byte { return []byte(e.UserID) }

// JSON returns the event as one compact JSON object with the keys of the
// transactions schema, in schema order; ts is RFC 3339 with milliseconds.
func (e Event) JSON() []byte { return e.AppendJSON(make([]byte, 0, 160)) }

// tsLayout is RFC 3339 with exactly three fractional digits.
const tsLayout = "2006-01-02T15:04:05.000Z07:00"

// AppendJSON appends the JSON of JSON to b. A non-finite amount is written as
// null.
func (e Event) AppendJSON(b []byte) []byte {
	b = append(b, `{"txn_id":`...)
	b = jsonenc.AppendString(b, e.TxnID)
	b = append(b, `,"user_id":`...)
	b = jsonenc.AppendString(b, e.UserID)
	b = append(b, `,"merchant_id":`...)
	b = jsonenc.AppendString(b, e.MerchantID)
	b = append(b, `,"amount":`...)
	if math.IsNaN(e.Amount) || math.IsInf(e.Amount, 0) {
		b = append(b, "null"...)
	} else {
		b = strconv.AppendFloat(b, e.Amount, 'f', -1, 64)
	}
	b = append(b, `,"country":`...)
	b = jsonenc.AppendString(b, e.Country)
	b = append(b, `,"ts":"`...)
	b = e.Time.UTC().AppendFormat(b, tsLayout)
	return append(b, `"}`...)
}
