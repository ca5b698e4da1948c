package serve

import (
	"bytes"
	"context"
	stdjson "encoding/json"
	"errors"
	"fmt"
	"maps"
	"math"
	"math/big"
	"net/http"
	"runtime/debug"
	"slices"
	"strconv"

	"github.com/goccy/go-json"
	"github.com/labstack/echo/v4"
	"github.com/segmentio/ksuid"

	"github.com/quiver-ml/quiver/drift"
	"github.com/quiver-ml/quiver/model"
	"github.com/quiver-ml/quiver/model/batch"
)

// The Open Inference Protocol (KServe v2) endpoints: raw tensors in and out,
// no feature lookup. A model's input is one tensor of shape [rows, n] and
// its output one of [rows, k].

// oipTensor is an input tensor of a v2 request. Parameters, here and in
// the request, are hints the protocol lets a server ignore.
type oipTensor struct {
	Name       string          `json:"name"`
	Shape      []float64       `json:"shape"` // numbers, checked to be a model's: goccy's errors for ints are not clear
	Datatype   string          `json:"datatype"`
	Parameters map[string]any  `json:"parameters,omitempty"`
	Data       json.RawMessage `json:"data,omitempty"`
}

type oipInferRequest struct {
	ID      string      `json:"id,omitempty"`
	Inputs  []oipTensor `json:"inputs"`
	Outputs []struct {
		Name       string         `json:"name"`
		Parameters map[string]any `json:"parameters,omitempty"`
	} `json:"outputs,omitempty"`
	Parameters map[string]any `json:"parameters,omitempty"`
}

type oipOutput struct {
	Name     string         `json:"name"`
	Shape    []int          `json:"shape"`
	Datatype string         `json:"datatype"`
	Data     []drift.Number `json:"data"` // null for NaN, which JSON has not
}

type oipInferResponse struct {
	ModelName    string      `json:"model_name"`
	ModelVersion string      `json:"model_version"`
	ID           string      `json:"id"`
	Outputs      []oipOutput `json:"outputs"`
}

type oipMetaTensor struct {
	Name     string `json:"name"`
	Datatype string `json:"datatype"`
	Shape    []int  `json:"shape"`
}

type oipModelMetadata struct {
	Name     string          `json:"name"`
	Versions []string        `json:"versions"`
	Platform string          `json:"platform"`
	Inputs   []oipMetaTensor `json:"inputs"`
	Outputs  []oipMetaTensor `json:"outputs"`
}

const (
	oipInput      = "input"
	oipOutputName = "output"
)

// oipRoutes adds the routes to e, those of GET through get.
func (s *Server) oipRoutes(e *echo.Echo, get func(string, echo.HandlerFunc, ...echo.MiddlewareFunc)) {
	get("/v2", func(c echo.Context) error {
		return c.JSON(http.StatusOK, map[string]any{"name": "quiver", "version": buildVersion(), "extensions": []string{}})
	})
	get("/v2/health/live", func(c echo.Context) error { return c.JSON(http.StatusOK, map[string]bool{"live": true}) })
	// The protocol's health APIs answer true with 200 and false with a 4xx
	// (/readyz answers 503, as load balancers expect).
	get("/v2/health/ready", func(c echo.Context) error {
		if err := s.ready(c.Request().Context()); err != nil {
			return c.JSON(http.StatusBadRequest, map[string]any{"ready": false, "error": err.Error(), "code": http.StatusBadRequest})
		}
		return c.JSON(http.StatusOK, map[string]bool{"ready": true})
	})
	for _, prefix := range []string{"/v2/models/:name", "/v2/models/:name/versions/:version"} {
		get(prefix, s.oipMetadata, s.authenticate)
		get(prefix+"/ready", s.oipReady, s.authenticate)
		e.POST(prefix+"/infer", s.oipInfer, s.authenticate)
	}
}

// buildVersion is the server's version in the v2 server metadata: the
// module version the binary was built at (a pseudo-version from the
// commit when built from a checkout).
func buildVersion() string {
	if bi, ok := debug.ReadBuildInfo(); ok {
		return bi.Main.Version
	}
	return "unknown"
}

// oipVersion returns the version a v2 path names, its versions/{v} or the
// production version, and its model.
func (s *Server) oipVersion(c echo.Context) (*model.Model, *model.Version, error) {
	if s.models == nil {
		return nil, nil, &apiError{code: http.StatusNotFound, msg: "no models: serve runs without --models"}
	}
	n := 0
	if p := c.Param("version"); p != "" {
		var err error
		if n, err = strconv.Atoi(p); err != nil || n < 1 { // a version no model has
			return nil, nil, routeError(fmt.Errorf("%w %q version %q", model.ErrUnknownModel, c.Param("name"), p))
		}
	}
	m, err := s.models.Model(c.Param("name"))
	if err != nil {
		return nil, nil, routeError(err)
	}
	v, err := m.Version(n)
	if err != nil {
		return nil, nil, routeError(err)
	}
	return m, v, nil
}

func (s *Server) oipMetadata(c echo.Context) error {
	m, v, err := s.oipVersion(c)
	if err != nil {
		return err
	}
	meta := oipModelMetadata{Name: v.Model, Platform: v.Spec.Format,
		Inputs:  []oipMetaTensor{{Name: oipInput, Datatype: "FP32", Shape: []int{-1, v.NumFeatures()}}},
		Outputs: []oipMetaTensor{{Name: oipOutputName, Datatype: "FP32", Shape: []int{-1, v.NumOutputs()}}}}
	for _, n := range slices.Sorted(maps.Keys(m.Versions)) {
		meta.Versions = append(meta.Versions, strconv.Itoa(n))
	}
	if c.Param("version") != "" {
		meta.Versions = []string{strconv.Itoa(v.Version)}
	}
	return c.JSON(http.StatusOK, meta)
}

func (s *Server) oipReady(c echo.Context) error {
	_, v, err := s.oipVersion(c)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, map[string]any{"name": v.Model, "ready": true})
}

// oipInfer runs a raw input tensor through a version's batcher.
// maxRequestID bounds the id a v2 inference request may name itself by.
const maxRequestID = 256

// decodeInfer decodes a v2 inference request's body, a large one while a
// slot is free (admitLarge).
func (s *Server) decodeInfer(ctx context.Context, body []byte) (*oipInferRequest, error) {
	if len(body) > largeBody {
		release, err := s.admitLarge(ctx)
		if err != nil {
			return nil, err
		}
		defer release()
	}
	// goccy/go-json decodes several times faster than encoding/json, which
	// decides what is JSON: goccy is lenient (01, say).
	if !stdjson.Valid(body) {
		var v any
		return nil, badRequest("request body is not valid JSON: %v", stdjson.Unmarshal(body, &v))
	}
	var req oipInferRequest
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil {
		return nil, badRequest("request body is not a v2 inference request: %v", err)
	}
	return &req, nil
}

func (s *Server) oipInfer(c echo.Context) error {
	// The body first: a version chosen before a slow body arrived may be
	// retired by then.
	body, bp, err := s.readPooled(c)
	defer s.buffers.Put(bp)
	if err != nil {
		return err
	}
	_, v, err := s.oipVersion(c)
	if err != nil {
		return err
	}
	req, err := s.decodeInfer(c.Request().Context(), body)
	if err != nil {
		return err
	}
	if len(req.ID) > maxRequestID {
		// It is logged with each row's prediction.
		return badRequest("id is %d bytes, at most %d", len(req.ID), maxRequestID)
	}
	if len(req.Inputs) != 1 {
		return badRequest("want 1 input tensor %q, got %d", oipInput, len(req.Inputs))
	}
	for _, o := range req.Outputs {
		if o.Name != oipOutputName {
			return badRequest("unknown output %q (the model has %q)", o.Name, oipOutputName)
		}
	}
	t := req.Inputs[0]
	if t.Name != oipInput {
		return badRequest("unknown input %q (the model has %q)", t.Name, oipInput)
	}
	n := v.NumFeatures()
	if len(t.Shape) != 2 || t.Shape[1] != float64(n) || t.Shape[0] != math.Trunc(t.Shape[0]) || t.Shape[0] < 1 || t.Shape[0] > float64(s.cfg.MaxEntities) {
		return badRequest("input %q has shape %v, want [rows, %d] with 1 to %d rows", t.Name, t.Shape, n, s.cfg.MaxEntities)
	}
	rows := int(t.Shape[0])
	data, err := tensorData(t.Data, t.Datatype, rows, n)
	if err != nil {
		return badRequest("input %q: %v", t.Name, err)
	}
	out, err := v.Predict(c.Request().Context(), data, rows)
	if errors.Is(err, batch.ErrClosed) {
		// A reload retired the version as the request reached it: the
		// version the path names now answers.
		if _, v, err = s.oipVersion(c); err != nil {
			return err
		}
		if v.NumFeatures() != n {
			return retryLater(c, "model "+v.Model+" changed its inputs: retry")
		}
		out, err = v.Predict(c.Request().Context(), data, rows)
	}
	if errors.Is(err, batch.ErrQueueFull) {
		return retryLater(c, "model "+v.Model+" is overloaded: retry")
	}
	if err != nil {
		return err
	}
	id := req.ID
	if id == "" {
		id = ksuid.New().String()
	}
	s.predicted(v, id, false, data, out, rows)
	return c.JSON(http.StatusOK, oipInferResponse{ModelName: v.Model, ModelVersion: strconv.Itoa(v.Version), ID: id,
		Outputs: []oipOutput{{Name: oipOutputName, Shape: []int{rows, v.NumOutputs()}, Datatype: "FP32", Data: drift.Numbers(out)}}})
}

// tensorData reads the data of a tensor of shape [rows, n]: a flat array of
// rows*n numbers, or rows arrays of n (row-major either way), each a finite
// float32, and an integer in range for INT32 and INT64.
func tensorData(raw json.RawMessage, datatype string, rows, n int) ([]float32, error) {
	var bits int // of an integer; 0: a float
	switch datatype {
	case "FP32", "FP64":
	case "INT32":
		bits = 32
	case "INT64":
		bits = 64
	default:
		return nil, fmt.Errorf("datatype %q, want FP32, FP64, INT32 or INT64", datatype)
	}
	// Decoding takes a null for 0. In valid JSON that decodes as numbers,
	// "null" can only be a null.
	if bytes.Contains(raw, []byte("null")) {
		return nil, errors.New("data holds a null: a tensor's values are numbers")
	}
	var flat []float64
	if err := json.Unmarshal(raw, &flat); err != nil {
		var nested [][]float64
		if err := json.Unmarshal(raw, &nested); err != nil {
			return nil, errors.New("data must be an array of numbers, flat or one array per row")
		}
		if len(nested) != rows {
			return nil, fmt.Errorf("%d rows of data for %d rows", len(nested), rows)
		}
		flat = flat[:0] // a failed Unmarshal may have filled it in part
		for i, r := range nested {
			if len(r) != n {
				return nil, fmt.Errorf("row %d of data has %d values, want %d", i, len(r), n)
			}
			flat = append(flat, r...)
		}
	}
	if len(flat) != rows*n {
		return nil, fmt.Errorf("%d values of data for shape [%d, %d]", len(flat), rows, n)
	}
	out := make([]float32, len(flat))
	for i, v := range flat {
		out[i] = float32(v)
		switch {
		case math.IsInf(float64(out[i]), 0) || math.IsNaN(v):
			return nil, fmt.Errorf("value %d of data is out of the range of FP32", i)
		case bits > 0 && (v != math.Trunc(v) || v < -math.Ldexp(1, bits-1) || v > math.Ldexp(1, bits-1)-1 ||
			math.Abs(v) == 0x1p63 && !isInt64(raw, i)):
			return nil, fmt.Errorf("value %d of data, %v, is not %s", i, v, datatype)
		}
	}
	return out, nil
}

// isInt64 reports whether the i-th number of data, one a double rounds to
// ±2⁶³, is an int64 (-2⁶³ to 2⁶³-1): its digits say.
func isInt64(data json.RawMessage, i int) bool {
	dec := stdjson.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	for {
		tok, err := dec.Token()
		if err != nil {
			return false
		}
		if n, ok := tok.(stdjson.Number); ok {
			if i == 0 {
				r, ok := new(big.Rat).SetString(string(n))
				return ok && r.IsInt() && r.Num().IsInt64()
			}
			i--
		}
	}
}
