package serve

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/labstack/echo/v4"
	"github.com/labstack/echo/v4/middleware"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/valyala/fastjson"

	"github.com/quiver-ml/quiver/features"
	"github.com/quiver-ml/quiver/model"
	"github.com/quiver-ml/quiver/store/online"
)

// Config configures a Server.
type Config struct {
	Definitions *features.Definitions // required
	Store       online.Store          // required
	Models      *model.Repository     // predictions; nil for none
	Predictions *PredictionLog        // where predictions are logged; nil logs none
	// AuthTokens, when not empty, are the bearer tokens that may call the
	// API (SetAuthTokens replaces them). Health and metrics endpoints stay
	// open.
	AuthTokens   []string
	MaxEntities  int   // per lookup; default 1,000
	MaxBodyBytes int64 // default 4 MiB
	// StateCacheEntries is how many decoded entity states are kept for
	// lookups (about 4 times a state record's size each); negative for
	// none. Default 10,000.
	StateCacheEntries int
	Logger            *slog.Logger
	Registerer        prometheus.Registerer // metrics; nil registers none
	Gatherer          prometheus.Gatherer   // served at /metrics; nil serves none
	Now               func() time.Time      // the clock; default time.Now
}

func (c *Config) ensureDefaults() {
	if c.MaxEntities == 0 {
		c.MaxEntities = 1000
	}
	if c.StateCacheEntries == 0 {
		c.StateCacheEntries = 10_000
	}
	if c.MaxBodyBytes == 0 {
		c.MaxBodyBytes = 4 << 20
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.Now == nil {
		c.Now = time.Now
	}
}

// Validate reports every problem of the configuration at once.
func (c *Config) Validate() error {
	var errs []error
	if c.Definitions == nil {
		errs = append(errs, errors.New("serve: no definitions"))
	}
	if c.Store == nil {
		errs = append(errs, errors.New("serve: no online store"))
	}
	for i, t := range c.AuthTokens {
		if t == "" {
			errs = append(errs, fmt.Errorf("serve: auth token %d is empty", i+1))
		}
	}
	return errors.Join(errs...)
}

// Server is serve's HTTP API.
type Server struct {
	cfg      Config
	defs     *features.Definitions
	store    online.Store
	tables   map[online.Table]*table
	services map[string]*plan
	plans    sync.Map // feature lists seen, by planKey → *plan
	planned  atomic.Int64
	tokens   atomic.Pointer[[]tokenDigest] // nil: the API is open
	metrics  *metrics
	cache    *stateCache
	models   *model.Repository
	now      func() time.Time
	echo     *echo.Echo
	parsers  fastjson.ParserPool
	buffers  sync.Pool
	large    chan struct{} // a slot per large body being decoded
	draining atomic.Bool
	shadows  sync.WaitGroup // shadow predictions in flight
	// readiness is the store's Ready as lookups last saw it: asked at
	// most every readyEvery, as it may cost a round trip (Redis).
	readiness atomic.Pointer[readiness]
	askReady  sync.Mutex // held by the lookup asking the store
}

type readiness struct {
	at  time.Time
	err error
}

// readyEvery is how often lookups ask the store whether it is ready.
const readyEvery = time.Second

// errNotReady answers lookups while the store is not ready: before a
// replica has caught up with the changelogs it would answer NOT_FOUND for
// entities it has not read yet, and a Redis ingest has not seeded would
// too.
var errNotReady = errors.New("the online store is not ready")

// storeReady returns nil, or errNotReady with the store's reason.
func (s *Server) storeReady(ctx context.Context) error {
	r := s.readiness.Load()
	if r == nil || time.Since(r.at) >= readyEvery {
		s.askReady.Lock()
		if r = s.readiness.Load(); r == nil || time.Since(r.at) >= readyEvery {
			r = s.askStore(ctx)
		}
		s.askReady.Unlock()
	}
	if r.err != nil {
		return fmt.Errorf("%w: %w", errNotReady, r.err)
	}
	return nil
}

// storeReadySince is storeReady as the store answers a question asked
// after since. Lookups waiting at once share one question.
func (s *Server) storeReadySince(ctx context.Context, since time.Time) error {
	s.askReady.Lock()
	r := s.readiness.Load()
	if r == nil || !r.at.After(since) {
		r = s.askStore(ctx)
	}
	s.askReady.Unlock()
	if r.err != nil {
		return fmt.Errorf("%w: %w", errNotReady, r.err)
	}
	return nil
}

// askStore asks the store whether it is ready, keeps the answer for the
// lookups, and logs a change; askReady is held.
func (s *Server) askStore(ctx context.Context) *readiness {
	// Not the request's context: its cancellation is not the store's.
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), readyEvery)
	defer cancel()
	prev := s.readiness.Load()
	r := &readiness{at: time.Now(), err: s.store.Ready(ctx)}
	s.readiness.Store(r)
	switch {
	case r.err != nil && prev == nil: // starting
		s.cfg.Logger.Info("online store not ready yet: lookups answer 503 until it is", "err", r.err)
	case r.err != nil && prev.err == nil:
		s.cfg.Logger.Warn("online store not ready: lookups answer 503 until it is", "err", r.err)
	case r.err == nil && prev != nil && prev.err != nil:
		s.cfg.Logger.Info("online store ready")
	}
	return r
}

// New builds the server of a set of definitions.
func New(cfg Config) (*Server, error) {
	cfg.ensureDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	s := &Server{
		cfg: cfg, defs: cfg.Definitions, store: cfg.Store, now: cfg.Now, models: cfg.Models,
		tables: map[online.Table]*table{}, services: map[string]*plan{},
		metrics: newMetrics(cfg.Registerer), large: make(chan struct{}, runtime.GOMAXPROCS(0)),
	}
	var err error
	if s.cache, err = newStateCache(cfg.StateCacheEntries, cfg.Store, cfg.Now); err != nil {
		return nil, err
	}
	for _, v := range s.defs.Views {
		eng, err := features.NewEngine(s.defs, v)
		if err != nil {
			return nil, err
		}
		ent := s.defs.Entity(v.Entity)
		src := s.defs.Source(v.Source)
		t := &table{id: online.TableOf(v), view: v, engine: eng, keys: ent.JoinKeys}
		t.lookups = s.metrics.lookups.WithLabelValues(t.id.String()) // at 0 from the start, for rate()
		for _, k := range ent.JoinKeys {
			t.keyTypes = append(t.keyTypes, src.Schema[src.Field(k)].Type)
		}
		s.tables[t.id] = t
	}
	for _, svc := range s.defs.Services {
		refs := make([]string, len(svc.Features))
		for i, r := range svc.Features {
			refs[i] = r.String()
		}
		p, perr := s.newPlan(refs, svc)
		if perr != nil {
			return nil, fmt.Errorf("feature service %s: %w", svc.Name, perr)
		}
		s.services[svc.Name] = p
	}
	if len(cfg.AuthTokens) > 0 {
		s.storeTokens(cfg.AuthTokens)
	}

	e := echo.New()
	e.HideBanner, e.HidePort = true, true
	e.HTTPErrorHandler = s.handleError
	// A handler's panic costs its request, answered 500 and logged with the
	// stack, not the connection.
	e.Use(s.instrument, middleware.RecoverWithConfig(middleware.RecoverConfig{
		DisableStackAll: true, DisableErrorHandler: true,
		LogErrorFunc: func(c echo.Context, err error, stack []byte) error {
			s.cfg.Logger.Error("request panicked", "method", c.Request().Method, "path", c.Request().URL.Path, "err", err, "stack", string(stack))
			return &apiError{code: http.StatusInternalServerError, msg: "internal error"}
		},
	}))
	get := func(path string, h echo.HandlerFunc, m ...echo.MiddlewareFunc) {
		// HEAD wherever GET (RFC 9110 §9.3.2): net/http sends no body.
		e.Match([]string{http.MethodGet, http.MethodHead}, path, h, m...)
	}
	get("/healthz", func(c echo.Context) error { return c.JSON(http.StatusOK, map[string]string{"status": "ok"}) })
	get("/readyz", s.readyz)
	if cfg.Gatherer != nil {
		get("/metrics", echo.WrapHandler(promhttp.HandlerFor(cfg.Gatherer, promhttp.HandlerOpts{})))
	}
	// Not an echo.Group: a group's middleware turns 405s into 404s.
	e.POST("/get-online-features", s.getOnlineFeatures, s.authenticate)
	get("/v1/feature-views", s.featureViews, s.authenticate)
	e.POST("/v1/models/:name/predict", s.predict, s.authenticate)
	get("/v1/models", s.listModels, s.authenticate)
	s.oipRoutes(e, get)
	s.echo = e
	return s, nil
}

// ServeHTTP implements http.Handler.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) { s.echo.ServeHTTP(w, r) }

// handleError answers every error as {"error": "...", "code": N}. Errors
// that are not the client's are logged, and answered without detail.
func (s *Server) handleError(err error, c echo.Context) {
	if c.Response().Committed {
		return
	}
	code, msg := http.StatusInternalServerError, "internal error"
	var ae *apiError
	var he *echo.HTTPError
	switch {
	case errors.As(err, &ae):
		code, msg = ae.code, ae.msg
	case errors.As(err, &he):
		code, msg = he.Code, fmt.Sprint(he.Message)
		if code == http.StatusNotFound {
			msg = "no such endpoint: " + c.Request().Method + " " + c.Request().URL.Path
		} else if code == http.StatusMethodNotAllowed {
			msg = "method " + c.Request().Method + " is not allowed on " + c.Request().URL.Path
		}
	case errors.Is(err, context.Canceled):
		code, msg = 499, "request canceled" // the client went away
	case errors.Is(err, errNotReady) && !errors.Is(err, online.ErrUnavailable):
		code, msg = http.StatusServiceUnavailable, err.Error()+": retry later"
		c.Response().Header().Set("Retry-After", "1")
	case errors.Is(err, online.ErrUnavailable), errors.Is(err, online.ErrClosed):
		s.cfg.Logger.Warn("online store unavailable", "method", c.Request().Method, "path", c.Request().URL.Path, "err", err)
		code, msg = http.StatusServiceUnavailable, "the online store is unavailable: retry later"
		c.Response().Header().Set("Retry-After", "1")
	default:
		s.cfg.Logger.Error("request failed", "method", c.Request().Method, "path", c.Request().URL.Path, "err", err)
	}
	if code == http.StatusUnauthorized {
		c.Response().Header().Set("WWW-Authenticate", `Bearer realm="quiver"`)
	}
	if c.Request().Method == http.MethodHead {
		_ = c.NoContent(code)
		return
	}
	_ = c.JSON(code, map[string]any{"error": msg, "code": code})
}

// tokenDigest is a bearer token's SHA-256 digest.
type tokenDigest = [sha256.Size]byte

func (s *Server) storeTokens(tokens []string) {
	digests := make([]tokenDigest, len(tokens))
	for i, t := range tokens {
		digests[i] = sha256.Sum256([]byte(t))
	}
	s.tokens.Store(&digests)
}

// SetAuthTokens replaces the bearer tokens the API takes, as a reread
// tokens file gives them: a token no longer among them is refused from
// the next request. It cannot open an API that has tokens, nor close one
// started without.
func (s *Server) SetAuthTokens(tokens []string) error {
	if s.tokens.Load() == nil {
		return errors.New("serve: the API was started without tokens, and stays open")
	}
	if len(tokens) == 0 {
		return errors.New("serve: no tokens (the API would refuse every request)")
	}
	if slices.Contains(tokens, "") {
		return errors.New("serve: an empty token")
	}
	s.storeTokens(tokens)
	return nil
}

// authenticate admits a request whose bearer token is one of the
// configured ones. Tokens are compared as SHA-256 digests, all of them, in
// constant time: the time taken says nothing about a token.
func (s *Server) authenticate(next echo.HandlerFunc) echo.HandlerFunc {
	if s.tokens.Load() == nil {
		return next
	}
	return func(c echo.Context) error {
		// The scheme's name is case-insensitive, and one or more spaces
		// may follow it (RFC 9110 §11.1, §11.4).
		scheme, given, _ := strings.Cut(c.Request().Header.Get("Authorization"), " ")
		given = strings.TrimLeft(given, " ")
		if !strings.EqualFold(scheme, "Bearer") || given == "" {
			return &apiError{code: http.StatusUnauthorized, msg: "missing bearer token: send Authorization: Bearer <token>"}
		}
		sum := sha256.Sum256([]byte(given))
		match := 0
		for _, t := range *s.tokens.Load() {
			match |= subtle.ConstantTimeCompare(sum[:], t[:])
		}
		if match != 1 {
			return &apiError{code: http.StatusUnauthorized, msg: "invalid bearer token"}
		}
		return next(c)
	}
}

// instrument records each request's latency by route and status code.
func (s *Server) instrument(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		start := time.Now()
		err := next(c)
		if err != nil {
			c.Error(err) // writes the status, so it can be recorded
		}
		route := c.Path()
		if errors.Is(err, echo.ErrNotFound) || errors.Is(err, echo.ErrMethodNotAllowed) {
			route = "unmatched" // not the request's path: that would be a label per URL
		}
		s.metrics.requests.WithLabelValues(route, strconv.Itoa(c.Response().Status)).Observe(time.Since(start).Seconds())
		return nil
	}
}

// WaitShadows waits, as serve stops, for the shadow predictions of the
// requests answered to be made and logged, or until ctx is done.
func (s *Server) WaitShadows(ctx context.Context) error {
	done := make(chan struct{})
	go func() {
		s.shadows.Wait()
		close(done)
	}()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Drain makes /readyz answer 503 and /v2/health/ready 400 from now on,
// while everything else answers as before: a replica about to stop is taken
// out of its load balancers before it closes its listener.
func (s *Server) Drain() { s.draining.Store(true) }

// ready says why the server should not be sent requests, or nil.
// ready answers /readyz. It asks the store afresh, and the lookups that
// follow take its answer: a replica that says it is ready answers them.
func (s *Server) ready(ctx context.Context) error {
	if s.draining.Load() {
		return errors.New("shutting down")
	}
	s.askReady.Lock()
	defer s.askReady.Unlock()
	return s.askStore(ctx).err
}

func (s *Server) readyz(c echo.Context) error {
	if err := s.ready(c.Request().Context()); err != nil {
		return c.JSON(http.StatusServiceUnavailable, map[string]any{"error": err.Error(), "code": http.StatusServiceUnavailable})
	}
	return c.JSON(http.StatusOK, map[string]string{"status": "ready"})
}

// readRequest reads and decodes a request body into a pooled buffer, which
// the caller reuses for the response and returns with s.buffers.Put.
func (s *Server) readRequest(c echo.Context, predict bool) (*request, *[]byte, error) {
	body, bp, err := s.readPooled(c)
	if err != nil {
		return nil, bp, err
	}
	if len(body) <= largeBody {
		p := s.parsers.Get()
		req, err := decodeRequest(p, body, s.cfg.MaxEntities, predict)
		s.parsers.Put(p)
		return req, bp, err
	}
	// A parser takes hundreds of bytes per JSON value, and keeps them:
	// a large body's has no place in the pool.
	if jsonValues(body, maxValues) > maxValues {
		return nil, bp, &apiError{code: http.StatusRequestEntityTooLarge, msg: fmt.Sprintf("request body holds more than %d JSON values", maxValues)}
	}
	release, err := s.admitLarge(c.Request().Context())
	if err != nil {
		return nil, bp, err
	}
	defer release()
	req, err := decodeRequest(new(fastjson.Parser), body, s.cfg.MaxEntities, predict)
	return req, bp, err
}

// A body over largeBody bytes is decoded only while fewer than GOMAXPROCS
// others are (admitLarge): decoding JSON takes tens to hundreds of bytes
// of memory per value, and bodies at the size limit decoded all at once
// would take gigabytes. Decoding is work for a core, so waiting for one
// costs large requests little throughput (docs/BENCHMARKS.md). A
// lookup's or a prediction's body holds at most maxValues values: a
// thousand entities with ten request context values each take a tenth of
// it.
const (
	largeBody = 64 << 10
	maxValues = 100_000
)

// admitLarge waits for a slot to decode a large body in, until ctx ends,
// and returns the function that gives it back.
func (s *Server) admitLarge(ctx context.Context) (release func(), err error) {
	select {
	case s.large <- struct{}{}:
		return func() { <-s.large }, nil
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// jsonValues counts the JSON values of body up to a count past limit:
// one per comma, colon and opening bracket outside strings, and the
// first, which is at least the values a valid body holds.
func jsonValues(body []byte, limit int) int {
	n := 1
	in := false // in a string
	for i := 0; i < len(body) && n <= limit; i++ {
		switch b := body[i]; {
		case in && b == '\\':
			i++
		case b == '"':
			in = !in
		case !in && (b == ',' || b == ':' || b == '['):
			n++
		}
	}
	return n
}

func (s *Server) getOnlineFeatures(c echo.Context) error {
	req, bp, err := s.readRequest(c, false)
	defer s.buffers.Put(bp)
	if err != nil {
		return err
	}
	var pl *plan
	var perr *planError
	if req.service != "" {
		if pl = s.services[req.service]; pl == nil {
			return badRequest("unknown feature service %q", req.service)
		}
	} else if pl, perr = s.planFor(req.features); perr != nil {
		return perr.refuse(req)
	}
	if err := pl.check(req); err != nil {
		return err
	}
	res, err := s.lookup(c.Request().Context(), req, pl, false)
	if err != nil {
		return err
	}
	*bp = appendResponse((*bp)[:0], req, pl, res)
	c.Response().Header().Set(echo.HeaderContentLength, strconv.Itoa(len(*bp)))
	return c.Blob(http.StatusOK, echo.MIMEApplicationJSON, *bp)
}

// maxPlans bounds the feature lists whose plans are kept: clients ask for
// a few lists again and again, but a list is the client's to choose.
const maxPlans = 1024

// planFor returns the plan of a feature list, resolved once per list.
func (s *Server) planFor(refs []string) (*plan, *planError) {
	key := planKey(refs)
	if p, ok := s.plans.Load(key); ok {
		return p.(*plan), nil
	}
	p, perr := s.newPlan(refs, nil)
	if perr != nil {
		return nil, perr
	}
	if s.planned.Add(1) <= maxPlans {
		s.plans.Store(key, p)
	}
	return p, nil
}

// planKey is a feature list's key in Server.plans: each reference after its
// length, so that no two lists share a key whatever their bytes.
func planKey(refs []string) string {
	n := 0
	for _, r := range refs {
		n += len(r) + 4
	}
	b := make([]byte, 0, n)
	for _, r := range refs {
		b = strconv.AppendInt(b, int64(len(r)), 10)
		b = append(append(b, ':'), r...)
	}
	return string(b)
}

// readPooled reads a request body (readBody) into a pooled buffer, which the
// caller returns with s.buffers.Put once done with the body.
func (s *Server) readPooled(c echo.Context) ([]byte, *[]byte, error) {
	bp, _ := s.buffers.Get().(*[]byte)
	if bp == nil {
		bp = new([]byte)
	}
	body, err := readBody(c, (*bp)[:0], s.cfg.MaxBodyBytes)
	*bp = body
	return body, bp, err
}

// readBody reads a request body of at most limit bytes into b.
func readBody(c echo.Context, b []byte, limit int64) ([]byte, error) {
	r := c.Request()
	if r.ContentLength > limit {
		return b, &apiError{code: http.StatusRequestEntityTooLarge, msg: fmt.Sprintf("request body of %d bytes is larger than the limit of %d", r.ContentLength, limit)}
	}
	for {
		if len(b) == cap(b) {
			b = append(b, 0)[:len(b)]
		}
		n, err := r.Body.Read(b[len(b):cap(b)])
		b = b[:len(b)+n]
		if int64(len(b)) > limit {
			return b, &apiError{code: http.StatusRequestEntityTooLarge, msg: fmt.Sprintf("request body is larger than the limit of %d bytes", limit)}
		}
		if errors.Is(err, io.EOF) {
			return b, nil
		}
		if err != nil {
			return b, badRequest("read request body: %v", err)
		}
	}
}
