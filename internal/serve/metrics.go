package serve

import (
	"math"
	"strconv"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/quiver-ml/quiver/model"
)

type metrics struct {
	requests *prometheus.HistogramVec // by route and code
	lookups  *prometheus.CounterVec   // by view version
	statuses [3]prometheus.Counter    // by status
	cache    [2]prometheus.Counter    // state decodes: [0] decoded, [1] from the cache
	// shadowFailures counts shadow predictions that failed, by model.
	shadowFailures *prometheus.CounterVec
	// predictions counts rows predicted, by model, version and output.
	predictions *prometheus.CounterVec
}

func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{
		requests: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "quiver_serve_request_duration_seconds",
			Help:    "Time to answer an HTTP request, by route and status code.",
			Buckets: []float64{.0001, .00025, .0005, .001, .002, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10},
		}, []string{"route", "code"}),
		lookups: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "quiver_serve_entity_lookups_total",
			Help: "Entities looked up, by view version.",
		}, []string{"view"}),
		shadowFailures: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "quiver_serve_shadow_failures_total",
			Help: "Shadow predictions that failed (their feature service's lookup, or the model), by model; they are not logged.",
		}, []string{"model"}),
		predictions: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "quiver_serve_predictions_total",
			Help: "Rows predicted (shadows included), by model, version and output: number, or null where the model gave NaN or an infinity (an ONNX model given a missing feature, say).",
		}, []string{"model", "version", "output"}),
	}
	statuses := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "quiver_serve_feature_values_total",
		Help: "Feature values returned, by status: PRESENT, NOT_FOUND or OUTSIDE_MAX_AGE.",
	}, []string{"status"})
	for i := range m.statuses {
		m.statuses[i] = statuses.WithLabelValues(statusNames[i])
	}
	decodes := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "quiver_serve_state_decodes_total",
		Help: "Entity states read, by whether they were decoded (miss) or found decoded in the state cache (hit).",
	}, []string{"cache"})
	m.cache[0], m.cache[1] = decodes.WithLabelValues("miss"), decodes.WithLabelValues("hit")
	if reg != nil {
		reg.MustRegister(m.requests, m.lookups, statuses, decodes, m.shadowFailures, m.predictions)
	}
	return m
}

// predicted counts the rows of a version's outputs out: a row is null when
// any of its outputs is not a number JSON has.
func (m *metrics) predicted(v *model.Version, out []float32, rows int) {
	k, nulls := v.NumOutputs(), 0
	for r := range rows {
		for _, x := range out[r*k : (r+1)*k] {
			if f := float64(x); math.IsNaN(f) || math.IsInf(f, 0) {
				nulls++
				break
			}
		}
	}
	version := strconv.Itoa(v.Version)
	m.predictions.WithLabelValues(v.Model, version, "number").Add(float64(rows - nulls))
	if nulls > 0 {
		m.predictions.WithLabelValues(v.Model, version, "null").Add(float64(nulls))
	}
}
