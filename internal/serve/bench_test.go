package serve_test

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/labstack/echo/v4"
	goredis "github.com/redis/go-redis/v9"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/quiver-ml/quiver/examples/fraud/fraudgen"
	"github.com/quiver-ml/quiver/features"
	"github.com/quiver-ml/quiver/internal/ingesttest"
	"github.com/quiver-ml/quiver/internal/serve"
	"github.com/quiver-ml/quiver/store/online"
	"github.com/quiver-ml/quiver/store/online/pebble"
	"github.com/quiver-ml/quiver/store/online/redis"
)

const (
	benchUsers = 2_000
	// loadFor is how long each load phase runs.
	loadFor = 3 * time.Second
	// loadConns is the closed loop's concurrency: enough to keep both
	// cores busy while requests wait on the network.
	loadConns = 16
)

// benchRecords returns the state records of benchUsers users after a week
// of fraudgen transactions, 50 a day each on average, ending now.
func benchRecords(b *testing.B) (*features.Definitions, []online.Record) {
	defs, err := features.Load("testdata/bench.yaml")
	if err != nil {
		b.Fatal(err)
	}
	v := defs.View("user_txn", 1)
	eng, err := features.NewEngine(defs, v)
	if err != nil {
		b.Fatal(err)
	}
	src := defs.Source("transactions")
	week := 7 * 24 * time.Hour
	n := benchUsers * 50 * 7
	start := time.Now().Add(-week)
	g, err := fraudgen.New(fraudgen.Config{Seed: 1, Users: benchUsers, Merchants: 200, Start: start, Rate: float64(n) / week.Seconds()})
	if err != nil {
		b.Fatal(err)
	}
	states := map[string]*features.State{}
	var ev features.Event
	for i := range n {
		raw := g.Next().AppendJSON(nil)
		if err := src.DecodeJSON(raw, &ev); err != nil {
			b.Fatal(err)
		}
		ev.Offset = int64(i)
		k := ev.Fields[src.Field("user_id")].Str()
		if states[k] == nil {
			states[k] = eng.NewState()
		}
		if _, err := eng.Apply(states[k], &ev); err != nil {
			b.Fatal(err)
		}
	}
	var recs []online.Record
	for k, st := range states {
		recs = append(recs, online.Record{Table: online.TableOf(v), Key: k, Value: online.EncodeState(eng, st, map[int32]int64{0: int64(n)})})
	}
	return defs, recs
}

// benchBodies returns request bodies for lookups of all ten features of
// entities random users each.
func benchBodies(entities int) [][]byte {
	rng := rand.New(rand.NewPCG(1, 2))
	feats := `"user_txn@1:txn_count_1h","user_txn@1:amount_sum_1h","user_txn@1:amount_avg_24h","user_txn@1:amount_max_24h","user_txn@1:amount_min_24h","user_txn@1:amount_std_7d","user_txn@1:txn_count_7d","user_txn@1:merchants_24h","user_txn@1:countries_7d","user_txn@1:last_country"`
	var bodies [][]byte
	for range 1000 {
		var b bytes.Buffer
		fmt.Fprintf(&b, `{"features":[%s],"entities":{"user_id":[`, feats)
		for i := range entities {
			if i > 0 {
				b.WriteByte(',')
			}
			fmt.Fprintf(&b, `"u%06d"`, rng.IntN(benchUsers))
		}
		b.WriteString("]}}")
		bodies = append(bodies, b.Bytes())
	}
	return bodies
}

// BenchmarkServe drives serve's HTTP API over TCP with a Go load generator
// on the same machine: for one entity and for 100 entities (ten features
// each), on Pebble and on Redis, and, as the ceiling, a trivial echo
// handler. Each runs a closed loop (loadConns connections, as fast as they
// go) for the maximum throughput, then an open loop at half of it for
// latency at a sustainable load; first, one client alone gives the latency
// of an idle server.
func BenchmarkServe(b *testing.B) {
	defs, recs := benchRecords(b)
	one, hundred := benchBodies(1), benchBodies(100)

	b.Run("ceiling=echo", func(b *testing.B) { load(b, echoHandler(0, 0), one) })
	// The same handler made as costly as a lookup, doing nothing useful:
	// how far this machine's latency at half load depends on the CPU a
	// request takes, whatever it does (docs/BENCHMARKS.md, Serve).
	for _, busy := range []time.Duration{5 * time.Microsecond, 10 * time.Microsecond, 15 * time.Microsecond} {
		b.Run(fmt.Sprintf("ceiling=echo-busy-%v", busy), func(b *testing.B) { load(b, echoHandler(busy, 1350), one) })
	}

	pebbleStore, _ := startPebble(b, online.TableOf(defs.View("user_txn", 1)), recs)
	stores := map[string]online.Store{"pebble": pebbleStore, "redis": benchRedis(b, recs, true), "redis-uncached": benchRedis(b, recs, false)}
	// The stores' own ceilings: one record read, through the same Store
	// the server uses, with no HTTP, decoding or evaluation.
	for _, name := range []string{"pebble", "redis-uncached"} {
		b.Run("ceiling="+name+"-get", func(b *testing.B) {
			rng := rand.New(rand.NewPCG(3, 4))
			for b.Loop() {
				r := recs[rng.IntN(len(recs))]
				if err := stores[name].Get(context.Background(), r.Table, []string{r.Key}, func(int, []byte) error { return nil }); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "gets/s")
		})
	}
	for _, name := range []string{"pebble", "redis", "redis-uncached"} {
		srv, err := serve.New(serve.Config{Definitions: defs, Store: stores[name]})
		if err != nil {
			b.Fatal(err)
		}
		b.Run("store="+name+"/entities=1", func(b *testing.B) { load(b, srv, one) })
		b.Run("store="+name+"/entities=100", func(b *testing.B) { load(b, srv, hundred) })
	}
}

// echoHandler is a trivial handler of lookups: it reads the body, spins
// for busy, and answers a constant JSON, padded to size bytes if shorter.
func echoHandler(busy time.Duration, size int) http.Handler {
	resp := []byte(`{"metadata":{"feature_names":["user_id"]},"results":[]}`)
	if pad := size - len(resp) - len(`,"pad":""`); pad > 0 {
		resp = slices.Concat(resp[:len(resp)-1], []byte(`,"pad":"`), bytes.Repeat([]byte("x"), pad), []byte(`"}`))
	}
	e := echo.New()
	e.POST("/get-online-features", func(c echo.Context) error {
		io.Copy(io.Discard, c.Request().Body)
		for start := time.Now(); time.Since(start) < busy; {
		}
		return c.Blob(http.StatusOK, echo.MIMEApplicationJSON, resp)
	})
	return e
}

// startPebble returns a running Pebble replica of table, whose changelog
// holds recs once it returns, and a function that produces more records to
// the changelog.
func startPebble(tb testing.TB, table online.Table, recs []online.Record) (online.Store, func(...online.Record)) {
	c, err := kfake.NewCluster(kfake.NumBrokers(1))
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(c.Close)
	brokers := c.ListenAddrs()
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...))
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(cl.Close)
	if _, err := kadm.NewClient(cl).CreateTopic(context.Background(), 4, -1, nil, online.ChangelogTopic("quiver", table)); err != nil {
		tb.Fatal(err)
	}
	produce := func(recs ...online.Record) {
		var rs []*kgo.Record
		for _, r := range recs {
			rs = append(rs, &kgo.Record{Topic: online.ChangelogTopic("quiver", table), Key: []byte(r.Key), Value: r.Value})
		}
		if err := cl.ProduceSync(context.Background(), rs...).FirstErr(); err != nil {
			tb.Error(err)
		}
	}
	produce(recs...)
	r, err := pebble.Open(pebble.Config{Brokers: brokers, Tables: []online.Table{table}, Dir: tb.TempDir()})
	if err != nil {
		tb.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { r.Run(ctx); close(done) }()
	tb.Cleanup(func() { cancel(); <-done; r.Close() })
	for r.Ready(ctx) != nil {
		time.Sleep(10 * time.Millisecond)
	}
	return r, produce
}

// benchRedis writes recs to a fresh redis-server and returns a store
// reading it, with client-side caching as serve's default, or without.
func benchRedis(b *testing.B, recs []online.Record, cached bool) online.Store {
	opts := &goredis.UniversalOptions{Addrs: []string{ingesttest.StartRedis(b)}, PoolSize: 64}
	if cached {
		redis.CacheOptions(opts, 256<<20)
	}
	client := goredis.NewUniversalClient(opts)
	pipe := client.Pipeline()
	for _, r := range recs {
		pipe.Set(context.Background(), online.RedisKey("quiver", r.Table, r.Key), r.Value, 0)
	}
	if _, err := pipe.Exec(context.Background()); err != nil {
		b.Fatal(err)
	}
	var tables []online.Table
	for _, r := range recs {
		if !slices.Contains(tables, r.Table) {
			tables = append(tables, r.Table)
		}
	}
	ingesttest.MarkSeeded(b, client, "quiver", tables...)
	s := redis.New(client, "quiver", tables)
	b.Cleanup(func() { s.Close() })
	return s
}

// load serves h on a TCP port and measures it; see BenchmarkServe.
func load(b *testing.B, h http.Handler, bodies [][]byte) {
	addr := listen(b, h)
	reqs := requests(addr, "/get-online-features", bodies)
	check(b, addr, reqs[0])
	b.ResetTimer()
	_, idle := closedLoop(b, addr, reqs, 1, time.Second)
	max, closed := closedLoop(b, addr, reqs, loadConns, loadFor)
	half := openLoop(b, addr, reqs, max/2)
	b.StopTimer()
	b.ReportMetric(ms(idle, 0.50), "one-client-p50-ms")
	b.ReportMetric(ms(idle, 0.99), "one-client-p99-ms")
	b.ReportMetric(max, "req/s")
	b.ReportMetric(ms(closed, 0.50), "p50-ms")
	b.ReportMetric(ms(closed, 0.99), "p99-ms")
	b.ReportMetric(ms(half, 0.50), "half-load-p50-ms")
	b.ReportMetric(ms(half, 0.99), "half-load-p99-ms")
	b.ReportMetric(0, "ns/op")
}

// listen serves h on a TCP port of localhost until the benchmark ends and
// returns its address.
func listen(b *testing.B, h http.Handler) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	srv := &http.Server{Handler: h}
	go srv.Serve(ln)
	b.Cleanup(func() { srv.Close() })
	return ln.Addr().String()
}

// requests returns the raw HTTP/1.1 requests that POST each body to path.
func requests[T string | []byte](addr, path string, bodies []T) [][]byte {
	reqs := make([][]byte, len(bodies))
	for i, body := range bodies {
		reqs[i] = fmt.Appendf(nil, "POST %s HTTP/1.1\r\nHost: %s\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s", path, addr, len(body), body)
	}
	return reqs
}

// check sends req once: a benchmark of errors measures nothing.
func check(b *testing.B, addr string, req []byte) {
	c := dial(b, addr)
	defer c.Close()
	if status, err := c.do(req); err != nil || status != http.StatusOK {
		b.Fatalf("status %d, %v", status, err)
	}
}

// conn is a minimal HTTP/1.1 keep-alive client connection: the load
// generator shares the machine with the server, so it must cost little.
type conn struct {
	net.Conn
	r *bufio.Reader
}

func dial(b *testing.B, addr string) *conn {
	c, err := net.Dial("tcp", addr)
	if err != nil {
		b.Fatal(err)
	}
	return &conn{Conn: c, r: bufio.NewReaderSize(c, 64<<10)}
}

// do sends a request and reads the whole response; it returns the status.
func (c *conn) do(req []byte) (int, error) {
	if _, err := c.Write(req); err != nil {
		return 0, err
	}
	status, length := 0, -1
	for {
		line, err := c.r.ReadSlice('\n')
		if err != nil {
			return 0, err
		}
		if len(line) <= 2 {
			break
		}
		switch {
		case status == 0:
			if len(line) < 12 {
				return 0, fmt.Errorf("bad status line %q", line)
			}
			status, _ = strconv.Atoi(string(line[9:12]))
		case len(line) > 16 && strings.EqualFold(string(line[:15]), "Content-Length:"):
			length, _ = strconv.Atoi(strings.TrimSpace(string(line[15:])))
		}
	}
	if length < 0 {
		return 0, errors.New("no Content-Length")
	}
	_, err := c.r.Discard(length)
	return status, err
}

// closedLoop runs conns connections, each sending requests back to back,
// for d; it returns requests per second and their latencies.
func closedLoop(b *testing.B, addr string, reqs [][]byte, conns int, d time.Duration) (float64, []time.Duration) {
	var mu sync.Mutex
	var all []time.Duration
	var failed atomic.Int64
	deadline := time.Now().Add(d)
	start := time.Now()
	var wg sync.WaitGroup
	for n := range conns {
		c := dial(b, addr)
		defer c.Close()
		wg.Go(func() {
			var lat []time.Duration
			for i := n; time.Now().Before(deadline); i += conns {
				t := time.Now()
				if status, err := c.do(reqs[i%len(reqs)]); err != nil || status != http.StatusOK {
					failed.Add(1)
					return
				}
				lat = append(lat, time.Since(t))
			}
			mu.Lock()
			all = append(all, lat...)
			mu.Unlock()
		})
	}
	wg.Wait()
	if n := failed.Load(); n > 0 {
		b.Fatalf("%d requests failed", n)
	}
	return float64(len(all)) / time.Since(start).Seconds(), all
}

// openLoop sends rate requests per second for loadFor over loadConns
// connections, each request due at its scheduled time whatever the others
// do, and measures it from that time: a stall shows in the latencies (as
// requests queue for a connection) instead of slowing the load down.
func openLoop(b *testing.B, addr string, reqs [][]byte, rate float64) []time.Duration {
	n := int(rate * loadFor.Seconds())
	interval := time.Duration(float64(time.Second) / rate)
	lat := make([]time.Duration, n)
	var failed atomic.Int64
	work := make(chan int, n)
	start := time.Now()
	var wg sync.WaitGroup
	for range loadConns {
		c := dial(b, addr)
		defer c.Close()
		wg.Go(func() {
			for i := range work {
				due := start.Add(time.Duration(i) * interval)
				if status, err := c.do(reqs[i%len(reqs)]); err != nil || status != http.StatusOK {
					failed.Add(1)
					return
				}
				lat[i] = time.Since(due)
			}
		})
	}
	pace(start, interval, n, work)
	wg.Wait()
	if f := failed.Load(); f > 0 {
		b.Fatalf("%d requests failed", f)
	}
	return lat
}

func ms(lat []time.Duration, q float64) float64 {
	s := slices.Clone(lat)
	slices.Sort(s)
	return float64(s[int(q*float64(len(s)-1))]) / 1e6
}

// BenchmarkHiccup measures the machine, not serve: one goroutine per core
// does nothing but read the clock, so a gap between two readings is time
// its thread lost the core (to the kernel, the hypervisor or another
// process). No request can be answered faster than such a gap allows; see
// docs/BENCHMARKS.md on the half-load p99.
func BenchmarkHiccup(b *testing.B) {
	thresholds := []time.Duration{time.Millisecond, 2 * time.Millisecond, 4 * time.Millisecond}
	var mu sync.Mutex
	over := make([]int, len(thresholds))
	var worst time.Duration
	for b.Loop() {
		var wg sync.WaitGroup
		for range runtime.GOMAXPROCS(0) {
			wg.Go(func() {
				n := make([]int, len(thresholds))
				var longest time.Duration
				last := time.Now()
				for end := last.Add(time.Second); last.Before(end); {
					now := time.Now()
					gap := now.Sub(last)
					for i, t := range thresholds {
						if gap > t {
							n[i]++
						}
					}
					longest, last = max(longest, gap), now
				}
				mu.Lock()
				defer mu.Unlock()
				for i := range n {
					over[i] += n[i]
				}
				worst = max(worst, longest)
			})
		}
		wg.Wait()
	}
	seconds := float64(b.N * runtime.GOMAXPROCS(0)) // core-seconds watched
	for i, t := range thresholds {
		b.ReportMetric(float64(over[i])/seconds, fmt.Sprintf("gaps-over-%dms/core-s", t/time.Millisecond))
	}
	b.ReportMetric(float64(worst)/1e6, "worst-gap-ms")
	b.ReportMetric(0, "ns/op")
}
