package drift

import (
	"encoding/json"
	"fmt"
	"time"

	"github.com/cloudevents/sdk-go/v2/event"
	"github.com/segmentio/ksuid"
)

// RetrainType is the CloudEvents type of a retraining request.
const RetrainType = "quiver.retrain.requested"

// ContentType is the media type of a structured CloudEvent, the Kafka
// record's content-type header and the webhook's Content-Type.
const ContentType = "application/cloudevents+json"

// Retrain is the data of a retraining event: which model version drifted,
// over which window, and how.
type Retrain struct {
	Model   string      `json:"model"`
	Version int         `json:"version"`
	Window  EventWindow `json:"window"`
	// Drifted are the columns that drifted in the last window, Scores all
	// the watched ones.
	Drifted []Score `json:"drifted_features"`
	Scores  []Score `json:"scores"`
	// Thresholds and rule the breach was judged by.
	PSI   float64 `json:"psi_threshold,omitempty"`
	JS    float64 `json:"js_threshold,omitempty"`
	Rule  string  `json:"rule"`
	Share float64 `json:"share,omitempty"`
}

// EventWindow is the last window of a sustained breach.
type EventWindow struct {
	Start       time.Time `json:"start"`
	End         time.Time `json:"end"`
	Predictions int       `json:"predictions"`
	Size        string    `json:"size"`        // the configured window
	Consecutive int       `json:"consecutive"` // breaching windows in a row
}

// NewRetrain describes a sustained breach ev of a model version's detector.
func NewRetrain(model string, version int, d *Detector, ev *Evaluation) Retrain {
	cfg := d.Config()
	r := Retrain{Model: model, Version: version,
		Window: EventWindow{Start: ev.Start.UTC(), End: ev.End.UTC(), Predictions: ev.Predictions,
			Size: cfg.Window.String(), Consecutive: ev.Streak},
		Drifted: []Score{}, Scores: ev.Scores,
		PSI: cfg.PSI, JS: cfg.JS, Rule: cfg.Rule}
	if cfg.Rule == RuleShare {
		r.Share = cfg.Share
	}
	for _, s := range ev.Scores {
		if s.Drifted {
			r.Drifted = append(r.Drifted, s)
		}
	}
	return r
}

// Encode returns the retraining request as a CloudEvents 1.0 structured JSON
// event from source, sent at now, and its id (a KSUID).
func (r Retrain) Encode(source string, now time.Time) ([]byte, string, error) {
	e := event.New(event.CloudEventsVersionV1)
	e.SetID(ksuid.New().String())
	e.SetSource(source)
	e.SetType(RetrainType)
	e.SetSubject(r.Model)
	e.SetTime(now.UTC())
	if err := e.SetData(event.ApplicationJSON, r); err != nil {
		return nil, "", err
	}
	if err := e.Validate(); err != nil {
		return nil, "", err
	}
	b, err := json.Marshal(e)
	return b, e.ID(), err
}

// DecodeRetrain reads a retraining event back: its id and data.
func DecodeRetrain(b []byte) (string, Retrain, error) {
	var e event.Event
	var r Retrain
	if err := json.Unmarshal(b, &e); err != nil {
		return "", r, err
	}
	if e.Type() != RetrainType {
		return "", r, fmt.Errorf("event type %q, want %s", e.Type(), RetrainType)
	}
	if err := e.DataAs(&r); err != nil {
		return "", r, err
	}
	return e.ID(), r, nil
}
