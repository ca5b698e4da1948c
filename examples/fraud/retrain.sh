#!/usr/bin/env bash
# The fraud demo's closed loop: for each retraining event ingest's drift
# detectors publish to <prefix>.retrain, build a fresh training set from the
# latest labelled transactions (backfill dataset over the offline event log),
# train the next version with train.py, and send it a share of the traffic
# as the model's canary; serve hot-reloads it. Promoting the canary to
# production stays a human decision: edit aliases.yaml (see the README).
#
#   examples/fraud/retrain.sh BROKERS DATA_DIR MODELS_DIR LABELS_CSV
#
# LABELS_CSV is the generator's --labels file (the spine, with is_fraud).
# Environment: RETRAIN_WINDOW, seconds of transactions to train on (default
# 120); RETRAIN_SETTLE, seconds of the newest transactions left out, not yet
# in the offline log (default 10); CANARY_TRAFFIC (default 0.1); BIN (bin);
# TOPIC_PREFIX (quiver). Needs kcat, python3-numpy and python3-xgboost.
set -euo pipefail
cd "$(dirname "$0")/../.."
if [ $# -ne 4 ]; then
	echo "usage: $0 BROKERS DATA_DIR MODELS_DIR LABELS_CSV" >&2
	exit 2
fi
brokers=$1 data=$2 models=$3 labels=$4
window=${RETRAIN_WINDOW:-120} settle=${RETRAIN_SETTLE:-10} traffic=${CANARY_TRAFFIC:-0.1}
bin=${BIN:-bin} topic=${TOPIC_PREFIX:-quiver}.retrain
defs=examples/fraud/definitions.yaml

# retrain MODEL DRIFTED: trains the version after the newest of MODEL. Each
# step is checked (set -e does not hold in a function called with ||), and
# none reads stdin, which carries the events.
retrain() {
	local model=$1 drifted=$2 work next production
	work=$(mktemp -d "$data/retrain-XXXXXX")
	next=$(($(ls "$models/$model" | grep -E '^[0-9]+$' | sort -n | tail -1) + 1))
	echo "retraining $model (drifted: $drifted): version $next from the last ${window}s of labelled transactions"
	/usr/bin/python3 - "$labels" "$window" "$settle" >"$work/spine.csv" <<'PY'
import csv, sys
from datetime import datetime, timedelta, timezone
path, window, settle = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
now = datetime.now(timezone.utc)
lo, hi = now - timedelta(seconds=window + settle), now - timedelta(seconds=settle)
with open(path, newline="") as f:
    rows = csv.reader(f)
    out = csv.writer(sys.stdout)
    out.writerow(next(rows))
    for r in rows:
        if len(r) == 5 and lo <= datetime.fromisoformat(r[2].replace("Z", "+00:00")) < hi:
            out.writerow(r)
PY
	[ "$(wc -l <"$work/spine.csv")" -gt 1 ] || { echo "no labelled transactions in the window" >&2; return 1; }
	"$bin/backfill" dataset --definitions "$defs" --data-dir "$data" --spine "$work/spine.csv" \
		--timestamp-column ts --feature-service fraud_v1 --out "$work/train.csv" </dev/null || return 1
	/usr/bin/python3 examples/fraud/train.py "$work/train.csv" "$work/$next" </dev/null || return 1
	sed -i "1s|^.*$|# Trained by examples/fraud/retrain.sh after drift in ${drifted}.|" "$work/$next/model.yaml" || return 1
	mv "$work/$next" "$models/$model/$next" || return 1 # whole, at once: serve loads it on its next look
	production=$(awk '/^production:/ {print $2}' "$models/$model/aliases.yaml")
	[ -n "$production" ] || { echo "no production version in $models/$model/aliases.yaml" >&2; return 1; }
	printf 'production: %s\ncanary: {version: %s, traffic: %s}\n' "$production" "$next" "$traffic" >"$work/aliases.yaml" || return 1
	mv "$work/aliases.yaml" "$models/$model/aliases.yaml" || return 1
	rm -rf "$work"
	echo "$model version $next is the canary for $traffic of the traffic; production stays $production"
}

echo "waiting for retraining events on $topic"
# A consumer group: a restarted loop goes on where it stopped (kcat commits
# as it reads, so an event being retrained on when the loop stops is not
# retrained on again; drift that persists sends another after the cooldown).
kcat -b "$brokers" -G quiver-retrain-loop -X auto.offset.reset=earliest -u -q -f '%s\n' "$topic" |
	while read -r event; do
		read -r model drifted < <(/usr/bin/python3 -c '
import json, sys
d = json.loads(sys.argv[1])["data"]
print(d["model"], ",".join(f["feature"] for f in d["drifted_features"]))' "$event")
		retrain "$model" "$drifted" </dev/null || echo "retraining $model failed; waiting for the next event" >&2
	done
