// Package model is serve's model repository (DESIGN §7): every version of
// every model under a directory, each with its format's evaluator and its
// dynamic batcher, and the aliases that route requests to versions.
//
// The layout is DIR/<name>/<version>/model.yaml plus the artifact it names,
// and DIR/<name>/aliases.yaml:
//
//	# DIR/fraud/3/model.yaml
//	format: xgboost-json          # or onnx (feed-forward graphs; package onnx)
//	artifact: model.json
//	inputs: {feature_service: fraud_v1}   # the service's features, then its on-demand ones, in order
//	output: probability           # or score
//	batching: {max_batch_size: 64, max_queue_delay: 2ms, queue_capacity: 1024}
//	device: auto                  # cpu, gpu or auto
//	precision: fp32               # or tf32: the GPU's dense layers on the tensor cores
//	profile: train.parquet.profile.json   # the training set's reference profile, for drift
//
//	# DIR/fraud/aliases.yaml
//	production: 3
//	canary: {version: 4, traffic: 0.1}
//	shadow: 5
//
// An ONNX model of device gpu or auto predicts on the process's first GPU
// (package onnx, GPUModel), once its prediction for a row of zeros agrees
// with the CPU's; where there is none (no CUDA libraries, no device, a
// build with the tag nogpu), auto predicts on the CPU and logs why, and gpu
// is refused with that reason. XGBoost models predict on the CPU: gpu is
// refused for them. quiver_serve_model_info's device label says where each
// version predicts.
//
// Batching's fields default to 64 rows, 2ms and 1,024 requests;
// queue_capacity is at most 65,536 (batch.MaxQueueCapacity): the queue is
// allocated whole, and a longer one holds requests past their deadlines;
// max_queue_delay is at most 1s (batch.MaxQueueDelayLimit), since a lone
// request waits all of it. Versions and sizes are whole numbers: 2.9 is
// refused, not read as 2.
//
// Mistakes are reported with file and line; a version whose inputs name an
// unknown feature service or a feature without its version, or whose
// artifact does not load or take as many inputs as the service gives, is
// refused; so is a file of the version that is not a regular file (a FIFO,
// a device) or is larger than such a file can be (an artifact over 2 GiB,
// a model.yaml over 1 MiB, a profile over 64 MiB). A refused version no alias names is left out and the model
// serves without it; aliases that name one refuse the model, and so does,
// without aliases.yaml, a refused highest version: a broken model.yaml
// written over the version serving keeps it serving. A directory that
// holds no files, such as aws s3 sync --delete leaves of a version or a
// model deleted from the bucket, is no version or model; nor is a hidden
// directory or lost+found. A version's directory is its number as written
// in decimal: 01 or +1 is a refused version.
//
// A canary names its version and its traffic, a share from 0 to 1; without
// either it is refused. It takes its share of entities by a hash of the
// model, the canary version and the entity: the same entities on every
// replica and restart, others for each model and canary.
package model
