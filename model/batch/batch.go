// Package batch is the dynamic batcher in front of a model: rows from
// concurrent requests are gathered into one model call, up to a batch size
// and a queueing delay, behind a bounded queue.
package batch

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Func computes a batch: rows rows of Config.Inputs values each (row-major)
// into rows rows of Config.Outputs values each.
type Func func(ctx context.Context, in []float32, rows int, out []float32) error

// Errors of Do.
var (
	// ErrQueueFull is returned at once when the queue holds QueueCapacity
	// requests: the caller should answer 503 with Retry-After.
	ErrQueueFull = errors.New("batch: queue full")
	// ErrClosed is returned once the batcher is closed.
	ErrClosed = errors.New("batch: closed")
)

// MaxQueueCapacity bounds Config.QueueCapacity. The queue is allocated
// whole when the batcher starts, and a longer one would hold requests for
// seconds, past their callers' deadlines, where ErrQueueFull's 503 and
// Retry-After serve them better.
const MaxQueueCapacity = 1 << 16

// MaxQueueDelayLimit bounds Config.MaxQueueDelay. A lone request waits the
// whole delay, idle workers or not; a second is already far past what a
// batch gains, and a longer delay is more likely a unit mistaken.
const MaxQueueDelayLimit = time.Second

// Config configures a Batcher. Zero fields take their defaults.
type Config struct {
	Inputs, Outputs int           // values per row in and out; required
	MaxBatchSize    int           // rows per model call; default 64
	MaxQueueDelay   time.Duration // how long a batch's first request waits for others if a worker is free; default 2ms, at most MaxQueueDelayLimit
	QueueCapacity   int           // requests waiting at most; default 1,024, at most MaxQueueCapacity
	Workers         int           // model calls at once; default 1
	// Model and Version label the metrics, as they label serve's and
	// drift's.
	Model   string
	Version int
	Metrics *Metrics // shared by the batchers of a process; nil: unregistered ones
}

func (c *Config) ensureDefaults() {
	if c.MaxBatchSize == 0 {
		c.MaxBatchSize = 64
	}
	if c.MaxQueueDelay == 0 {
		c.MaxQueueDelay = 2 * time.Millisecond
	}
	if c.QueueCapacity == 0 {
		c.QueueCapacity = 1024
	}
	if c.Workers == 0 {
		c.Workers = 1
	}
}

// Validate reports every problem at once.
func (c *Config) Validate() error {
	var errs []error
	if c.Inputs <= 0 || c.Outputs <= 0 {
		errs = append(errs, fmt.Errorf("batch: %d inputs and %d outputs per row, want both positive", c.Inputs, c.Outputs))
	}
	if c.MaxBatchSize < 0 || c.QueueCapacity < 0 || c.Workers < 0 || c.MaxQueueDelay < 0 {
		errs = append(errs, errors.New("batch: negative size, capacity, workers or delay"))
	}
	if c.QueueCapacity > MaxQueueCapacity {
		errs = append(errs, fmt.Errorf("batch: queue capacity %d, want at most %d", c.QueueCapacity, MaxQueueCapacity))
	}
	if c.MaxQueueDelay > MaxQueueDelayLimit {
		errs = append(errs, fmt.Errorf("batch: queue delay %v, want at most %v", c.MaxQueueDelay, MaxQueueDelayLimit))
	}
	return errors.Join(errs...)
}

// request is one chunk of a caller's rows, at most MaxBatchSize.
type request struct {
	ctx    context.Context
	in     []float32
	rows   int
	out    []float32 // the caller's, filled in place
	queued time.Time
	done   chan error // buffered: the batcher never blocks on a caller
}

// Batcher gathers requests into batches. It is safe for concurrent use.
type Batcher struct {
	cfg     Config
	fn      Func
	queue   chan *request
	batches chan []*request
	stop    chan struct{}
	closed  chan struct{} // closed when Close has answered every queued request
	wg      sync.WaitGroup
	once    sync.Once
	m       *metrics
}

// New starts a batcher calling fn. Close stops it.
func New(cfg Config, fn Func) (*Batcher, error) {
	cfg.ensureDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if cfg.Metrics == nil {
		cfg.Metrics, _ = NewMetrics(nil) // registers nothing: cannot fail
	}
	m := cfg.Metrics.with(cfg.Model, cfg.Version)
	b := &Batcher{
		cfg: cfg, fn: fn, m: m,
		queue:   make(chan *request, cfg.QueueCapacity),
		batches: make(chan []*request),
		stop:    make(chan struct{}),
		closed:  make(chan struct{}),
	}
	b.wg.Add(1 + cfg.Workers)
	go b.collect()
	for range cfg.Workers {
		go b.work()
	}
	return b, nil
}

// Do computes rows rows of in (row-major, Inputs values each) and returns
// their outputs, row-major. Rows beyond MaxBatchSize go in several batches.
// It fails at once with ErrQueueFull when the queue is full as the request
// comes; once its first batch is queued, the others wait for room, so that
// a request larger than the queue is served too. It fails with the
// context's error if ctx ends first; a request whose context ends while it
// waits is dropped before it is computed.
func (b *Batcher) Do(ctx context.Context, in []float32, rows int) ([]float32, error) {
	if len(in) != rows*b.cfg.Inputs {
		return nil, fmt.Errorf("batch: %d values for %d rows of %d inputs", len(in), rows, b.cfg.Inputs)
	}
	out := make([]float32, rows*b.cfg.Outputs)
	var reqs []*request
	for lo := 0; lo < rows; lo += b.cfg.MaxBatchSize {
		hi := min(rows, lo+b.cfg.MaxBatchSize)
		r := &request{ctx: ctx, in: in[lo*b.cfg.Inputs : hi*b.cfg.Inputs], rows: hi - lo,
			out: out[lo*b.cfg.Outputs : hi*b.cfg.Outputs], queued: time.Now(), done: make(chan error, 1)}
		select {
		case <-b.stop:
			return nil, ErrClosed
		default:
		}
		if len(reqs) == 0 {
			select {
			case b.queue <- r:
			default:
				b.m.rejected.Inc()
				return nil, ErrQueueFull
			}
		} else {
			select {
			case b.queue <- r:
			case <-ctx.Done():
				return nil, ctx.Err() // the queued batches are dropped
			case <-b.stop:
				return nil, ErrClosed
			}
		}
		reqs = append(reqs, r)
	}
	var first error
	for _, r := range reqs {
		select {
		case err := <-r.done:
			first = cmpErr(first, err)
		case <-ctx.Done():
			// The batcher drops it, or finishes it into out, which the
			// caller no longer reads.
			first = cmpErr(first, ctx.Err())
		case <-b.closed:
			first = cmpErr(first, ErrClosed) // queued after Close drained the queue
		}
	}
	if first != nil {
		return nil, first
	}
	return out, nil
}

func cmpErr(a, b error) error {
	if a != nil {
		return a
	}
	return b
}

// Close stops the batcher: queued requests fail with ErrClosed, and a batch
// being computed finishes. It waits for the goroutines to end.
func (b *Batcher) Close() {
	b.once.Do(func() {
		close(b.stop)
		b.wg.Wait()
		for {
			select {
			case r := <-b.queue:
				r.done <- ErrClosed
			default:
				close(b.closed)
				return
			}
		}
	})
	<-b.closed
}

// collect gathers requests into batches: a batch starts with the first
// request waiting and goes to a free worker once it is full or
// MaxQueueDelay has passed since it started; until then, and for as long as
// every worker is busy, it takes more.
func (b *Batcher) collect() {
	defer b.wg.Done()
	defer close(b.batches)
	var pending *request // a request that did not fit the last batch
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	for {
		first := pending
		pending = nil
		if first == nil {
			select {
			case first = <-b.queue:
			case <-b.stop:
				return
			}
		}
		batch, rows := []*request{first}, first.rows
		timer.Reset(b.cfg.MaxQueueDelay)
		waited := false
	gather:
		for {
			full := rows >= b.cfg.MaxBatchSize || pending != nil
			var in <-chan *request // nil, and never ready, once full
			if !full {
				in = b.queue
			}
			var out chan<- []*request // nil until the batch may go
			if full || waited {
				out = b.batches
			}
			select {
			case out <- batch:
				break gather
			case r := <-in:
				if rows+r.rows > b.cfg.MaxBatchSize {
					pending = r
					continue
				}
				batch, rows = append(batch, r), rows+r.rows
			case <-timer.C:
				waited = true
			case <-b.stop:
				timer.Stop()
				for _, r := range batch {
					r.done <- ErrClosed
				}
				if pending != nil {
					pending.done <- ErrClosed
				}
				return
			}
		}
		timer.Stop()
	}
}

// work computes batches: the live requests' rows in one call, each caller's
// outputs copied back to it.
func (b *Batcher) work() {
	defer b.wg.Done()
	var in, out []float32
	for batch := range b.batches {
		live := batch[:0]
		rows := 0
		now := time.Now()
		for _, r := range batch {
			if err := r.ctx.Err(); err != nil {
				b.m.dropped.Inc()
				r.done <- err // never computed
				continue
			}
			b.m.queueTime.Observe(now.Sub(r.queued).Seconds())
			live = append(live, r)
			rows += r.rows
		}
		if len(live) == 0 {
			continue
		}
		in = in[:0]
		for _, r := range live {
			in = append(in, r.in...)
		}
		out = append(out[:0], make([]float32, rows*b.cfg.Outputs)...)
		b.m.batchSize.Observe(float64(rows))
		began := time.Now()
		err := b.fn(context.Background(), in, rows, out)
		b.m.compute.Observe(time.Since(began).Seconds())
		off := 0
		for _, r := range live {
			if err == nil {
				copy(r.out, out[off:off+r.rows*b.cfg.Outputs])
			}
			off += r.rows * b.cfg.Outputs
			r.done <- err
		}
	}
}

type metrics struct {
	batchSize, queueTime, compute prometheus.Observer
	rejected, dropped             prometheus.Counter
}

// Metrics are the batchers' metrics, labelled by model and version: created
// once per registry, shared by every batcher (a reloaded model version's
// new batcher takes over its predecessor's series).
type Metrics struct {
	batchSize, queueTime, compute *prometheus.HistogramVec
	rejected, dropped             *prometheus.CounterVec
}

// NewMetrics creates the batcher metrics and registers them with reg (nil:
// none).
func NewMetrics(reg prometheus.Registerer) (*Metrics, error) {
	labels := []string{"model", "version"}
	m := &Metrics{
		batchSize: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "quiver_serve_batch_size_rows", Help: "Rows per model call.",
			Buckets: prometheus.ExponentialBuckets(1, 2, 15)}, labels),
		queueTime: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "quiver_serve_batch_queue_seconds", Help: "Time a request waited before its batch was computed.",
			Buckets: prometheus.ExponentialBuckets(0.0001, 2, 16)}, labels), // to 3.3 s
		compute: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "quiver_serve_batch_compute_seconds", Help: "Time of one model call.",
			Buckets: prometheus.ExponentialBuckets(0.00005, 2, 16)}, labels),
		rejected: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "quiver_serve_batch_rejected_total", Help: "Requests refused because the queue was full."}, labels),
		dropped:  prometheus.NewCounterVec(prometheus.CounterOpts{Name: "quiver_serve_batch_dropped_total", Help: "Requests whose context ended while queued, dropped before compute."}, labels),
	}
	if reg != nil {
		for _, c := range []prometheus.Collector{m.batchSize, m.queueTime, m.compute, m.rejected, m.dropped} {
			if err := reg.Register(c); err != nil {
				return nil, fmt.Errorf("batch metrics: %w", err)
			}
		}
	}
	return m, nil
}

// Delete drops the series of a model version no batcher has any longer
// (the version removed). A batcher still running under it goes on
// unrecorded; one created under it later starts its series again.
func (m *Metrics) Delete(model string, version int) {
	v := strconv.Itoa(version)
	for _, vec := range []*prometheus.MetricVec{m.batchSize.MetricVec, m.queueTime.MetricVec, m.compute.MetricVec, m.rejected.MetricVec, m.dropped.MetricVec} {
		vec.DeleteLabelValues(model, v)
	}
}

func (m *Metrics) with(model string, version int) *metrics {
	v := strconv.Itoa(version)
	return &metrics{m.batchSize.WithLabelValues(model, v), m.queueTime.WithLabelValues(model, v), m.compute.WithLabelValues(model, v),
		m.rejected.WithLabelValues(model, v), m.dropped.WithLabelValues(model, v)}
}
