#!/usr/bin/env bash
# Builds the fraud demo's model from scratch, the way a team would: labelled
# transactions (an hour of the demo's traffic) go through the real broker and ingest into
# the offline event log; backfill dataset builds the point-in-time training
# set for fraud_v1; train.py trains XGBoost on it and writes
# examples/fraud/models/fraud/<VERSION>. Needs the binaries (make build),
# python3-numpy and python3-xgboost.
#
#   examples/fraud/build-model.sh [VERSION]    # default 1
set -euo pipefail
cd "$(dirname "$0")/../.."
version=${1:-1}
dir=$(mktemp -d -t quiver-train-XXXXXX)
port=19092
metrics=19101
pids=()
trap 'kill "${pids[@]}" 2>/dev/null; wait 2>/dev/null; rm -rf "$dir"' EXIT

bin/localkafka --port $port --topics transactions --partitions 4 --data-dir "$dir" >"$dir/kafka.log" 2>&1 &
pids+=($!)
until (exec 3<>/dev/tcp/127.0.0.1/$port) 2>/dev/null; do sleep 0.1; done
bin/ingest --definitions examples/fraud/definitions.yaml --brokers 127.0.0.1:$port --data-dir "$dir" \
	--metrics-addr 127.0.0.1:$metrics >"$dir/ingest.log" 2>&1 &
pids+=($!)
# The demo's traffic (demo.sh): 200 transactions a second among 100 users
# and 50 merchants, two a second per card. No card holder pays that often,
# but a model trained on a realistic pace would take every demo user for a
# fraudster. An hour of it: the demo's windows fill up over its first hour.
start=$(date -u -d '1 hour ago' +%Y-%m-%dT%H:%M:%SZ)
bin/generate --brokers 127.0.0.1:$port --count 720000 --users 100 --merchants 50 \
	--start "$start" --event-rate 200 --seed 11 --labels "$dir/labels.csv"
echo "waiting for ingest to log every event..."
until [ "$(curl -s 127.0.0.1:$metrics/metrics | awk '/^quiver_ingest_consumer_lag_records/ {s += $2} END {print s + 0}')" = 0 ] &&
	curl -s 127.0.0.1:$metrics/metrics | grep -q '^quiver_ingest_events_applied_total'; do sleep 0.5; done
sleep 2
bin/backfill dataset --definitions examples/fraud/definitions.yaml --data-dir "$dir" \
	--spine "$dir/labels.csv" --timestamp-column ts --feature-service fraud_v1 --out "$dir/train.csv"
/usr/bin/python3 examples/fraud/train.py "$dir/train.csv" "examples/fraud/models/fraud/$version"
