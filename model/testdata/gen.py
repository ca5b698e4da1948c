# Generates the test model repository's XGBoost model: binary:logistic over
# the ten inputs of the fraud example's fraud_v1 service (nine features, then
# the on-demand amount_vs_avg), trained on random data with missing values.
# Run with Debian's python3-xgboost and python3-numpy:
#   /usr/bin/python3 model/testdata/gen.py
import os
import numpy as np
import xgboost as xgb

here = os.path.dirname(os.path.abspath(__file__))
rng = np.random.default_rng(7)
n = 4000
x = np.column_stack([
    rng.poisson(3, n),            # user txn_count_1h
    rng.gamma(2, 60, n),          # user amount_sum_1h
    rng.gamma(2, 20, n),          # user amount_avg_24h
    rng.gamma(2, 40, n),          # user amount_max_24h
    rng.gamma(2, 10, n),          # user amount_std_7d
    rng.poisson(4, n),            # user merchants_24h
    rng.poisson(20, n),           # merchant txn_count_1h
    rng.gamma(2, 20, n),          # merchant amount_avg_24h
    rng.poisson(15, n),           # merchant users_24h
    rng.gamma(1.5, 1, n),         # amount_vs_avg
]).astype(np.float32)
x[rng.random(x.shape) < 0.05] = np.nan
logit = 0.8 * np.nan_to_num(x[:, 9]) + 0.3 * np.nan_to_num(x[:, 0]) - 0.02 * np.nan_to_num(x[:, 6]) - 2
y = (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(np.float32)
booster = xgb.train({"objective": "binary:logistic", "max_depth": 4, "eta": 0.3, "seed": 7},
                    xgb.DMatrix(x, label=y, missing=np.nan), num_boost_round=25)
booster.save_model(os.path.join(here, "models", "fraud", "1", "model.json"))
