package batch_test

import (
	"context"
	"errors"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/quiver-ml/quiver/model/batch"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// double is a model of 2 inputs and 1 output: x0*2 + x1.
func double(_ context.Context, in []float32, rows int, out []float32) error {
	for r := range rows {
		out[r] = in[2*r]*2 + in[2*r+1]
	}
	return nil
}

// Many callers at once: every caller gets its own rows' outputs, no batch
// exceeds the limit, and rows from different callers share batches.
func TestConcurrentCallers(t *testing.T) {
	var maxRows, calls, rowsSeen atomic.Int64
	b, err := batch.New(batch.Config{Inputs: 2, Outputs: 1, MaxBatchSize: 16, MaxQueueDelay: time.Millisecond, QueueCapacity: 4096},
		func(ctx context.Context, in []float32, rows int, out []float32) error {
			calls.Add(1)
			rowsSeen.Add(int64(rows))
			for {
				m := maxRows.Load()
				if int64(rows) <= m || maxRows.CompareAndSwap(m, int64(rows)) {
					break
				}
			}
			return double(ctx, in, rows, out)
		})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	var wg sync.WaitGroup
	for c := range 40 {
		wg.Go(func() {
			rng := rand.New(rand.NewPCG(uint64(c), 1))
			for range 100 {
				rows := 1 + rng.IntN(20) // some above the batch size: split
				in := make([]float32, 2*rows)
				for i := range in {
					in[i] = float32(rng.IntN(1000))
				}
				out, err := b.Do(context.Background(), in, rows)
				if err != nil {
					t.Error(err)
					return
				}
				for r := range rows {
					if want := in[2*r]*2 + in[2*r+1]; out[r] != want {
						t.Errorf("caller %d row %d: %v, want %v", c, r, out[r], want)
						return
					}
				}
			}
		})
	}
	wg.Wait()
	if maxRows.Load() > 16 {
		t.Errorf("a batch of %d rows, limit 16", maxRows.Load())
	}
	t.Logf("%d rows in %d calls: %.1f rows per call", rowsSeen.Load(), calls.Load(), float64(rowsSeen.Load())/float64(calls.Load()))
	if float64(rowsSeen.Load())/float64(calls.Load()) < 2 {
		t.Errorf("rows were not batched: %.1f per call", float64(rowsSeen.Load())/float64(calls.Load()))
	}
}

// blocked is a model that waits for release, and records every row it saw
// by its first input.
type blocked struct {
	release chan struct{}
	started chan struct{}
	mu      sync.Mutex
	seen    map[float32]bool
}

func newBlocked() *blocked {
	return &blocked{release: make(chan struct{}), started: make(chan struct{}, 100), seen: map[float32]bool{}}
}

func (m *blocked) fn(ctx context.Context, in []float32, rows int, out []float32) error {
	m.started <- struct{}{}
	<-m.release
	m.mu.Lock()
	for r := range rows {
		m.seen[in[2*r]] = true
	}
	m.mu.Unlock()
	return double(ctx, in, rows, out)
}

// While every worker is busy, the next batch keeps taking requests past
// its queueing delay, up to its size, and goes out when a worker is free.
func TestBatchGrowsWhileWorkersAreBusy(t *testing.T) {
	m := newBlocked()
	var mu sync.Mutex
	var sizes []int
	b, err := batch.New(batch.Config{Inputs: 2, Outputs: 1, MaxBatchSize: 8, MaxQueueDelay: time.Millisecond},
		func(ctx context.Context, in []float32, rows int, out []float32) error {
			mu.Lock()
			sizes = append(sizes, rows)
			mu.Unlock()
			return m.fn(ctx, in, rows, out)
		})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	var wg sync.WaitGroup
	wg.Go(func() { b.Do(context.Background(), []float32{0, 0}, 1) })
	<-m.started // the worker is busy while ten more arrive, over 20 queueing delays
	for i := range 10 {
		wg.Go(func() { b.Do(context.Background(), []float32{float32(1 + i), 0}, 1) })
		time.Sleep(2 * time.Millisecond)
	}
	close(m.release)
	wg.Wait()
	// The last two may come late on a busy machine, in batches of their own.
	total := 0
	for _, n := range sizes {
		total += n
	}
	if len(sizes) < 3 || sizes[0] != 1 || sizes[1] != 8 || total != 11 {
		t.Errorf("batch sizes %v, want [1 8 2] (or [1 8 1 1])", sizes)
	}
}

// A full queue refuses at once.
func TestQueueFull(t *testing.T) {
	m := newBlocked()
	b, err := batch.New(batch.Config{Inputs: 2, Outputs: 1, MaxBatchSize: 1, QueueCapacity: 2}, m.fn)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	var wg sync.WaitGroup
	wg.Go(func() { b.Do(context.Background(), []float32{1, 0}, 1) })
	<-m.started // computing; the collector holds the next, the queue the two after
	for i := range 3 {
		wg.Go(func() { b.Do(context.Background(), []float32{float32(10 + i), 0}, 1) })
	}
	// Until the three are queued, a probe is queued too, and dropped when
	// its short deadline passes.
	var err2 error
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
		start := time.Now()
		_, err2 = b.Do(ctx, []float32{99, 0}, 1)
		cancel()
		if errors.Is(err2, batch.ErrQueueFull) {
			if time.Since(start) > 10*time.Millisecond {
				t.Errorf("a full queue took %v to refuse", time.Since(start))
			}
			break
		}
	}
	close(m.release)
	wg.Wait()
	if !errors.Is(err2, batch.ErrQueueFull) {
		t.Fatalf("got %v, want ErrQueueFull", err2)
	}
}

// A request of more batches than the queue holds waits for room for the
// batches after its first, and gets every row's output.
func TestLargeRequestWaitsForRoom(t *testing.T) {
	m := newBlocked()
	b, err := batch.New(batch.Config{Inputs: 2, Outputs: 1, MaxBatchSize: 1, QueueCapacity: 1}, m.fn)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	in := make([]float32, 2*6)
	for r := range 6 {
		in[2*r] = float32(r)
	}
	type result struct {
		out []float32
		err error
	}
	done := make(chan result, 1)
	go func() {
		out, err := b.Do(context.Background(), in, 6)
		done <- result{out, err}
	}()
	<-m.started // computing the first row; the queue fills behind it
	time.Sleep(20 * time.Millisecond)
	close(m.release)
	res := <-done
	if res.err != nil {
		t.Fatal(res.err)
	}
	for r, x := range res.out {
		if x != float32(2*r) {
			t.Fatalf("row %d: %v, want %d", r, x, 2*r)
		}
	}
}

// A request whose context ends while it waits is never computed.
func TestCancelledWhileQueued(t *testing.T) {
	m := newBlocked()
	b, err := batch.New(batch.Config{Inputs: 2, Outputs: 1, MaxBatchSize: 1}, m.fn)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	var wg sync.WaitGroup
	wg.Go(func() { b.Do(context.Background(), []float32{1, 0}, 1) })
	<-m.started
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() {
		_, err := b.Do(ctx, []float32{42, 0}, 1)
		errc <- err
	}()
	time.Sleep(20 * time.Millisecond) // queued behind the blocked call
	cancel()
	if err := <-errc; !errors.Is(err, context.Canceled) {
		t.Fatalf("got %v, want context.Canceled", err)
	}
	close(m.release)
	wg.Wait()
	if _, err := b.Do(context.Background(), []float32{7, 0}, 1); err != nil { // after it: the batcher goes on
		t.Fatal(err)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.seen[42] {
		t.Error("the cancelled request was computed")
	}
}

func TestClose(t *testing.T) {
	m := newBlocked()
	b, err := batch.New(batch.Config{Inputs: 2, Outputs: 1, MaxBatchSize: 1}, m.fn)
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	errs := make(chan error, 3)
	for i := range 3 {
		wg.Go(func() {
			_, err := b.Do(context.Background(), []float32{float32(i), 0}, 1)
			errs <- err
		})
	}
	<-m.started
	go func() { time.Sleep(20 * time.Millisecond); close(m.release) }()
	b.Close()
	wg.Wait()
	close(errs)
	var ok, closed int
	for err := range errs {
		switch {
		case err == nil:
			ok++
		case errors.Is(err, batch.ErrClosed):
			closed++
		default:
			t.Errorf("unexpected %v", err)
		}
	}
	if ok < 1 || ok+closed != 3 {
		t.Errorf("%d computed and %d closed, want the one in flight computed and the others closed", ok, closed)
	}
	if _, err := b.Do(context.Background(), []float32{1, 0}, 1); !errors.Is(err, batch.ErrClosed) {
		t.Errorf("Do after Close: %v", err)
	}
}

func TestBadInput(t *testing.T) {
	if _, err := batch.New(batch.Config{}, double); err == nil {
		t.Error("no inputs and outputs: want an error")
	}
	if _, err := batch.New(batch.Config{Inputs: 2, Outputs: 1, QueueCapacity: batch.MaxQueueCapacity + 1}, double); err == nil {
		t.Errorf("a queue capacity above %d: want an error", batch.MaxQueueCapacity)
	}
	b, err := batch.New(batch.Config{Inputs: 2, Outputs: 1}, double)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	if _, err := b.Do(context.Background(), []float32{1, 2, 3}, 1); err == nil {
		t.Error("3 values for 1 row of 2: want an error")
	}
}
