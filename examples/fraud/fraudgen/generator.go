package fraudgen

import (
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"sort"
	"time"
)

// countries and their weights, for homes of users and merchants.
var countries = []struct {
	code   string
	weight float64
}{
	{"US", 30}, {"GB", 10}, {"DE", 9}, {"FR", 8}, {"IN", 6}, {"ES", 5}, {"IT", 5}, {"CA", 5},
	{"BR", 5}, {"JP", 5}, {"MX", 4}, {"NL", 4}, {"AU", 3}, {"SG", 1}, {"NG", 1}, {"RO", 1},
}

// Shape of the population and of the behaviour; see the package documentation.
const (
	medianAmount    = 35.0 // median over users of their median amount
	userScaleSigma  = 0.9  // spread of users' scales (log-normal sigma)
	amountSigma     = 0.6  // spread of one user's amounts
	activitySigma   = 1.0  // spread of users' activity levels
	maxAmount       = 20000.0
	travelShare     = 0.03 // of regular transactions happen in another country
	exploreShare    = 0.1  // of home transactions at a merchant that is not regular
	driftAwayShare  = 0.5  // of a drifting user's transactions in their drift country
	burstMinLen     = 8
	burstMaxLen     = 25
	burstMinGap     = 5 * time.Second
	burstMaxGap     = 45 * time.Second
	burstAmountMult = 3.0
	minRegulars     = 3
	maxRegulars     = 8
)

// Random streams of the two PCG sources, so that the population does not
// depend on how many events are drawn.
const (
	streamPopulation = 0x706f70756c617469 // "populati"
	streamEvents     = 0x6576656e74737472 // "eventstr"
)

type user struct {
	id           string
	home         int     // index in countries
	scale        float64 // log of the median amount
	regulars     []int   // merchant indexes
	drifts       bool
	driftCountry int
}

type merchant struct {
	id      string
	country int
}

type burst struct {
	user    int
	country int
	left    int
	next    time.Time // due at or after this time
}

// Generator produces the transactions of one Config; see the package
// documentation. It is not safe for concurrent use.
type Generator struct {
	cfg       Config
	rng       *rand.Rand
	interval  float64 // nanoseconds of event time per event
	n         int64   // events generated
	users     []user
	cumWeight []float64 // cumulative activity weights of users
	merchants []merchant
	byCountry [][]int // merchant indexes by country index
	countryW  []float64
	bursts    []burst
}

// New returns a Generator for cfg, with its zero fields set to their defaults.
// The error is a *ConfigError if cfg is invalid.
func New(cfg Config) (*Generator, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg.EnsureDefaults()
	cfg.Start = time.UnixMilli(cfg.Start.UnixMilli()).UTC()
	if !cfg.DriftAt.IsZero() {
		cfg.DriftAt = cfg.DriftAt.UTC()
	}
	g := &Generator{
		cfg:      cfg,
		rng:      rand.New(rand.NewPCG(cfg.Seed, streamEvents)),
		interval: float64(time.Second) / cfg.Rate,
	}
	g.populate(rand.New(rand.NewPCG(cfg.Seed, streamPopulation)))
	return g, nil
}

// DriftFrom makes the drifting users drift from event time t on (instead of
// Config.DriftAt): the drift switch of a running generator.
func (g *Generator) DriftFrom(t time.Time) { g.cfg.DriftAt = t.UTC() }

// Config returns the generator's configuration, defaults filled in.
func (g *Generator) Config() Config { return g.cfg }

func (g *Generator) populate(r *rand.Rand) {
	g.countryW = make([]float64, len(countries))
	for i, c := range countries {
		g.countryW[i] = c.weight
	}
	g.byCountry = make([][]int, len(countries))
	g.merchants = make([]merchant, g.cfg.Merchants)
	for i := range g.merchants {
		c := pick(r, g.countryW)
		g.merchants[i] = merchant{id: fmt.Sprintf("m%05d", i), country: c}
		g.byCountry[c] = append(g.byCountry[c], i)
	}
	g.users = make([]user, g.cfg.Users)
	g.cumWeight = make([]float64, g.cfg.Users)
	total := 0.0
	for i := range g.users {
		u := user{
			id:     fmt.Sprintf("u%06d", i),
			home:   pick(r, g.countryW),
			scale:  math.Log(medianAmount) + userScaleSigma*r.NormFloat64(),
			drifts: r.Float64() < g.cfg.DriftShare,
		}
		u.driftCountry = g.otherCountry(r, u.home)
		n := min(minRegulars+r.IntN(maxRegulars-minRegulars+1), len(g.merchants))
		for len(u.regulars) < n {
			m := g.merchantIn(r, u.home)
			if !slices.Contains(u.regulars, m) {
				u.regulars = append(u.regulars, m)
			} else if len(g.byCountry[u.home]) < n { // too few at home: take any
				u.regulars = appendNew(u.regulars, r.IntN(len(g.merchants)))
			}
		}
		g.users[i] = u
		total += math.Exp(activitySigma * r.NormFloat64())
		g.cumWeight[i] = total
	}
}

// appendNew appends m to s unless s holds it.
func appendNew(s []int, m int) []int {
	if slices.Contains(s, m) {
		return s
	}
	return append(s, m)
}

// pick returns an index drawn with the given weights.
func pick(r *rand.Rand, weights []float64) int {
	total := 0.0
	for _, w := range weights {
		total += w
	}
	x := r.Float64() * total
	for i, w := range weights {
		if x < w {
			return i
		}
		x -= w
	}
	return len(weights) - 1
}

// otherCountry returns a country other than c, uniformly.
func (g *Generator) otherCountry(r *rand.Rand, c int) int {
	o := r.IntN(len(countries) - 1)
	if o >= c {
		o++
	}
	return o
}

// merchantIn returns a merchant of country c, or any merchant if c has none.
func (g *Generator) merchantIn(r *rand.Rand, c int) int {
	if ms := g.byCountry[c]; len(ms) > 0 {
		return ms[r.IntN(len(ms))]
	}
	return r.IntN(len(g.merchants))
}

// Next returns the next transaction of the stream.
func (g *Generator) Next() Event {
	r := g.rng
	slot := g.cfg.Start.Add(time.Duration(float64(g.n) * g.interval))
	g.n++
	jitter := time.Duration(r.Float64() * g.interval)
	if g.cfg.OutOfOrder > 0 {
		jitter -= time.Duration(r.Float64() * float64(g.cfg.OutOfOrder))
	}
	ev := Event{
		TxnID: txnID(r.Uint64()),
		Time:  time.UnixMilli(slot.Add(jitter).UnixMilli()).UTC(),
	}

	if i := g.dueBurst(slot); i >= 0 {
		g.burstTxn(&ev, i, slot)
		return ev
	}
	ui := sort.SearchFloat64s(g.cumWeight, r.Float64()*g.cumWeight[len(g.cumWeight)-1])
	ui = min(ui, len(g.users)-1)
	u := &g.users[ui]
	if r.Float64() < g.cfg.BurstShare {
		b := burst{
			user:    ui,
			country: g.otherCountry(r, u.home),
			left:    burstMinLen + r.IntN(burstMaxLen-burstMinLen+1),
		}
		g.bursts = append(g.bursts, b)
		g.burstTxn(&ev, len(g.bursts)-1, slot)
		return ev
	}

	drifted := g.drifted(u, ev.Time)
	ev.UserID = u.id
	ev.Amount = g.amount(u, 1, drifted)
	switch {
	case r.Float64() < travelShare:
		c := g.otherCountry(r, u.home)
		ev.Country, ev.MerchantID = countries[c].code, g.merchants[g.merchantIn(r, c)].id
	case drifted && r.Float64() < driftAwayShare:
		c := u.driftCountry
		ev.Country, ev.MerchantID = countries[c].code, g.merchants[g.merchantIn(r, c)].id
	case r.Float64() < exploreShare:
		ev.Country, ev.MerchantID = countries[u.home].code, g.merchants[g.merchantIn(r, u.home)].id
	default:
		ev.Country, ev.MerchantID = countries[u.home].code, g.merchants[u.regulars[r.IntN(len(u.regulars))]].id
	}
	return ev
}

// txnID returns "tx_" and x in 16 hexadecimal digits.
func txnID(x uint64) string {
	const hex = "0123456789abcdef"
	b := [19]byte{'t', 'x', '_'}
	for i := len(b) - 1; i >= 3; i-- {
		b[i], x = hex[x&0xf], x>>4
	}
	return string(b[:])
}

// dueBurst returns the index of the burst whose next transaction is due
// earliest, by slot, or -1.
func (g *Generator) dueBurst(slot time.Time) int {
	due := -1
	for i, b := range g.bursts {
		if !b.next.After(slot) && (due < 0 || b.next.Before(g.bursts[due].next)) {
			due = i
		}
	}
	return due
}

// burstTxn fills ev with the next transaction of burst i and schedules the one
// after it, or ends the burst.
func (g *Generator) burstTxn(ev *Event, i int, slot time.Time) {
	r := g.rng
	b := &g.bursts[i]
	u := &g.users[b.user]
	// Card not present: any merchant, anywhere; one new to the user, if one
	// comes up in a few draws.
	m := r.IntN(len(g.merchants))
	for range 3 {
		if !slices.Contains(u.regulars, m) {
			break
		}
		m = r.IntN(len(g.merchants))
	}
	ev.UserID = u.id
	ev.MerchantID = g.merchants[m].id
	ev.Country = countries[b.country].code
	ev.Amount = g.amount(u, burstAmountMult, g.drifted(u, ev.Time))
	ev.Suspicious = true
	b.left--
	b.next = slot.Add(burstMinGap + time.Duration(r.Int64N(int64(burstMaxGap-burstMinGap))))
	if b.left == 0 {
		g.bursts = slices.Delete(g.bursts, i, i+1)
	}
}

func (g *Generator) drifted(u *user, t time.Time) bool {
	return u.drifts && !g.cfg.DriftAt.IsZero() && !t.Before(g.cfg.DriftAt)
}

// amount draws an amount for u, scaled by mult and by the drift factor if the
// user has drifted, rounded to cents.
func (g *Generator) amount(u *user, mult float64, drifted bool) float64 {
	a := mult * math.Exp(u.scale+amountSigma*g.rng.NormFloat64())
	if drifted {
		a *= g.cfg.DriftFactor
	}
	return max(0.01, math.Round(min(a, maxAmount)*100)/100)
}
