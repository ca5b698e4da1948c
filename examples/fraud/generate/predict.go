package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/quiver-ml/quiver/examples/fraud/fraudgen"
)

// predictSink passes events on to another sink and, like a payment service
// asking for a fraud score, posts each one to a model's predict endpoint:
// its user and merchant as entities, its amount as request context. A few
// requests run at a time; an event that finds them all busy is not scored,
// so a slow server never slows the stream.
type predictSink struct {
	sink
	url     string
	client  *http.Client
	queue   chan fraudgen.Event
	wg      sync.WaitGroup
	sent    atomic.Int64
	failed  atomic.Int64
	skipped atomic.Int64
}

const predictWorkers = 8

func newPredictSink(next sink, url string) *predictSink {
	s := &predictSink{sink: next, url: url, client: &http.Client{Timeout: 5 * time.Second},
		queue: make(chan fraudgen.Event, 4*predictWorkers)}
	for range predictWorkers {
		s.wg.Add(1)
		go s.work()
	}
	return s
}

func (s *predictSink) Write(ctx context.Context, ev fraudgen.Event) error {
	if err := s.sink.Write(ctx, ev); err != nil {
		return err
	}
	select {
	case s.queue <- ev:
	default:
		s.skipped.Add(1)
	}
	return nil
}

type predictRequest struct {
	Entities       map[string][]string `json:"entities"`
	RequestContext map[string]float64  `json:"request_context"`
}

func (s *predictSink) work() {
	defer s.wg.Done()
	for ev := range s.queue {
		body, _ := json.Marshal(predictRequest{
			Entities:       map[string][]string{"user_id": {ev.UserID}, "merchant_id": {ev.MerchantID}},
			RequestContext: map[string]float64{"amount": ev.Amount},
		})
		resp, err := s.client.Post(s.url, "application/json", bytes.NewReader(body))
		if err != nil {
			s.failed.Add(1)
			continue
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			s.failed.Add(1)
			continue
		}
		s.sent.Add(1)
	}
}

// Close waits for the requests in flight, then closes the next sink.
func (s *predictSink) Close() (int64, error) {
	close(s.queue)
	s.wg.Wait()
	return s.sink.Close()
}

func (s *predictSink) String() string {
	return fmt.Sprintf("%s, scored by %s", s.sink.String(), s.url)
}

// stats says how the predictions went, for the last log line.
func (s *predictSink) stats() []any {
	return []any{"predictions", s.sent.Load(), "prediction_errors", s.failed.Load(), "unscored", s.skipped.Load()}
}
