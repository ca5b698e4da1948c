package serve

import (
	"context"
	"errors"
	"maps"
	"math"
	"net/http"
	"slices"
	"strconv"
	"time"

	"github.com/labstack/echo/v4"
	"github.com/segmentio/ksuid"

	"github.com/quiver-ml/quiver/features"
	"github.com/quiver-ml/quiver/internal/jsonenc"
	"github.com/quiver-ml/quiver/model"
	"github.com/quiver-ml/quiver/model/batch"
	"github.com/quiver-ml/quiver/store/online"
)

// predict answers POST /v1/models/{name}/predict: the model's features of
// each entity, read and evaluated as a lookup is, with its on-demand
// features from the request context, through the model version's batcher.
func (s *Server) predict(c echo.Context) error {
	// A model that is not there is a 404, whatever the body.
	if s.models == nil {
		return &apiError{code: http.StatusNotFound, msg: "no models: serve runs without --models"}
	}
	if _, err := s.models.Version(c.Param("name"), 0); err != nil {
		return routeError(err)
	}
	req, bp, err := s.readRequest(c, true)
	defer s.buffers.Put(bp)
	if err != nil {
		return err
	}
	// The first entity picks the version: a canary is sticky per entity,
	// the entity of the production version's first feature (the user of
	// a user and a merchant), by its join keys.
	prod, err := s.models.Version(c.Param("name"), 0)
	if err != nil {
		return routeError(err)
	}
	var keys []features.Value
	for _, k := range s.services[prod.Service.Name].entity() {
		if col := req.column(k); col != nil {
			keys = append(keys, col.values[0])
		}
	}
	route, _ := online.AppendEntityKey(nil, keys...)
	v, shadow, err := s.models.Route(c.Param("name"), string(route))
	if err != nil {
		return routeError(err)
	}
	pl := s.services[v.Service.Name]
	if err := pl.check(req, s.otherPlans(c.Param("name"), pl)...); err != nil {
		return err
	}
	in, err := s.modelInputs(c.Request().Context(), req, pl)
	if err != nil {
		return err
	}
	out, err := v.Predict(c.Request().Context(), in, req.rows)
	if errors.Is(err, batch.ErrClosed) {
		// A reload retired the version as the request reached it: the
		// model's current routing answers.
		if v, shadow, err = s.models.Route(c.Param("name"), string(route)); err != nil {
			return routeError(err)
		}
		if v.Service.Name != pl.service.Name || len(in)/req.rows != v.NumFeatures() {
			return retryLater(c, "model "+v.Model+" changed its inputs: retry")
		}
		out, err = v.Predict(c.Request().Context(), in, req.rows)
	}
	switch {
	case errors.Is(err, batch.ErrQueueFull):
		return retryLater(c, "model "+v.Model+" is overloaded: retry")
	case errors.Is(err, context.Canceled):
		return err
	case err != nil:
		return err
	}
	reqID := ksuid.New().String()
	s.predicted(v, reqID, false, in, out, req.rows)
	if shadow != nil {
		s.shadows.Go(func() { s.predictShadow(shadow, reqID, req, pl, in) })
	}
	b := append((*bp)[:0], `{"model":`...)
	b = jsonenc.AppendString(b, v.Model)
	b = append(b, `,"version":`...)
	b = strconv.AppendInt(b, int64(v.Version), 10)
	b = append(b, `,"request_id":"`...)
	b = append(b, reqID...)
	b = append(b, `","predictions":[`...)
	k := v.NumOutputs()
	for r := range req.rows {
		if r > 0 {
			b = append(b, ',')
		}
		if k > 1 {
			b = append(b, '[')
		}
		for j, x := range out[r*k : (r+1)*k] {
			if j > 0 {
				b = append(b, ',')
			}
			b = appendOutput(b, x)
		}
		if k > 1 {
			b = append(b, ']')
		}
	}
	*bp = append(b, "]}\n"...)
	c.Response().Header().Set(echo.HeaderContentLength, strconv.Itoa(len(*bp)))
	return c.Blob(http.StatusOK, echo.MIMEApplicationJSON, *bp)
}

// otherPlans returns the plans of the feature services that the model's
// live versions (production, canary, shadow) read besides pl: a request
// must carry what they all need, whichever version its entity is routed to.
func (s *Server) otherPlans(name string, pl *plan) []*plan {
	m, err := s.models.Model(name)
	if err != nil {
		return nil
	}
	var others []*plan
	for _, n := range m.Aliases.Live() {
		if v := m.Versions[n]; v != nil {
			if o := s.services[v.Service.Name]; o != pl && !slices.Contains(others, o) {
				others = append(others, o)
			}
		}
	}
	return others
}

// modelInputs looks up a request's entities with a feature service's plan
// and returns their model inputs, a row per entity; an entity without
// state has its empty windows' values, as training sets do.
func (s *Server) modelInputs(ctx context.Context, req *request, pl *plan) ([]float32, error) {
	res, err := s.lookup(ctx, req, pl, true)
	if err != nil {
		return nil, err
	}
	n := len(res.values)
	in := make([]float32, req.rows*n)
	for r := range req.rows {
		for o := range n {
			v := res.values[o][r]
			x, ok := modelInput(v)
			switch {
			case !ok && v.Type() == features.TypeFloat:
				// The model would see an infinity, the prediction log a
				// null; /v2 refuses such inputs too.
				return nil, badRequest("input %s of entity %d is %g, beyond the float32 range a model takes", pl.names[o], r, v.Float())
			case !ok:
				// Only an on-demand feature whose type its request context
				// decides can be other than the model loaded with.
				return nil, badRequest("input %s of entity %d is a %s: a model takes numbers (convert it in the expression: double(...))",
					pl.names[o], r, v.Type())
			}
			in[r*n+o] = x
		}
	}
	return in, nil
}

// retryLater is a 503 that asks the client to retry in a second: a full
// queue, or a model reloaded under the request.
func retryLater(c echo.Context, msg string) *apiError {
	c.Response().Header().Set("Retry-After", "1")
	return &apiError{code: http.StatusServiceUnavailable, msg: msg}
}

// predictShadow predicts with a shadow version beside production, off the
// request's path: logged, never returned. in are production's inputs, of
// feature service pl; a shadow of another service reads its own.
func (s *Server) predictShadow(shadow *model.Version, reqID string, req *request, pl *plan, in []float32) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var err error
	if spl := s.services[shadow.Service.Name]; spl != pl {
		if err = spl.check(req, pl); err == nil {
			in, err = s.modelInputs(ctx, req, spl)
		}
	}
	var out []float32
	if err == nil {
		out, err = shadow.Predict(ctx, in, req.rows)
	}
	if err != nil {
		s.metrics.shadowFailures.WithLabelValues(shadow.Model).Inc()
		s.cfg.Logger.Debug("shadow prediction failed", "model", shadow.Model, "version", shadow.Version, "err", err)
		return
	}
	s.predicted(shadow, reqID, true, in, out, req.rows)
}

// predicted logs the rows a version predicted, and counts them.
func (s *Server) predicted(v *model.Version, reqID string, shadow bool, in, out []float32, rows int) {
	s.cfg.Predictions.add(v, reqID, shadow, in, out, rows)
	s.metrics.predicted(v, out, rows)
}

// routeError is the answer to a model the repository cannot route to.
func routeError(err error) error {
	if errors.Is(err, model.ErrUnknownModel) {
		return &apiError{code: http.StatusNotFound, msg: err.Error()}
	}
	return err
}

// appendOutput appends a model's output as JSON: null where it is not a
// number JSON has (NaN, from a missing feature, or an infinity), as a
// feature value is.
func appendOutput(b []byte, x float32) []byte {
	f := float64(x)
	if math.IsNaN(f) || math.IsInf(f, 0) {
		return append(b, "null"...)
	}
	return strconv.AppendFloat(b, f, 'g', -1, 32)
}

// modelInput is a feature value as a model reads it: numbers as they are,
// booleans as 0 or 1, and a null (a missing feature) as NaN, which models
// treat as missing. A string, a timestamp or a finite number beyond
// float32's range is no input: false.
func modelInput(v features.Value) (float32, bool) {
	switch v.Type() {
	case features.TypeInt:
		return float32(v.Int()), true
	case features.TypeFloat:
		x := float32(v.Float())
		return x, !math.IsInf(float64(x), 0) || math.IsInf(v.Float(), 0)
	case features.TypeBool:
		if v.Bool() {
			return 1, true
		}
		return 0, true
	case features.TypeNull:
		return float32(math.NaN()), true
	}
	return 0, false
}

type modelJSON struct {
	Name     string        `json:"name"`
	Aliases  model.Aliases `json:"aliases"`
	Versions []versionJSON `json:"versions"`
}

type versionJSON struct {
	Version        int    `json:"version"`
	Format         string `json:"format"`
	FeatureService string `json:"feature_service"`
	Output         string `json:"output,omitempty"`
	Device         string `json:"device"`
}

// listModels answers GET /v1/models: every model, its versions and aliases.
func (s *Server) listModels(c echo.Context) error {
	out := struct {
		Models []modelJSON `json:"models"`
	}{Models: []modelJSON{}}
	if s.models != nil {
		models := s.models.Models() // one snapshot: a reload may drop a model meanwhile
		for _, name := range slices.Sorted(maps.Keys(models)) {
			m := models[name]
			mj := modelJSON{Name: name, Aliases: m.Aliases}
			for _, n := range slices.Sorted(maps.Keys(m.Versions)) {
				v := m.Versions[n]
				mj.Versions = append(mj.Versions, versionJSON{Version: n, Format: v.Spec.Format,
					FeatureService: v.Service.Name, Output: v.Spec.Output, Device: v.Device})
			}
			out.Models = append(out.Models, mj)
		}
	}
	return c.JSON(http.StatusOK, out)
}
