// Package drift compares what a model version sees in production with what
// it was trained on, and asks for retraining when the difference is real
// and sustained.
//
// # Profiles
//
// A Profile is a training set's reference distribution, written by backfill
// dataset beside the training set (<out>.profile.json) and linked from the
// version's model.yaml (profile:). Each feature is binned: numbers between
// their distinct deciles (a value on an edge opens its bin), categorical
// values (strings, booleans) by their 20 most frequent values and "other";
// nulls are counted apart, NaNs among them (a model reads NaN as missing). The training job may add the distribution of
// the model's output (Profile.Output; examples/fraud/train.py does).
//
// # Detectors
//
// A Detector watches one model version: for each watched column (the
// inputs, by default all, and the output) it counts the values of each
// prediction in the profile's bins, plus a bin for nulls and, for
// categories, one for values the training set did not have. Counts are kept
// per slide of a window: a window of Window predictions (or of a duration of
// prediction time) moves by Slide, and each time it moves it is scored
// against the profile. A time window moves when a prediction past its end
// comes, or when Tick says the clock has passed it. Adding a value is O(1) (a binary search over at most
// 9 edges); memory is slides × bins per column, whatever the window's
// length; a window is the sum of its slides, so windows merge by adding.
//
// Scores are the Population Stability Index (PSI, an empty bin's share
// counted as Epsilon) and the Jensen–Shannon distance (base 2, within
// [0, 1]). A column drifts in a window when a score reaches its threshold
// (Config.PSI, Config.JS); a window breaches when any column drifted, or a
// share of them (Config.Rule). Windows with fewer than MinSamples
// predictions are not scored, and do not breach. Consecutive breaching
// windows make a sustained breach.
//
// # Events
//
// A sustained breach is described by a Retrain, sent as a CloudEvents 1.0
// structured JSON event of type quiver.retrain.requested (id a KSUID). Package
// watch runs the detectors over the prediction log in ingest and sends the
// events, once, to <prefix>.retrain.
//
// model.yaml's drift section (Config), with its defaults:
//
//	drift:
//	  window: 1000        # predictions per window, or a duration: 5m; not 0
//	  slide: 1000         # how far it moves between scores; divides window
//	  min_samples: 100
//	  psi: 0.2            # 0 leaves PSI out; default 0.2 when js is unset too
//	  js: 0
//	  rule: any           # or share, with share: 0.3
//	  consecutive: 3
//	  cooldown: 1h        # of prediction time, per model; 0 for none
//	  features: [...]     # default: every input
//	  output: true        # also the output, when the profile has it
//	  disabled: false
package drift
