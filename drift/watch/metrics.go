package watch

import (
	"strconv"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/quiver-ml/quiver/drift"
)

type metrics struct {
	score       *prometheus.GaugeVec
	windows     *prometheus.CounterVec
	breaches    *prometheus.CounterVec
	predictions *prometheus.CounterVec
	events      *prometheus.CounterVec
	suppressed  *prometheus.CounterVec
	skipped     *prometheus.CounterVec
	webhook     *prometheus.CounterVec
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		score: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "quiver_drift_score",
			Help: "Drift of a watched column in the last evaluated window of a model version: metric psi or js."},
			[]string{"model", "version", "feature", "metric"}),
		windows: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "quiver_drift_windows_evaluated_total",
			Help: "Windows of predictions scored against the reference profile."}, []string{"model", "version"}),
		breaches: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "quiver_drift_windows_breached_total",
			Help: "Evaluated windows that breached the drift rule."}, []string{"model", "version"}),
		predictions: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "quiver_drift_predictions_total",
			Help: "Predictions counted by the drift detectors."}, []string{"model", "version"}),
		events: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "quiver_drift_events_total",
			Help: "Retraining events sent for sustained breaches."}, []string{"model"}),
		suppressed: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "quiver_drift_events_suppressed_total",
			Help: "Sustained breaches that sent nothing: the model was cooling down from its last event."}, []string{"model"}),
		skipped: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "quiver_drift_predictions_skipped_total",
			Help: "Records of the prediction log not counted, by reason: invalid, time (more than a minute from the record's timestamp) or unwatched (a version not watched)."}, []string{"reason"}),
		webhook: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "quiver_drift_webhook_deliveries_total",
			Help: "Webhook deliveries of retraining events, by result: ok, failed (after retries) or dropped (queue full)."}, []string{"result"}),
	}
	// At zero from the start, so that increase() sees the first.
	for _, r := range []string{"ok", "failed", "dropped"} {
		m.webhook.WithLabelValues(r)
	}
	for _, r := range []string{"invalid", "time", "unwatched"} {
		m.skipped.WithLabelValues(r)
	}
	if reg != nil {
		for _, c := range []prometheus.Collector{m.score, m.windows, m.breaches, m.predictions, m.events, m.suppressed, m.skipped, m.webhook} {
			if err := reg.Register(c); err != nil {
				return nil, err
			}
		}
	}
	return m, nil
}

// watching starts a watched version's counters at zero, so that alerts on
// their increase see the first one.
func (m *metrics) watching(v version) {
	ver := strconv.Itoa(v.version)
	m.windows.WithLabelValues(v.model, ver)
	m.breaches.WithLabelValues(v.model, ver)
	m.events.WithLabelValues(v.model)
	m.suppressed.WithLabelValues(v.model)
}

// observe records an evaluated window.
func (m *metrics) observe(v version, ev *drift.Evaluation) {
	ver := strconv.Itoa(v.version)
	m.windows.WithLabelValues(v.model, ver).Inc()
	if ev.Breach {
		m.breaches.WithLabelValues(v.model, ver).Inc()
	}
	for _, s := range ev.Scores {
		m.score.WithLabelValues(v.model, ver, s.Feature, "psi").Set(s.PSI)
		m.score.WithLabelValues(v.model, ver, s.Feature, "js").Set(s.JS)
	}
}

// forget drops the series of a version no longer watched here: idle, or
// watched by another instance now. Its counters start again at zero if it
// comes back, which rate and increase read as a reset.
func (m *metrics) forget(v version) {
	ver := strconv.Itoa(v.version)
	m.score.DeletePartialMatch(prometheus.Labels{"model": v.model, "version": ver})
	m.windows.DeleteLabelValues(v.model, ver)
	m.breaches.DeleteLabelValues(v.model, ver)
	m.predictions.DeleteLabelValues(v.model, ver)
}
