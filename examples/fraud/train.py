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
# writes MODEL_DIR/model.json, MODEL_DIR/model.yaml and MODEL_DIR/profile.json:
# the training set's profile, with the distribution of the model's output
# over it added, binned as backfill bins numbers (deciles).
# Needs numpy and xgboost (Debian: python3-numpy python3-xgboost).
import csv
import json
import math
import os
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
    with open(dataset + ".profile.json") as f:
        profile = json.load(f)
    profile["output"] = number_profile("probability", booster.predict(xgb.DMatrix(x, missing=np.nan)))
    with open(os.path.join(out, "profile.json"), "w") as f:
        json.dump(profile, f, indent=2)
        f.write("\n")
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
# Drift detectors in ingest compare what this version sees with profile.json.
# Features over 1h to 7d windows depend on how long the stream has run, which
# differs between a training set and a demo of a few minutes; this watches
# the one input that does not, the transaction's amount against the user's
# average.
drift:
  window: 500
  psi: 0.25
  consecutive: 3
  cooldown: 10m
  features: [amount_vs_avg]
  output: false
""")


def number_profile(name, values):
    """The profile of a number column, as backfill's drift.NumberProfile:
    distinct deciles as inner edges (a value on an edge opens its bin)."""
    nums = np.sort(np.asarray(values, dtype=np.float64))
    edges = []
    for i in range(1, 10):
        e = float(nums[i * len(nums) // 10])
        if (not edges or e > edges[-1]) and e > nums[0]:
            edges.append(e)
    counts = np.bincount(np.searchsorted(edges, nums, side="right"), minlength=len(edges) + 1)
    return {"name": name, "type": "float", "count": len(nums), "nulls": 0, "null_rate": 0,
            "edges": edges, "counts": [int(c) for c in counts]}


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit("usage: train.py DATASET.csv MODEL_DIR")
    main(sys.argv[1], sys.argv[2])
