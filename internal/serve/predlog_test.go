package serve

import (
	"context"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/quiver-ml/quiver/internal/freeport"
	"github.com/quiver-ml/quiver/model"
)

// TestPredictionLogFailures: predictions a broker never takes fail within
// the client's delivery timeout, are counted, and are logged once a minute
// at most, with the cause.
func TestPredictionLogFailures(t *testing.T) {
	addr := "127.0.0.1:" + strconv.Itoa(freeport.Get(t)) // nothing listens there
	cl, err := kgo.NewClient(kgo.SeedBrokers(addr), kgo.MaxBufferedRecords(100), kgo.RecordDeliveryTimeout(time.Second))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	var logs struct {
		sync.Mutex
		strings.Builder
	}
	log := slog.New(slog.NewTextHandler(writerFunc(func(p []byte) (int, error) {
		logs.Lock()
		defer logs.Unlock()
		return logs.Write(p)
	}), nil))
	l, err := NewPredictionLog(cl, "quiver.predictions", log, nil)
	if err != nil {
		t.Fatal(err)
	}
	for range 3 {
		l.add(&model.Version{Model: "fraud", Version: 1}, "req", false, []float32{1, 2}, []float32{0.5}, 1)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := l.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	if failed := testutil.ToFloat64(l.failed); failed != 3 {
		t.Errorf("quiver_serve_prediction_log_failed_total = %v, want 3", failed)
	}
	logs.Lock()
	defer logs.Unlock()
	if got := logs.String(); strings.Count(got, "predictions not logged") != 1 || !strings.Contains(got, "topic=quiver.predictions") {
		t.Errorf("logged:\n%s\nwant one warning naming the topic", got)
	}
}

type writerFunc func([]byte) (int, error)

func (f writerFunc) Write(p []byte) (int, error) { return f(p) }
