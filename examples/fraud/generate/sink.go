package main

import (
	"bufio"
	"context"
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/quiver-ml/quiver/examples/fraud/fraudgen"
)

// Bounds of the Kafka producer: how long to try reaching the brokers at the
// start, and how long Close waits for what is buffered. There is no record
// delivery timeout (kgo.RecordDeliveryTimeout): kgo measures it from the
// record's timestamp, which is the event time, often far in the past.
const (
	pingTimeout  = 15 * time.Second
	flushTimeout = 15 * time.Second
)

// sink is where events go.
type sink interface {
	// Write hands over one event; it may buffer it.
	Write(ctx context.Context, ev fraudgen.Event) error
	// Flush pushes buffered events on without waiting for acknowledgement;
	// the generator calls it before idling.
	Flush() error
	// Close writes out what is buffered, waiting a bounded time, and returns
	// how many events were delivered.
	Close() (delivered int64, err error)
	// String names the destination, for logs.
	String() string
}

// lineSink writes JSON lines.
type lineSink struct {
	w *bufio.Writer
	n int64
}

func newLineSink(w io.Writer) *lineSink { return &lineSink{w: bufio.NewWriterSize(w, 64<<10)} }

func (s *lineSink) String() string { return "stdout" }

func (s *lineSink) Write(_ context.Context, ev fraudgen.Event) error {
	b := ev.AppendJSON(s.w.AvailableBuffer())
	if _, err := s.w.Write(append(b, '\n')); err != nil {
		return fmt.Errorf("write event: %w", err)
	}
	s.n++
	return nil
}

func (s *lineSink) Flush() error {
	if err := s.w.Flush(); err != nil {
		return fmt.Errorf("write events: %w", err)
	}
	return nil
}

func (s *lineSink) Close() (int64, error) {
	if err := s.Flush(); err != nil {
		return 0, err
	}
	return s.n, nil
}

// kafkaSink produces each event as a record keyed by user_id, with the JSON
// as value and the event time as timestamp.
type kafkaSink struct {
	cl      *kgo.Client
	topic   string
	written int64
	acked   atomic.Int64

	// delivery is the records' context: canceling it (abandon) fails what is
	// still buffered. The watcher abandons flushTimeout after the run's
	// context is done, so that a broker gone away cannot hold up the exit
	// even while Write waits for buffer space.
	delivery context.Context
	abandon  context.CancelFunc
	closing  chan struct{}
	watcher  sync.WaitGroup

	mu       sync.Mutex
	failed   int64
	firstErr error
}

// newKafkaSink connects to the brokers with the client's options of TLS
// and SASL, failing if none answers within pingTimeout.
func newKafkaSink(ctx context.Context, brokers []string, topic string, security ...kgo.Opt) (*kafkaSink, error) {
	cl, err := kgo.NewClient(append([]kgo.Opt{
		kgo.SeedBrokers(brokers...),
		kgo.DefaultProduceTopic(topic),
		kgo.AllowAutoTopicCreation(), // if the broker allows it
	}, security...)...)
	if err != nil {
		return nil, fmt.Errorf("create Kafka client: %w", err)
	}
	pingCtx, cancel := context.WithTimeout(ctx, pingTimeout)
	defer cancel()
	if err := cl.Ping(pingCtx); err != nil {
		cl.Close()
		return nil, fmt.Errorf("reach brokers %v: %w", brokers, err)
	}
	s := &kafkaSink{cl: cl, topic: topic, closing: make(chan struct{})}
	s.delivery, s.abandon = context.WithCancel(context.WithoutCancel(ctx))
	s.watcher.Go(func() {
		select {
		case <-ctx.Done():
		case <-s.closing:
			return
		}
		t := time.NewTimer(flushTimeout)
		defer t.Stop()
		select {
		case <-t.C:
			s.abandon()
		case <-s.closing:
		}
	})
	return s, nil
}

func (s *kafkaSink) String() string { return "kafka topic " + s.topic }

func (s *kafkaSink) Write(_ context.Context, ev fraudgen.Event) error {
	if err := s.err(); err != nil {
		return err
	}
	s.written++
	r := &kgo.Record{Key: ev.Key(), Value: ev.JSON(), Timestamp: ev.Time}
	s.cl.Produce(s.delivery, r, s.promise)
	return nil
}

func (s *kafkaSink) promise(_ *kgo.Record, err error) {
	if err == nil {
		s.acked.Add(1)
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.failed++
	if s.firstErr == nil {
		s.firstErr = err
	}
}

// err reports failed deliveries.
func (s *kafkaSink) err() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.failed == 0 {
		return nil
	}
	return fmt.Errorf("produce to %s: %d events not delivered: %w", s.topic, s.failed, s.firstErr)
}

// Flush is a no-op: the client sends batches on its own.
func (s *kafkaSink) Flush() error { return nil }

func (s *kafkaSink) Close() (int64, error) {
	ctx, cancel := context.WithTimeout(s.delivery, flushTimeout)
	defer cancel()
	flushErr := s.cl.Flush(ctx)
	if flushErr != nil {
		flushErr = fmt.Errorf("flush: %d of %d events unacknowledged: %w",
			s.written-s.acked.Load(), s.written, flushErr)
	}
	close(s.closing)
	s.watcher.Wait()
	s.abandon() // fails what is left
	s.cl.Close()
	if flushErr != nil {
		return s.acked.Load(), flushErr
	}
	return s.acked.Load(), s.err()
}

var (
	_ sink = (*kafkaSink)(nil)
	_ sink = (*lineSink)(nil)
)

// labelSink passes events on to another sink and writes each one's label to
// a CSV file: user_id, merchant_id, ts, amount, is_fraud (1 for a
// transaction of a suspicious burst). The file is a spine for backfill
// dataset, from which a fraud model is trained.
type labelSink struct {
	sink
	f *os.File
	w *csv.Writer
}

func newLabelSink(next sink, path string) (*labelSink, error) {
	f, err := os.Create(path)
	if err != nil {
		return nil, fmt.Errorf("--labels: %w", err)
	}
	w := csv.NewWriter(f)
	w.Write([]string{"user_id", "merchant_id", "ts", "amount", "is_fraud"})
	return &labelSink{sink: next, f: f, w: w}, nil
}

func (s *labelSink) Write(ctx context.Context, ev fraudgen.Event) error {
	if err := s.sink.Write(ctx, ev); err != nil {
		return err
	}
	label := "0"
	if ev.Suspicious {
		label = "1"
	}
	return s.w.Write([]string{ev.UserID, ev.MerchantID, ev.Time.Format(time.RFC3339Nano), strconv.FormatFloat(ev.Amount, 'f', 2, 64), label})
}

// Flush also writes the labels out, for a reader following the file.
func (s *labelSink) Flush() error {
	s.w.Flush()
	return errors.Join(s.w.Error(), s.sink.Flush())
}

func (s *labelSink) Close() (int64, error) {
	n, err := s.sink.Close()
	s.w.Flush()
	return n, errors.Join(err, s.w.Error(), s.f.Close())
}
