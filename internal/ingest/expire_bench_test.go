package ingest

import (
	"context"
	"log/slog"
	"testing"
	"time"

	"github.com/quiver-ml/quiver/examples/fraud/fraudgen"
	"github.com/quiver-ml/quiver/features"
	"github.com/quiver-ml/quiver/store/online"
)

// BenchmarkExpireScan is the cost of a sweep of expire over a state store
// of many users' user_txn@1 states, none expired, as most are in a sweep:
// a week of fraudgen transactions, about 50 a user. The ceiling
// (scan=raw) is reading the same records from the store with nothing done
// with them.
func BenchmarkExpireScan(b *testing.B) {
	const users, perUser = 20_000, 50
	defs, err := features.Load("../../examples/fraud/definitions.yaml")
	if err != nil {
		b.Fatal(err)
	}
	eng, err := features.NewEngine(defs, defs.View("user_txn", 1))
	if err != nil {
		b.Fatal(err)
	}
	week := 7 * 24 * time.Hour
	g, err := fraudgen.New(fraudgen.Config{Seed: 1, Users: users, Rate: users * perUser / week.Seconds()})
	if err != nil {
		b.Fatal(err)
	}
	src := defs.Source(eng.View().Source)
	states := map[string]*features.State{}
	var ev features.Event
	latest := int64(0)
	for range users * perUser {
		t := g.Next()
		if err := src.DecodeJSON(t.JSON(), &ev); err != nil {
			b.Fatal(err)
		}
		st := states[t.UserID]
		if st == nil {
			st = eng.NewState()
			states[t.UserID] = st
		}
		if _, err := eng.Apply(st, &ev); err != nil {
			b.Fatal(err)
		}
		latest = max(latest, ev.Time)
	}
	s, err := openStore(b.TempDir(), 64<<20, slog.New(slog.DiscardHandler))
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	const changelog = "quiver.changelog.user_txn.v1"
	w, size := s.newWrite(), 0
	for u, st := range states {
		rec := online.EncodeState(eng, st, map[int32]int64{0: 1000, 1: 2000, 2: 3000, 3: 4000})
		size += len(rec)
		w.put(changelog, u, rec)
	}
	if err := w.commit(); err != nil {
		b.Fatal(err)
	}
	if err := s.db.Flush(); err != nil {
		b.Fatal(err)
	}
	ttl := eng.View().TTL.Milliseconds()
	run := func(b *testing.B, scan func() (int, error)) {
		for b.Loop() {
			n, err := scan()
			if err != nil {
				b.Fatal(err)
			}
			if n != len(states) {
				b.Fatalf("scanned %d states, want %d", n, len(states))
			}
		}
		b.ReportMetric(b.Elapsed().Seconds()*1e9/float64(b.N*len(states)), "ns/state")
		b.ReportMetric(float64(size)/float64(len(states)), "bytes/state")
	}
	b.Run("scan=expire", func(b *testing.B) {
		run(b, func() (int, error) {
			n := 0
			// At the latest event's time, no state is older than the TTL.
			corrupt, err := s.expired(context.Background(), changelog, eng, latest, ttl, func(string) error { n++; return nil })
			if corrupt != nil {
				return 0, corrupt
			}
			if n != 0 {
				b.Fatalf("%d states expired, want none", n)
			}
			return len(states), err
		})
	})
	b.Run("scan=raw", func(b *testing.B) {
		run(b, func() (int, error) {
			n := 0
			err := s.states(changelog, func(string, []byte) error { n++; return nil })
			return n, err
		})
	})
}
