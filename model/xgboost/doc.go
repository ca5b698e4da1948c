// Package xgboost loads XGBoost models and evaluates them in pure Go, so that
// serve can score the features it computes without a sidecar.
//
// # Format
//
// Parse reads the "xgboost-json" format: the JSON that XGBoost's
// Booster.save_model("m.json") writes (1.x; later versions where they agree,
// and the base score per class of a multi-class model that 3.1 writes).
// Supported are the gbtree booster with numerical splits and the objectives
// binary:logistic, reg:logistic, reg:squarederror and multi:softprob.
// Anything else (the gblinear and dart boosters, categorical splits, vector
// leaves, multi-target models, other objectives) is refused at load with an
// error that matches ErrUnsupported and names what is missing; a file that is
// not a consistent model is refused with ErrMalformed.
//
// # Semantics
//
// Prediction follows XGBoost's own CPU predictor, so that results agree with
// Booster.predict to float32 rounding:
//
//   - inputs and split conditions are float32; a row goes to the left child
//     when x < split_condition and to the right one otherwise; a NaN input is
//     missing and takes the node's default direction (default_left);
//   - the margin of each output starts at the base score (for the logistic
//     objectives learner_model_param.base_score is a probability and the
//     margin starts at its logit) and adds the leaf value of every tree in
//     tree order, in float32; tree i adds to output tree_info[i];
//   - the objective's transform then gives the prediction: the sigmoid for
//     binary:logistic and reg:logistic, the identity for reg:squarederror, the
//     softmax over num_class outputs for multi:softprob.
//
// Every tree is used: the best_iteration attribute that early stopping
// records is ignored, as Booster.predict ignores it.
//
// # Evaluation
//
// Parse flattens the trees into one contiguous array of 12-byte nodes, each
// node's children adjacent and after it. Model.Predict scores a row-major
// batch: each row goes down eight trees side by side, a level at a time,
// without branches, so that the processor overlaps them; a block of rows goes
// through the same eight trees while they are in cache; large batches are
// split across GOMAXPROCS goroutines; and nothing is allocated per row. A
// Model is immutable and safe for concurrent use.
package xgboost
