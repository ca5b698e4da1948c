package online_test

import (
	"fmt"

	"github.com/quiver-ml/quiver/features"
	"github.com/quiver-ml/quiver/store/online"
)

// Ingest and serve name an entity's record the same way: its join-key
// values, escaped and joined, in the view version's changelog topic or
// under its Redis key prefix.
func Example() {
	t := online.Table{View: "card_merchant_txn", Version: 2}
	key, _ := online.AppendEntityKey(nil, features.Int(4242), features.String(`acme|shop\eu`))
	fmt.Println(string(key))
	fmt.Println(online.ChangelogTopic("quiver", t))
	fmt.Println(online.RedisKey("quiver", t, string(key)))
	// Output:
	// 4242|acme\|shop\\eu
	// quiver.changelog.card_merchant_txn.v2
	// quiver:card_merchant_txn:v2:4242|acme\|shop\\eu
}

// A null join key has no entity key.
func ExampleAppendEntityKey_null() {
	_, ok := online.AppendEntityKey(nil, features.String("u1"), features.Null)
	fmt.Println(ok)
	// Output: false
}
