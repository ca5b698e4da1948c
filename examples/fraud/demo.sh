#!/usr/bin/env bash
# The fraud demo: a local Kafka-protocol broker, the event generator, ingest
# and serve, each a separate process of the real binaries (built by
# `make build` into bin/). It prints a curl that returns live features, then
# runs until Ctrl-C, which stops everything.
#
# Ports and directories can be changed through the environment:
# DEMO_KAFKA_PORT (9092), DEMO_HTTP_PORT (8080), DEMO_METRICS_PORT (9101),
# DEMO_DIR (a new temporary directory, removed at the end), DEMO_BIN (bin).
set -euo pipefail

cd "$(dirname "$0")/../.."
kafka_port=${DEMO_KAFKA_PORT:-9092}
http_port=${DEMO_HTTP_PORT:-8080}
metrics_port=${DEMO_METRICS_PORT:-9101}
for port in "$kafka_port" "$http_port" "$metrics_port"; do
	if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
		echo "port $port is in use: set DEMO_KAFKA_PORT, DEMO_HTTP_PORT or DEMO_METRICS_PORT" >&2
		exit 1
	fi
done

dir=${DEMO_DIR:-$(mktemp -d -t quiver-demo-XXXXXX)}
keep_dir=${DEMO_DIR:+yes}
mkdir -p "$dir"
defs=examples/fraud/definitions.yaml
models=$dir/models # a copy: the retraining loop adds versions to it
brokers=127.0.0.1:$kafka_port
bin=${DEMO_BIN:-bin}

pids=()
stop() {
	trap - INT TERM EXIT
	echo
	echo "stopping..."
	# Reverse order: serve and ingest finish their work, the broker goes
	# last. Whatever has not exited 20 seconds later is killed.
	for ((i = ${#pids[@]} - 1; i >= 0; i--)); do
		# Each runs in a session and process group of its own: signal the
		# group, so that children (the retraining loop's kcat) stop too.
		kill -TERM -- "-${pids[i]}" 2>/dev/null || true
		for ((t = 0; t < 200; t++)); do
			kill -0 "${pids[i]}" 2>/dev/null || break
			sleep 0.1
		done
		kill -KILL -- "-${pids[i]}" 2>/dev/null || true
		wait "${pids[i]}" 2>/dev/null || true
	done
	if [ -z "$keep_dir" ]; then rm -rf "$dir"; else echo "data and logs kept in $dir"; fi
}
trap stop INT TERM EXIT

run() { # name, then the command; output goes to $dir/<name>.log
	local name=$1
	shift
	# In a session of its own, so that Ctrl-C reaches only this script,
	# which stops the processes in order.
	setsid "$@" >"$dir/$name.log" 2>&1 &
	pids+=($!)
	echo "  $name (pid $!), log: $dir/$name.log"
}

wait_for() { # description, timeout in seconds, then a command that succeeds when ready
	local what=$1 timeout=$2
	shift 2
	for ((i = 0; i < timeout * 10; i++)); do
		if "$@" >/dev/null 2>&1; then return 0; fi
		for pid in "${pids[@]}"; do
			if ! kill -0 "$pid" 2>/dev/null; then
				echo "a process exited while waiting for $what; see the logs in $dir" >&2
				tail -n 20 "$dir"/*.log >&2
				exit 1
			fi
		done
		sleep 0.1
	done
	echo "timed out waiting for $what; see the logs in $dir" >&2
	exit 1
}

echo "starting the fraud demo in $dir"
rm -rf "$models" && cp -r examples/fraud/models "$models"
run localkafka "$bin/localkafka" --port "$kafka_port" --topics transactions --partitions 4 --data-dir "$dir"
wait_for "the broker" 10 bash -c "exec 3<>/dev/tcp/127.0.0.1/$kafka_port"
url=http://127.0.0.1:$http_port
run ingest "$bin/ingest" --definitions "$defs" --brokers "$brokers" --data-dir "$dir" --metrics-addr "127.0.0.1:$metrics_port" --models "$models"
run serve "$bin/serve" --definitions "$defs" --brokers "$brokers" --data-dir "$dir" --listen "127.0.0.1:$http_port" --models "$models"
run generate "$bin/generate" --brokers "$brokers" --rate 200 --users 100 --merchants 50 --predict "$url/v1/models/fraud/predict" --labels "$dir/labels.csv" \
	--drift-share 0.5 --drift-factor 5
generate_pid=${pids[-1]}
# The closed loop, when its tools are here (make demo-deps installs them).
if command -v kcat >/dev/null && /usr/bin/python3 -c 'import numpy, xgboost' 2>/dev/null; then
	run retrain env BIN="$bin" examples/fraud/retrain.sh "$brokers" "$dir" "$models" "$dir/labels.csv"
	loop="examples/fraud/retrain.sh trains the next version on the latest transactions
and makes it the canary (10% of the traffic); serve hot-reloads it:

  curl -s $url/v1/models          # aliases: production 1, canary 2
  tail -f $dir/retrain.log"
else
	loop="The retraining loop is off: it needs kcat, python3-numpy and python3-xgboost
(make demo-deps installs them)."
fi

body='{"feature_service": "fraud_v1", "entities": {"user_id": ["u000007"], "merchant_id": ["m00003"]}, "request_context": {"amount": 120.0}}'
wait_for "serve to be ready" 30 curl -sf "$url/readyz"
present() { # every status PRESENT
	local out
	out=$(curl -sf -X POST "$url/get-online-features" -d "$body") && [[ $out == *PRESENT* && $out != *NOT_FOUND* ]]
}
wait_for "features of u000007 and m00003" 30 present

cat <<MSG

Quiver is running: 200 card transactions a second flow from the generator through
ingest into serve. Features of user u000007 and merchant m00003, with an
on-demand feature from the request:

  curl -s -X POST $url/get-online-features -d '$body'

MSG
curl -s -X POST "$url/get-online-features" -d "$body"
predict='{"entities": {"user_id": ["u000007"], "merchant_id": ["m00003"]}, "request_context": {"amount": 120.0}}'
cat <<MSG

And the fraud model's probability for the same transaction (XGBoost, trained by
examples/fraud/build-model.sh on an hour of this demo's labelled traffic):

  curl -s -X POST $url/v1/models/fraud/predict -d '$predict'

MSG
curl -s -X POST "$url/v1/models/fraud/predict" -d "$predict"
cat <<MSG

Every transaction is scored like that; ingest's drift detectors compare what the
model sees with its training set. After half a minute of traffic (users need a
history to drift from), turn the generator's drift on: half of the users start
spending 5 times as much, half of it abroad.

  kill -USR1 $generate_pid

and within about a minute ingest publishes one retraining event (CloudEvents JSON):

  kcat -C -b $brokers -t quiver.retrain -e
  curl -s http://127.0.0.1:$metrics_port/metrics | grep quiver_drift_

$loop

Also: curl $url/v1/feature-views, curl $url/v1/models, curl $url/metrics (serve),
curl http://127.0.0.1:$metrics_port/metrics (ingest). Ctrl-C stops everything.
MSG
wait "${pids[@]}"
