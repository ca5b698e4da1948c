#!/usr/bin/python3
"""Generate the XGBoost fixtures of package model/xgboost.

Run from this directory with Debian's python3-xgboost (1.7.4) and numpy:

    apt-get install python3-xgboost python3-numpy
    /usr/bin/python3 gen.py

For each model it writes <name>.json, the model as Booster.save_model writes
it, and <name>.expected.json: the test inputs (null for a missing value) and
XGBoost's own predictions for them (Booster.predict, after the objective's
transform), one list of outputs per row. The output is deterministic for a
given XGBoost version.
"""

import json

import numpy as np
import xgboost as xgb

MISSING = 0.15  # fraction of inputs that are missing, in training and test


def data(rng, rows, features):
    """Random float32 inputs, some of them NaN."""
    x = rng.normal(size=(rows, features)).astype(np.float32)
    x[:, 0] = np.round(x[:, 0] * 4) / 4  # a feature with many ties
    x[rng.random(size=x.shape) < MISSING] = np.nan
    return x


def test_inputs(rng, booster, features, rows):
    """Test rows: random ones, and rows whose values sit exactly on split
    conditions of the model (x < cond goes right there), plus a row of NaNs
    and a row of zeros."""
    x = data(rng, rows, features)
    splits = {}
    for tree in json.loads(booster.save_raw("json"))["learner"]["gradient_booster"]["model"]["trees"]:
        for left, feat, cond in zip(tree["left_children"], tree["split_indices"], tree["split_conditions"]):
            if left != -1:
                splits.setdefault(feat, []).append(np.float32(cond))
    edge = np.full((8, features), np.nan, dtype=np.float32)
    for i in range(edge.shape[0]):
        for f, conds in splits.items():
            if rng.random() < 0.8:
                edge[i, f] = conds[rng.integers(len(conds))]
    return np.vstack([x, edge, np.full((1, features), np.nan, np.float32), np.zeros((1, features), np.float32)])


def jsonable(x):
    return [[None if np.isnan(v) else float(v) for v in row] for row in x]


def write(name, booster, x, params):
    booster.save_model(name + ".json")
    pred = booster.predict(xgb.DMatrix(x, missing=np.nan))
    pred = pred.reshape(x.shape[0], -1)
    with open(name + ".expected.json", "w") as f:
        json.dump({
            "xgboost": xgb.__version__,
            "params": params,
            "inputs": jsonable(x),
            "predictions": [[float(v) for v in row] for row in pred],
        }, f, separators=(",", ":"))
        f.write("\n")


def model(name, seed, features, objective, rounds, depth, label, extra=None, train_rows=300, test_rows=60):
    rng = np.random.default_rng(seed)
    x = data(rng, train_rows, features)
    y = label(rng, np.nan_to_num(x))
    params = {"objective": objective, "max_depth": depth, "eta": 0.3, "seed": seed,
              "tree_method": "hist", "nthread": 1}
    params.update(extra or {})
    booster = xgb.train(params, xgb.DMatrix(x, label=y, missing=np.nan), num_boost_round=rounds)
    write(name, booster, test_inputs(rng, booster, features, test_rows), params)


def linear(rng, x):
    return x[:, 0] * 2 - x[:, 1] + np.sin(x[:, 2] * 3) + 0.1 * rng.normal(size=x.shape[0])


def binary(rng, x):
    return (linear(rng, x) > 0).astype(np.float32)


def fraction(rng, x):
    return 1 / (1 + np.exp(-linear(rng, x)))


def classes(rng, x):
    return np.digitize(linear(rng, x), [-1.0, 1.0]).astype(np.float32)


if __name__ == "__main__":
    model("binary", 1, 10, "binary:logistic", 30, 4, binary)
    model("regression", 2, 8, "reg:squarederror", 24, 6, linear, {"min_child_weight": 4})
    model("reglogistic", 3, 6, "reg:logistic", 30, 3, fraction)
    model("multiclass", 4, 7, "multi:softprob", 12, 4, classes, {"num_class": 3})
    model("basescore", 5, 5, "binary:logistic", 20, 5, binary, {"base_score": 0.2, "min_child_weight": 3})
