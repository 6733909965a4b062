"""The class prior of positive-unlabelled data, estimated from the images and which rows are
labelled: no true labels, no stored prior.

A PU label file says which images are labelled positives; how many positives hide among the
unlabelled rows is what the nnPU risk and the posterior's prior need. A synthetic label file
stores the true share (`ImpreciseLabels.class_prior`), which no real one has; training reads it
only when asked (`TrainConfig.pu_prior = "oracle"`).
"""
from __future__ import annotations

import warnings

import numpy as np
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import StratifiedKFold

from label_models.priors import pu_dataset_prior, pu_mixture_proportion_top_bin

# Rows the labelled-vs-unlabelled classifier sees at most (a stratified sample beyond it): the
# estimate needs a ranking, not the last digit of a large data set's fit.
MAX_ROWS = 10_000
FOLDS = 5  # 5 against 2: mean |error| 0.028 against 0.038 on six digits PU settings other than pu-even
# The top-bin estimator's confidence: its margin pushes the chosen bin towards larger, less pure
# ones, and the estimate errs upwards. 0.9 against the estimator's 0.1, on the same six settings
# (5 folds): mean |error| 0.023 against 0.028, max 0.052 against 0.091 (bias +0.012 against +0.026).
DELTA = 0.9


def estimate_pu_prior(features: np.ndarray, labelled: np.ndarray, *, seed: int) -> np.ndarray:
    """[1 - pi, pi] for a PU training set (class 1 = positive).

    features: (N, D) one row per image (the pixels, flattened); labelled: (N,) bool, the rows
    labelled positive. A logistic regression tells labelled from unlabelled rows, cross-fitted
    over `FOLDS` folds so that every row is scored by a fit that did not see it; the top-bin
    estimator (`pu_mixture_proportion_top_bin`) turns the scores into the share of positives
    among the unlabelled rows, and `pu_dataset_prior` adds the labelled ones.
    Deterministic in `seed`.
    """
    s = np.asarray(labelled, dtype=bool)
    if len(features) != len(s):
        raise ValueError(f"{len(features)} feature rows but {len(s)} labelled flags")
    n_l, n_u = int(s.sum()), int((~s).sum())
    if min(n_l, n_u) < FOLDS:  # every fold scores some of each
        raise ValueError(f"estimating the PU class prior needs at least {FOLDS} labelled and {FOLDS} "
                         f"unlabelled images; got {n_l} and {n_u} (give the share of positives instead)")
    rng = np.random.default_rng(seed)
    rows = np.arange(len(s))
    if len(s) > MAX_ROWS:  # the same labelled share in the sample as in the data (and FOLDS at least)
        keep = max(round(MAX_ROWS * n_l / len(s)), FOLDS)
        rows = np.sort(np.concatenate([rng.choice(np.flatnonzero(s), keep, replace=False),
                                       rng.choice(np.flatnonzero(~s), MAX_ROWS - keep, replace=False)]))
    x = np.asarray(features[rows], dtype=np.float64).reshape(len(rows), -1)  # the sample only: CIFAR is 1 GB in float64
    y = s[rows].astype(np.int64)
    scores = np.zeros(len(x))
    folds = StratifiedKFold(FOLDS, shuffle=True, random_state=seed % (2 ** 32))
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=ConvergenceWarning)  # the ranking is what is used
        for fit, score in folds.split(x, y):
            model = LogisticRegression(max_iter=1000).fit(x[fit], y[fit])
            scores[score] = model.decision_function(x[score])
    pi_unlabelled = pu_mixture_proportion_top_bin(scores[y == 1], scores[y == 0], delta=DELTA)
    return pu_dataset_prior(pi_unlabelled, num_labelled=n_l, num_unlabelled=n_u)
