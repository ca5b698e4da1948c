package fraudgen

import (
	"fmt"
	"math"
	"strings"
	"time"
)

// Defaults of the Config fields.
const (
	DefaultUsers       = 1000
	DefaultMerchants   = 200
	DefaultRate        = 100.0  // events per second of event time
	DefaultBurstShare  = 0.0005 // of transactions start a burst
	DefaultDriftShare  = 0.3    // of users drift
	DefaultDriftFactor = 3.0    // drifted amounts are multiplied by this
)

// DefaultStart is the time of the first event when Config.Start is zero. It is
// fixed, not the current time, so that a Config alone fixes the stream.
var DefaultStart = time.Date(2026, time.January, 1, 0, 0, 0, 0, time.UTC)

// Limits of the Config fields that Validate enforces.
const (
	MinRate       = 0.001 // events per second of event time
	MaxRate       = 1e6
	MaxBurstShare = 0.01
)

// Config sets up a Generator. The zero value of a field means its default;
// DefaultConfig has every default filled in.
type Config struct {
	// Users is the number of card holders, user_id u000000 and up. Default
	// DefaultUsers.
	Users int
	// Merchants is the number of merchants, merchant_id m00000 and up.
	// Default DefaultMerchants.
	Merchants int
	// Seed fixes the population and the stream. Zero is a seed like any other.
	Seed uint64
	// Rate is the number of events per second of event time, between MinRate
	// and MaxRate. Default DefaultRate.
	Rate float64
	// Start is the event time of the first event, kept to the millisecond.
	// Default DefaultStart. Its year must be between 1970 and 9999.
	Start time.Time
	// OutOfOrder is how far back an event's time may fall behind the latest
	// time generated before it. Default 0: times never decrease.
	OutOfOrder time.Duration
	// BurstShare is the share of transactions that start a suspicious burst,
	// at most MaxBurstShare. Default DefaultBurstShare.
	BurstShare float64
	// DriftAt is the event time from which drifting users change behaviour
	// (see the package documentation). Default zero: never.
	DriftAt time.Time
	// DriftShare is the share of users who drift, between 0 and 1. Default
	// DefaultDriftShare.
	DriftShare float64
	// DriftFactor multiplies the amounts of drifting users; positive.
	// Default DefaultDriftFactor.
	DriftFactor float64
}

// DefaultConfig returns a Config with every default filled in.
func DefaultConfig() Config {
	var c Config
	c.EnsureDefaults()
	return c
}

// EnsureDefaults sets each zero field to its default.
func (c *Config) EnsureDefaults() {
	if c.Users == 0 {
		c.Users = DefaultUsers
	}
	if c.Merchants == 0 {
		c.Merchants = DefaultMerchants
	}
	if c.Rate == 0 {
		c.Rate = DefaultRate
	}
	if c.Start.IsZero() {
		c.Start = DefaultStart
	}
	if c.BurstShare == 0 {
		c.BurstShare = DefaultBurstShare
	}
	if c.DriftShare == 0 {
		c.DriftShare = DefaultDriftShare
	}
	if c.DriftFactor == 0 {
		c.DriftFactor = DefaultDriftFactor
	}
}

// ConfigError lists every problem Validate found, one per field at fault.
type ConfigError struct {
	Problems []string
}

func (e *ConfigError) Error() string {
	return "fraudgen: invalid config: " + strings.Join(e.Problems, "; ")
}

// Validate reports every problem with c at once, as a *ConfigError. Zero fields
// stand for their defaults and are valid.
func (c Config) Validate() error {
	var p []string
	add := func(format string, args ...any) { p = append(p, fmt.Sprintf(format, args...)) }
	if c.Users < 0 {
		add("users %d: want at least 1", c.Users)
	}
	if c.Merchants < 0 {
		add("merchants %d: want at least 1", c.Merchants)
	}
	if c.Rate != 0 && !(c.Rate >= MinRate && c.Rate <= MaxRate) { // also catches NaN
		add("rate %g: want between %g and %g events per second", c.Rate, MinRate, MaxRate)
	}
	if y := c.Start.Year(); !c.Start.IsZero() && (y < 1970 || y > 9999) {
		add("start %s: want a year between 1970 and 9999", c.Start.Format(time.RFC3339))
	}
	if c.OutOfOrder < 0 {
		add("out-of-order %s: want zero or more", c.OutOfOrder)
	}
	if !(c.BurstShare >= 0 && c.BurstShare <= MaxBurstShare) {
		add("burst share %g: want between 0 and %g", c.BurstShare, MaxBurstShare)
	}
	if !(c.DriftShare >= 0 && c.DriftShare <= 1) {
		add("drift share %g: want between 0 and 1", c.DriftShare)
	}
	if !(c.DriftFactor >= 0) || math.IsInf(c.DriftFactor, 0) {
		add("drift factor %g: want a finite number above 0", c.DriftFactor)
	}
	if len(p) > 0 {
		return &ConfigError{Problems: p}
	}
	return nil
}
