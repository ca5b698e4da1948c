#!/usr/bin/env python3
# Trains the fraud demo's model: XGBoost (binary:logistic) on a training set
# written by `backfill dataset --feature-service fraud_v1 --out DATASET.csv`,
# whose spine carries the label column is_fraud. The model's inputs are the
# dataset's feature columns in the order its profile lists them: the
# service's features, then its on-demand ones, which is the order serve
# feeds the model.
#
#   /usr/bin/python3 examples/fraud/train.py DATASET.csv MODEL_DIR
#
# writes MODEL_DIR/model.json, MODEL_DIR/model.yaml and MODEL_DIR/profile.json.
# Needs numpy and xgboost (Debian: python3-numpy python3-xgboost).
import csv
import json
import math
import os
import shutil
import sys

import numpy as np
import xgboost as xgb


def main(dataset, out):
    with open(dataset + ".profile.json") as f:
        names = [feat["name"] for feat in json.load(f)["features"]]
    with open(dataset, newline="") as f:
        rows = list(csv.reader(f))
    header, rows = rows[0], rows[1:]
    cols = [header.index(n) for n in names]
    label = header.index("is_fraud")
    x = np.array([[float(r[c]) if r[c] != "" else math.nan for c in cols] for r in rows], dtype=np.float32)
    y = np.array([float(r[label]) for r in rows], dtype=np.float32)

    rng = np.random.default_rng(1)
    test = rng.random(len(y)) < 0.2
    params = {"objective": "binary:logistic", "eval_metric": "auc", "max_depth": 4, "eta": 0.2, "seed": 1}
    train, held = xgb.DMatrix(x[~test], label=y[~test], missing=np.nan), xgb.DMatrix(x[test], label=y[test], missing=np.nan)
    booster = xgb.train(params, train, num_boost_round=60, evals=[(held, "held_out")], verbose_eval=20)
    print(f"{len(y)} rows, {int(y.sum())} fraudulent; features: {', '.join(names)}")

    os.makedirs(out, exist_ok=True)
    booster.save_model(os.path.join(out, "model.json"))
    shutil.copyfile(dataset + ".profile.json", os.path.join(out, "profile.json"))
    with open(os.path.join(out, "model.yaml"), "w") as f:
        f.write(f"""# Trained by examples/fraud/train.py on {os.path.basename(dataset)}: {len(y)} labelled transactions.
format: xgboost-json
artifact: model.json
inputs:
  feature_service: fraud_v1
output: probability
batching:
  max_batch_size: 64
  max_queue_delay: 2ms
  queue_capacity: 1024
device: auto
profile: profile.json
""")


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit("usage: train.py DATASET.csv MODEL_DIR")
    main(sys.argv[1], sys.argv[2])
