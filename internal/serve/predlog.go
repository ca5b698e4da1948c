package serve

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kgo"
	"golang.org/x/time/rate"

	"github.com/quiver-ml/quiver/drift"
	"github.com/quiver-ml/quiver/model"
)

// PredictionLog produces every prediction to <prefix>.predictions, keyed by
// model so that each model's predictions share a partition (and one drift
// detector owns them). Producing never waits: past the client's buffer a
// record is dropped and counted, so a slow broker never slows predictions.
type PredictionLog struct {
	client  *kgo.Client // with MaxBufferedRecords set: TryProduce fails fast
	topic   string
	log     *slog.Logger
	dropped prometheus.Counter
	failed  prometheus.Counter
	warn    rate.Sometimes // a failure's warning, at most every minute
}

// NewPredictionLog logs to topic through client, which should bound its
// buffer (kgo.MaxBufferedRecords) and the time a record may wait for the
// broker (kgo.RecordDeliveryTimeout), and is the caller's to close.
func NewPredictionLog(client *kgo.Client, topic string, log *slog.Logger, reg prometheus.Registerer) (*PredictionLog, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	l := &PredictionLog{client: client, topic: topic, log: log, warn: rate.Sometimes{First: 1, Interval: time.Minute},
		dropped: prometheus.NewCounter(prometheus.CounterOpts{Name: "quiver_serve_prediction_log_dropped_total",
			Help: "Predictions not logged because the producer's buffer was full."}),
		failed: prometheus.NewCounter(prometheus.CounterOpts{Name: "quiver_serve_prediction_log_failed_total",
			Help: "Predictions the broker did not accept."}),
	}
	if reg != nil {
		for _, c := range []prometheus.Collector{l.dropped, l.failed} {
			if err := reg.Register(c); err != nil {
				return nil, err
			}
		}
	}
	return l, nil
}

// add logs rows predictions of a version.
func (l *PredictionLog) add(v *model.Version, reqID string, shadow bool, in, out []float32, rows int) {
	if l == nil {
		return
	}
	now := time.Now().UTC()
	n, k := len(in)/rows, len(out)/rows
	for r := range rows {
		b, err := json.Marshal(drift.Prediction{RequestID: reqID, Row: r, Model: v.Model, Version: v.Version, Shadow: shadow,
			Inputs: drift.Numbers(in[r*n : (r+1)*n]), Output: drift.Numbers(out[r*k : (r+1)*k]), Time: now})
		if err != nil {
			l.log.Error("encode a prediction", "err", err)
			continue
		}
		l.client.TryProduce(context.Background(), &kgo.Record{Topic: l.topic, Key: []byte(v.Model), Value: b}, func(_ *kgo.Record, err error) {
			switch {
			case errors.Is(err, kgo.ErrMaxBuffered):
				l.dropped.Inc()
			case err != nil:
				l.failed.Inc()
			default:
				return
			}
			l.warn.Do(func() { l.log.Warn("predictions not logged", "topic", l.topic, "err", err) })
		})
	}
}

// Flush waits until every prediction logged so far is delivered, or
// failed, or ctx ends: a stopping serve calls it once its last request is
// answered.
func (l *PredictionLog) Flush(ctx context.Context) error {
	if l == nil {
		return nil
	}
	return l.client.Flush(ctx)
}
