// Package storetest is the test suite every online.Store backend passes.
package storetest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"

	"github.com/quiver-ml/quiver/store/online"
)

// NewStore returns a store of the backend under test that holds exactly the
// given records and is ready. The suite closes it.
type NewStore func(t *testing.T, records []online.Record) online.Store

var (
	userV1 = online.Table{View: "user_txn", Version: 1}
	userV2 = online.Table{View: "user_txn", Version: 2}
	merch  = online.Table{View: "merchant_txn", Version: 1}
)

// Run runs the suite.
func Run(t *testing.T, newStore NewStore) {
	t.Run("GetReturnsRecords", func(t *testing.T) { testGet(t, newStore) })
	t.Run("BigBatch", func(t *testing.T) { testBigBatch(t, newStore) })
	t.Run("Empty", func(t *testing.T) { testEmpty(t, newStore) })
	t.Run("Concurrent", func(t *testing.T) { testConcurrent(t, newStore) })
	t.Run("Closed", func(t *testing.T) { testClosed(t, newStore) })
}

func open(t *testing.T, newStore NewStore, records []online.Record) online.Store {
	s := newStore(t, records)
	if err := s.Ready(context.Background()); err != nil {
		t.Fatalf("Ready: %v", err)
	}
	return s
}

func closeStore(t *testing.T, s online.Store) {
	if err := s.Close(); err != nil {
		t.Errorf("Close: %v", err)
	}
}

// GetAll returns copies of the records Get finds for keys, in the order of
// keys, nil for an entity without one. It fails if Get calls back twice
// for an entity or with an index out of range.
func GetAll(ctx context.Context, s online.Store, t online.Table, keys []string) ([][]byte, error) {
	out := make([][]byte, len(keys))
	err := s.Get(ctx, t, keys, func(i int, rec []byte) error {
		if i < 0 || i >= len(keys) || out[i] != nil {
			return fmt.Errorf("a Get callback for index %d of %d keys, or a second one", i, len(keys))
		}
		out[i] = bytes.Clone(rec)
		if out[i] == nil {
			out[i] = []byte{}
		}
		return nil
	})
	return out, err
}

// check gets keys from t and compares them with want (nil: missing).
func check(t *testing.T, s online.Store, table online.Table, keys []string, want [][]byte) {
	t.Helper()
	got, err := GetAll(context.Background(), s, table, keys)
	if err != nil {
		t.Fatalf("Get %s %q: %v", table, keys, err)
	}
	for i := range keys {
		if (got[i] == nil) != (want[i] == nil) || !bytes.Equal(got[i], want[i]) {
			t.Errorf("Get %s %q = %q, want %q", table, keys[i], got[i], want[i])
		}
	}
}

func testGet(t *testing.T, newStore NewStore) {
	binary := []byte{1, 0, 0xff, '|', 0, 7}
	records := []online.Record{
		{Table: userV1, Key: "u1", Value: []byte("user one, v1")},
		{Table: userV2, Key: "u1", Value: []byte("user one, v2")},
		{Table: merch, Key: "u1", Value: []byte("a merchant named like a user")},
		{Table: userV1, Key: `a\|b|c`, Value: binary},
		{Table: userV1, Key: "ünïcødé key: with spaces", Value: []byte("x")},
		{Table: userV1, Key: "overwritten", Value: []byte("old")},
		{Table: userV1, Key: "overwritten", Value: []byte("new")},
	}
	s := open(t, newStore, records)
	defer closeStore(t, s)
	check(t, s, userV1, []string{"u1", "missing", `a\|b|c`, "ünïcødé key: with spaces", "overwritten", "u1"},
		[][]byte{[]byte("user one, v1"), nil, binary, []byte("x"), []byte("new"), []byte("user one, v1")})
	check(t, s, userV2, []string{"u1", `a\|b|c`}, [][]byte{[]byte("user one, v2"), nil})
	check(t, s, merch, []string{"u1"}, [][]byte{[]byte("a merchant named like a user")})
	check(t, s, online.Table{View: "user_txn", Version: 3}, []string{"u1"}, [][]byte{nil})
	check(t, s, userV1, []string{"u"}, [][]byte{nil}) // no prefix matches

	// An error from the callback ends Get and is what it returns.
	stop := errors.New("stop")
	calls := 0
	err := s.Get(context.Background(), userV1, []string{"u1", "overwritten", "missing"}, func(int, []byte) error {
		calls++
		return stop
	})
	if !errors.Is(err, stop) || calls != 1 {
		t.Errorf("Get with a failing callback: %v after %d calls, want %v after 1", err, calls, stop)
	}
}

func testBigBatch(t *testing.T, newStore NewStore) {
	var records []online.Record
	var keys []string
	var want [][]byte
	for i := range 1000 {
		k := fmt.Sprintf("entity-%04d", i)
		keys = append(keys, k)
		if i%3 == 0 {
			want = append(want, nil)
			continue
		}
		v := bytes.Repeat([]byte{byte(i)}, 1+i%700)
		records = append(records, online.Record{Table: userV1, Key: k, Value: v})
		want = append(want, v)
	}
	s := open(t, newStore, records)
	defer closeStore(t, s)
	check(t, s, userV1, keys, want)
}

func testEmpty(t *testing.T, newStore NewStore) {
	s := open(t, newStore, nil)
	defer closeStore(t, s)
	check(t, s, userV1, nil, nil)
	check(t, s, userV1, []string{"u1"}, [][]byte{nil})
}

func testConcurrent(t *testing.T, newStore NewStore) {
	var records []online.Record
	for i := range 50 {
		records = append(records, online.Record{Table: userV1, Key: fmt.Sprint(i), Value: []byte(fmt.Sprint("v", i))})
	}
	s := open(t, newStore, records)
	defer closeStore(t, s)
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			for i := range 200 {
				k := fmt.Sprint((g*31 + i) % 60)
				var want []byte
				if n := (g*31 + i) % 60; n < 50 {
					want = []byte(fmt.Sprint("v", n))
				}
				got, err := GetAll(context.Background(), s, userV1, []string{k})
				if err != nil || !bytes.Equal(got[0], want) {
					t.Errorf("Get %s = %q, %v; want %q", k, got, err, want)
					return
				}
			}
		})
	}
	wg.Wait()
}

func testClosed(t *testing.T, newStore NewStore) {
	s := open(t, newStore, []online.Record{{Table: userV1, Key: "u1", Value: []byte("v")}})
	if err := s.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if _, err := GetAll(context.Background(), s, userV1, []string{"u1"}); !errors.Is(err, online.ErrClosed) {
		t.Fatalf("Get after Close: %v, want online.ErrClosed", err)
	}
}
