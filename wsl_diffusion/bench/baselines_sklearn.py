"""The scikit-learn baselines, on raw pixels in [0, 1].

Naive estimators on the observed labels (`naive_sklearn`, see `baseline_common` for the rule per
kind), candidate-aware self-training for partial labels, label spreading and self-training for
semi-supervised labels, Elkan–Noto for positive-unlabelled labels, and cleanlab's CleanLearning
around the SVC for noisy labels. Each factory returns a
baseline function `run(train_data, labels, test_data, *, seed) -> {"accuracy", "train_seconds",
...}`; `train_seconds` is the fitting time only (prediction excluded). The catalogue of names is
`bench.baselines.REGISTRY`.
"""
from __future__ import annotations

import time
import warnings

import numpy as np
from sklearn.calibration import CalibratedClassifierCV
from sklearn.ensemble import RandomForestClassifier
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression
from sklearn.neighbors import KNeighborsClassifier, NearestNeighbors
from sklearn.neural_network import MLPClassifier
from sklearn.semi_supervised import LabelSpreading, SelfTrainingClassifier
from sklearn.svm import SVC

from label_models.likelihood import pick_candidates

from wsl_diffusion.bench.baseline_common import (BaselineFn, baseline_rng, check_inputs, label_space_targets,
                                                 naive_training_set, seed_int)
from wsl_diffusion.data.datasets import ArrayDataset, flat_features

ESTIMATORS = ("logreg", "svc", "knn", "rf", "mlp")


def make_estimator(name: str, *, seed: int, probability: bool = False):
    """A fresh scikit-learn classifier by short name: logreg, svc, knn, rf, mlp.

    Defaults are sklearn's except where its default does not converge on pixels
    (LogisticRegression max_iter 1000, MLP max_iter 500). probability: SVC with Platt scaling.
    """
    rs = seed_int(seed)
    if name == "logreg":
        return LogisticRegression(max_iter=1000)
    if name == "svc":
        if probability:
            # Platt scaling fitted on the whole training set after 5-fold calibration, i.e. what
            # SVC(probability=True) did before sklearn 1.9 deprecated it.
            return CalibratedClassifierCV(SVC(random_state=rs), method="sigmoid", ensemble=False)
        return SVC(random_state=rs)
    if name == "knn":
        return KNeighborsClassifier()
    if name == "rf":
        return RandomForestClassifier(random_state=rs)
    if name == "mlp":
        return MLPClassifier(max_iter=500, random_state=rs)
    raise ValueError(f"unknown sklearn estimator {name!r}; choose {', '.join(ESTIMATORS)}")


def fit_estimator(est, x: np.ndarray, y: np.ndarray):
    """est.fit(x (N, D), y (N,)) with the budget's expected warnings silenced. -> est.

    ValueError when y holds a single class (no classifier can be fitted)."""
    if np.unique(y).size < 2:
        raise ValueError("the training labels hold a single class; a classifier needs at least two")
    with warnings.catch_warnings():
        # MLP / LabelSpreading may stop at max_iter: the budget is what it is. Few labelled rows
        # per class make the 5-fold Platt calibration warn; it still fits.
        warnings.simplefilter("ignore", ConvergenceWarning)
        warnings.filterwarnings("ignore", message="The least populated class", category=UserWarning)
        return est.fit(x, y)


def class_scores(est, x: np.ndarray, num_classes: int) -> np.ndarray:
    """(N, K) scores of a fitted classifier, larger = more likely, -inf for classes it never saw.

    Uses predict_proba when the estimator has it, otherwise the one-vs-rest decision function
    (an SVC without Platt scaling). Only the order within a row matters to the callers.
    """
    if hasattr(est, "predict_proba"):
        s = est.predict_proba(x)
    else:
        s = est.decision_function(x)
        if s.ndim == 1:  # binary: one margin for the second class
            s = np.stack([-s, s], axis=1)
    out = np.full((x.shape[0], num_classes), -np.inf)
    out[:, np.asarray(est.classes_, dtype=np.int64)] = s
    return out


def cleanlearning_svc(train_data: ArrayDataset, labels, test_data: ArrayDataset, *, seed: int) -> dict:
    """cleanlab's CleanLearning around the Platt-scaled SVC: 5-fold out-of-fold probabilities find
    the label issues (confident learning), the SVC is refitted without them. Noisy labels only;
    needs the optional `cleanlab` package (`pip install 'wsl-diffusion[compare]'`)."""
    try:
        from cleanlab.classification import CleanLearning
    except ImportError as exc:
        raise ValueError("the cleanlearning_svc baseline needs cleanlab: pip install 'wsl-diffusion[compare]' "
                         "(or leave the method out with --methods)") from exc
    check_inputs(train_data, labels)
    if labels.kind != "noisy":
        raise ValueError(f"cleanlearning_svc takes noisy labels, not {labels.kind!r}")
    x, y = flat_features(train_data), np.asarray(labels.observed, dtype=np.int64)
    t0 = time.perf_counter()
    cl = CleanLearning(make_estimator("svc", seed=seed, probability=True), seed=seed_int(seed), cv_n_folds=5,
                       verbose=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        warnings.filterwarnings("ignore", message="The least populated class", category=UserWarning)
        cl.fit(x, y)
    seconds = time.perf_counter() - t0
    pred = cl.predict(flat_features(test_data))
    return {"accuracy": float(np.mean(pred == label_space_targets(labels, test_data))), "train_seconds": seconds,
            "label_issues": int(np.sum(cl.get_label_issues()["is_label_issue"]))}


def naive_sklearn(estimator: str) -> BaselineFn:
    """The baseline fitting `make_estimator(estimator)` on the naive training set."""
    def run(train_data: ArrayDataset, labels, test_data: ArrayDataset, *, seed: int) -> dict:
        check_inputs(train_data, labels)
        rng = baseline_rng(seed)
        x = flat_features(train_data)
        rows, y = naive_training_set(labels, rng)
        t0 = time.perf_counter()
        est = fit_estimator(make_estimator(estimator, seed=seed), x[rows], y)
        seconds = time.perf_counter() - t0
        pred = est.predict(flat_features(test_data))
        return {"accuracy": float(np.mean(pred == label_space_targets(labels, test_data))), "train_seconds": seconds}

    run.__name__ = f"naive_{estimator}"
    return run


# ----------------------------------------------------------------------------------------------
# Partial labels: candidate-aware self-training


def best_candidate(scores: np.ndarray, mask: np.ndarray, current: np.ndarray) -> np.ndarray:
    """(N,) the highest-scoring class within each row's candidate set; a row where the model saw
    none of its candidates (all scores -inf) keeps its `current` label."""
    restricted = np.where(mask, scores, -np.inf)
    known = np.isfinite(restricted).any(axis=1)
    return np.where(known, restricted.argmax(axis=1), current)


def disambiguate_candidates(x: np.ndarray, candidates: np.ndarray, *, estimator: str, seed: int,
                            rounds: int = 5, folds: int = 2) -> np.ndarray:
    """Pick one label per training row from its candidate set by self-training. -> (N,) int.

    Start: fit on the rows whose candidate set is a single class when those cover every class
    with at least two rows each, otherwise on one random candidate per row. Each round: score every
    row with a model that did NOT see it (`folds`-fold cross-fitting: an RBF SVC refitted on its own
    labels would just hand them back), take the best-scoring class *within the candidate set*, and
    stop early when no label changes. candidates: (N, K) 0/1 masks.
    """
    mask = np.asarray(candidates) > 0
    n, k = mask.shape
    rng = baseline_rng(seed)
    y = pick_candidates(mask, rng.random(len(mask)))
    sure = mask.sum(axis=1) == 1
    counts = np.bincount(y[sure], minlength=k)
    if np.all(counts >= 2):
        scores = class_scores(fit_estimator(make_estimator(estimator, seed=seed), x[sure], y[sure]), x, k)
        y = best_candidate(scores, mask, y)
    fold_of = rng.permutation(n) % folds
    for _ in range(rounds):
        scores = np.empty((n, k))
        for f in range(folds):
            held = fold_of == f
            est = fit_estimator(make_estimator(estimator, seed=seed), x[~held], y[~held])
            scores[held] = class_scores(est, x[held], k)
        new = best_candidate(scores, mask, y)
        if np.array_equal(new, y):
            break
        y = new
    return y


def candidate_self_training(estimator: str, rounds: int) -> BaselineFn:
    """The partial-label baseline: `disambiguate_candidates`, then one fit on the picked labels."""
    def run(train_data: ArrayDataset, labels, test_data: ArrayDataset, *, seed: int) -> dict:
        check_inputs(train_data, labels)
        if labels.kind != "partial":
            raise ValueError(f"candidate-aware self-training needs partial labels, got {labels.kind!r}")
        x = flat_features(train_data)
        t0 = time.perf_counter()
        y = disambiguate_candidates(x, labels.matrix, estimator=estimator, seed=seed, rounds=rounds)
        est = fit_estimator(make_estimator(estimator, seed=seed), x, y)
        seconds = time.perf_counter() - t0
        pred = est.predict(flat_features(test_data))
        out = {"accuracy": float(np.mean(pred == label_space_targets(labels, test_data))), "train_seconds": seconds}
        if labels.true_labels is not None:  # diagnostic: how well the training labels were recovered
            out["train_label_accuracy"] = float(np.mean(y == labels.true_labels))
        return out

    run.__name__ = f"candidate_self_training_{estimator}"
    return run


# ----------------------------------------------------------------------------------------------
# Semi-supervised: scikit-learn's label spreading and self-training


LABEL_SPREADING_NEIGHBOURS = 7


def local_rbf_gamma(x: np.ndarray, *, neighbours: int = LABEL_SPREADING_NEIGHBOURS) -> float:
    """RBF gamma for a label-propagation graph: affinity exp(-2) at the median distance to the
    `neighbours`-th nearest neighbour, i.e. gamma = 2 / median(d_k^2).

    Scale-free, and local on purpose: sklearn's gamma=20 on pixels in [0, 1] makes every pair of
    digits unrelated (~exp(-200)), while 1 / median pairwise distance links everything and
    propagation washes the labels out (60% on digits at 5% labelled against ~94% here).
    """
    k = min(neighbours, x.shape[0] - 1)
    if k < 1:
        return 1.0
    dist, _ = NearestNeighbors(n_neighbors=k + 1).fit(x).kneighbors(x)  # column 0 is the point itself
    d2 = float(np.median(dist[:, k] ** 2))
    return 2.0 / d2 if d2 > 0 else 1.0


def _semi_targets(labels) -> np.ndarray:
    """(N,) observed label, -1 for unlabelled rows (sklearn.semi_supervised's convention)."""
    if labels.kind != "semi":
        raise ValueError(f"this baseline needs semi-supervised labels, got {labels.kind!r}")
    return np.asarray(labels.observed, dtype=np.int64)


def label_spreading(kernel: str) -> BaselineFn:
    """sklearn LabelSpreading with a kNN ("knn", k = 7) or RBF ("rbf", `local_rbf_gamma`) graph."""
    def run(train_data: ArrayDataset, labels, test_data: ArrayDataset, *, seed: int) -> dict:
        check_inputs(train_data, labels)
        x = flat_features(train_data)
        y = _semi_targets(labels)
        t0 = time.perf_counter()
        if kernel == "knn":
            model = LabelSpreading(kernel="knn", n_neighbors=LABEL_SPREADING_NEIGHBOURS, max_iter=1000)
        else:
            model = LabelSpreading(kernel="rbf", gamma=local_rbf_gamma(x), max_iter=1000)
        fit_estimator(model, x, y)
        seconds = time.perf_counter() - t0
        pred = model.predict(flat_features(test_data))
        return {"accuracy": float(np.mean(pred == label_space_targets(labels, test_data))), "train_seconds": seconds}

    run.__name__ = f"label_spreading_{kernel}"
    return run


def self_training_svc(train_data: ArrayDataset, labels, test_data: ArrayDataset, *, seed: int) -> dict:
    """sklearn SelfTrainingClassifier around an SVC with Platt scaling (threshold 0.75, 10 rounds)."""
    check_inputs(train_data, labels)
    x = flat_features(train_data)
    y = _semi_targets(labels)
    t0 = time.perf_counter()
    model = SelfTrainingClassifier(make_estimator("svc", seed=seed, probability=True), threshold=0.75, max_iter=10)
    fit_estimator(model, x, y)
    seconds = time.perf_counter() - t0
    pred = model.predict(flat_features(test_data))
    return {"accuracy": float(np.mean(pred == label_space_targets(labels, test_data))), "train_seconds": seconds}


# ----------------------------------------------------------------------------------------------
# Positive-unlabelled: Elkan & Noto (2008)


def elkan_noto(estimator: str) -> BaselineFn:
    """The PU baseline of Elkan & Noto with a `make_estimator(estimator, probability=True)`."""
    def run(train_data: ArrayDataset, labels, test_data: ArrayDataset, *, seed: int,
            holdout: float = 0.2) -> dict:
        """g(x) = p(s = 1 | x) from labelled-vs-unlabelled; c = E[g | s = 1] on held-out labelled
        positives; p(y = 1 | x) = g(x) / c (selected completely at random), positive if > 1/2."""
        check_inputs(train_data, labels)
        if labels.kind != "pu":
            raise ValueError(f"Elkan-Noto needs positive-unlabelled labels, got {labels.kind!r}")
        rng = baseline_rng(seed)
        x = flat_features(train_data)
        s = (np.asarray(labels.observed) == 1).astype(np.int64)
        held = np.zeros(len(s), dtype=bool)
        for value in (0, 1):  # stratified hold-out, so both parts have labelled positives
            rows = np.flatnonzero(s == value)
            held[rng.permutation(rows)[: max(1, int(round(holdout * len(rows))))]] = True
        if not np.any(held & (s == 1)) or not np.any(~held & (s == 1)):
            raise ValueError("Elkan-Noto needs at least two labelled positives (one to fit, one to estimate c)")
        t0 = time.perf_counter()
        est = fit_estimator(make_estimator(estimator, seed=seed, probability=True), x[~held], s[~held])
        c = float(np.clip(est.predict_proba(x[held & (s == 1)])[:, 1].mean(), 1e-3, 1.0))
        seconds = time.perf_counter() - t0
        p_pos = est.predict_proba(flat_features(test_data))[:, 1] / c
        pred = (p_pos > 0.5).astype(np.int64)
        return {"accuracy": float(np.mean(pred == label_space_targets(labels, test_data))), "train_seconds": seconds,
                "label_frequency": c}

    run.__name__ = f"elkan_noto_{estimator}"
    return run
