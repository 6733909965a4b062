"""Baselines for the benchmark: scikit-learn on raw pixels and small conv nets with
weak-supervision losses, each trained from the same imprecise labels as the diffusion model.

Every baseline is a function

    run(train_data, labels, test_data, *, seed) -> {"accuracy": float, "train_seconds": float, ...}

where `labels` is the `label_models.ImpreciseLabels` of `train_data` and the accuracy is measured on
the test split in the label model's class space (`targets_in_label_space`: binary for PU).
`train_seconds` is the fitting time only (prediction excluded). All randomness comes from `seed`
through explicit numpy / torch generators.

How each kind of label is used by the *naive* baselines ("trained on the observed labels"):
  clean / noisy: the observed hard label of every row;
  partial:       one candidate per row drawn uniformly (fixed for the run);
  semi:          the labelled rows only;
  pu:            labelled positives = 1, every unlabelled row = 0 (negative).
The label-aware baselines (candidate-aware self-training, label spreading, self-training SVC,
Elkan–Noto, forward correction, ELR, PRODEN) use the imprecise label as what it is.

`REGISTRY` maps a method name to a `Baseline` (name, the supervision kinds it applies to, its
training budget as a printable string, and the function); `methods_for(kind)` lists the callables
for one kind, and `register` adds one (tests inject failing methods this way).
"""
from __future__ import annotations

import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from label_models.labels import SUPERVISION_KINDS
from label_models.likelihood import pick_candidates

from wsl_diffusion.data.datasets import ArrayDataset, flat_features, targets_in_label_space

BaselineFn = Callable[..., dict]


@dataclass(frozen=True)
class Baseline:
    """One benchmark method that is not a diffusion model.

    kinds: the supervision kinds it applies to. budget: how much training it gets, printed beside
    its numbers in the report (e.g. "sklearn default", "CNN 40 ep"). family: "sklearn" (on
    pixels) or "neural" (the small CNN), for the report's comparison per family.
    """

    name: str
    kinds: tuple[str, ...]
    budget: str
    run: BaselineFn
    description: str = ""
    family: str = "sklearn"


REGISTRY: dict[str, Baseline] = {}


def register(baseline: Baseline, *, replace: bool = False) -> Baseline:
    """Add a method to the registry (ValueError on a name clash unless replace=True)."""
    if baseline.name in REGISTRY and not replace:
        raise ValueError(f"a baseline named {baseline.name!r} is already registered")
    unknown = [k for k in baseline.kinds if k not in SUPERVISION_KINDS]
    if unknown:
        raise ValueError(f"baseline {baseline.name!r}: unknown supervision kinds {unknown}")
    REGISTRY[baseline.name] = baseline
    return baseline


def methods_for(kind: str) -> dict[str, BaselineFn]:
    """The baselines that apply to a supervision kind, name -> callable, in registration order."""
    if kind not in SUPERVISION_KINDS:
        raise ValueError(f"unknown supervision kind {kind!r}; choose one of {', '.join(SUPERVISION_KINDS)}")
    return {name: b.run for name, b in REGISTRY.items() if kind in b.kinds}


# ----------------------------------------------------------------------------------------------
# Turning imprecise labels into training sets


def naive_training_set(labels, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """(rows, targets): which training rows a naive baseline fits on, with which hard labels.

    See the module docstring for the rule per kind. rows: (M,) int indices; targets: (M,) int.
    """
    n = labels.num_samples
    if labels.kind in ("clean", "noisy"):
        return np.arange(n), np.asarray(labels.observed, dtype=np.int64)
    if labels.kind == "partial":
        return np.arange(n), pick_candidates(labels.matrix, rng.random(labels.num_samples))
    if labels.kind == "semi":
        rows = np.flatnonzero(labels.observed >= 0)
        return rows, np.asarray(labels.observed[rows], dtype=np.int64)
    if labels.kind == "pu":
        return np.arange(n), (np.asarray(labels.observed) == 1).astype(np.int64)
    raise ValueError(f"unknown supervision kind {labels.kind!r}")


def _test_targets(labels, test_data: ArrayDataset) -> np.ndarray:
    return targets_in_label_space(labels, test_data.targets)


def _check_inputs(train_data: ArrayDataset, labels) -> None:
    if labels.num_samples != len(train_data):
        raise ValueError(f"{labels.num_samples} label rows for {len(train_data)} training images")


# The benchmark corrupts a setting's labels with numpy.random.default_rng(seed) and runs its
# baselines with the same seed. A baseline drawing from that same stream re-reads the corruption's
# uniforms: a partial label includes a wrong class where u < q, so "the candidate with the largest
# u" was the true class for ~78% of rows instead of ~27% (digits, q = 0.3) -- an oracle leak that
# inflated the partial-label baselines. Baselines therefore draw from their own stream.
BASELINE_STREAM = 0xB45E


def baseline_rng(seed: int) -> np.random.Generator:
    """The baselines' numpy generator for a benchmark seed, independent of the corruption's."""
    return np.random.default_rng([seed, BASELINE_STREAM])


def _seed_int(seed: int) -> int:
    """sklearn's random_state from the benchmark seed (an int keeps estimators reproducible)."""
    return int(baseline_rng(seed).integers(2**31 - 1))


# ----------------------------------------------------------------------------------------------
# scikit-learn estimators on pixels in [0, 1]


def make_estimator(name: str, *, seed: int, probability: bool = False):
    """A fresh scikit-learn classifier by short name: logreg, svc, knn, rf, mlp.

    Defaults are sklearn's except where its default does not converge on pixels
    (LogisticRegression max_iter 1000, MLP max_iter 500). probability: SVC with Platt scaling.
    """
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.linear_model import LogisticRegression
    from sklearn.neighbors import KNeighborsClassifier
    from sklearn.neural_network import MLPClassifier
    from sklearn.svm import SVC

    rs = _seed_int(seed)
    if name == "logreg":
        return LogisticRegression(max_iter=1000)
    if name == "svc":
        if probability:
            # Platt scaling fitted on the whole training set after 5-fold calibration, i.e. what
            # SVC(probability=True) did before sklearn 1.9 deprecated it.
            from sklearn.calibration import CalibratedClassifierCV

            return CalibratedClassifierCV(SVC(random_state=rs), method="sigmoid", ensemble=False)
        return SVC(random_state=rs)
    if name == "knn":
        return KNeighborsClassifier()
    if name == "rf":
        return RandomForestClassifier(random_state=rs)
    if name == "mlp":
        return MLPClassifier(max_iter=500, random_state=rs)
    raise ValueError(f"unknown sklearn estimator {name!r}; choose logreg, svc, knn, rf or mlp")


def _fit(est, x: np.ndarray, y: np.ndarray):
    from sklearn.exceptions import ConvergenceWarning

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


def _naive_sklearn(estimator: str) -> BaselineFn:
    def run(train_data: ArrayDataset, labels, test_data: ArrayDataset, *, seed: int) -> dict:
        _check_inputs(train_data, labels)
        rng = baseline_rng(seed)
        x = flat_features(train_data)
        rows, y = naive_training_set(labels, rng)
        t0 = time.perf_counter()
        est = _fit(make_estimator(estimator, seed=seed), x[rows], y)
        seconds = time.perf_counter() - t0
        pred = est.predict(flat_features(test_data))
        return {"accuracy": float(np.mean(pred == _test_targets(labels, test_data))), "train_seconds": seconds}

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
        scores = class_scores(_fit(make_estimator(estimator, seed=seed), x[sure], y[sure]), x, k)
        y = best_candidate(scores, mask, y)
    fold_of = rng.permutation(n) % folds
    for _ in range(rounds):
        scores = np.empty((n, k))
        for f in range(folds):
            held = fold_of == f
            est = _fit(make_estimator(estimator, seed=seed), x[~held], y[~held])
            scores[held] = class_scores(est, x[held], k)
        new = best_candidate(scores, mask, y)
        if np.array_equal(new, y):
            break
        y = new
    return y


def _candidate_self_training(estimator: str, rounds: int) -> BaselineFn:
    def run(train_data: ArrayDataset, labels, test_data: ArrayDataset, *, seed: int) -> dict:
        _check_inputs(train_data, labels)
        if labels.kind != "partial":
            raise ValueError(f"candidate-aware self-training needs partial labels, got {labels.kind!r}")
        x = flat_features(train_data)
        t0 = time.perf_counter()
        y = disambiguate_candidates(x, labels.matrix, estimator=estimator, seed=seed, rounds=rounds)
        est = _fit(make_estimator(estimator, seed=seed), x, y)
        seconds = time.perf_counter() - t0
        pred = est.predict(flat_features(test_data))
        out = {"accuracy": float(np.mean(pred == _test_targets(labels, test_data))), "train_seconds": seconds}
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
    from sklearn.neighbors import NearestNeighbors

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


def _label_spreading(kernel: str) -> BaselineFn:
    def run(train_data: ArrayDataset, labels, test_data: ArrayDataset, *, seed: int) -> dict:
        from sklearn.semi_supervised import LabelSpreading

        _check_inputs(train_data, labels)
        x = flat_features(train_data)
        y = _semi_targets(labels)
        t0 = time.perf_counter()
        if kernel == "knn":
            model = LabelSpreading(kernel="knn", n_neighbors=LABEL_SPREADING_NEIGHBOURS, max_iter=1000)
        else:
            model = LabelSpreading(kernel="rbf", gamma=local_rbf_gamma(x), max_iter=1000)
        _fit(model, x, y)
        seconds = time.perf_counter() - t0
        pred = model.predict(flat_features(test_data))
        return {"accuracy": float(np.mean(pred == _test_targets(labels, test_data))), "train_seconds": seconds}

    run.__name__ = f"label_spreading_{kernel}"
    return run


def self_training_svc(train_data: ArrayDataset, labels, test_data: ArrayDataset, *, seed: int) -> dict:
    """sklearn SelfTrainingClassifier around an SVC with Platt scaling (threshold 0.75, 10 rounds)."""
    from sklearn.semi_supervised import SelfTrainingClassifier

    _check_inputs(train_data, labels)
    x = flat_features(train_data)
    y = _semi_targets(labels)
    t0 = time.perf_counter()
    model = SelfTrainingClassifier(make_estimator("svc", seed=seed, probability=True), threshold=0.75, max_iter=10)
    _fit(model, x, y)
    seconds = time.perf_counter() - t0
    pred = model.predict(flat_features(test_data))
    return {"accuracy": float(np.mean(pred == _test_targets(labels, test_data))), "train_seconds": seconds}


# ----------------------------------------------------------------------------------------------
# Positive-unlabelled: Elkan & Noto (2008)


def _elkan_noto(estimator: str) -> BaselineFn:
    def run(train_data: ArrayDataset, labels, test_data: ArrayDataset, *, seed: int,
            holdout: float = 0.2) -> dict:
        """g(x) = p(s = 1 | x) from labelled-vs-unlabelled; c = E[g | s = 1] on held-out labelled
        positives; p(y = 1 | x) = g(x) / c (selected completely at random), positive if > 1/2."""
        _check_inputs(train_data, labels)
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
        est = _fit(make_estimator(estimator, seed=seed, probability=True), x[~held], s[~held])
        c = float(np.clip(est.predict_proba(x[held & (s == 1)])[:, 1].mean(), 1e-3, 1.0))
        seconds = time.perf_counter() - t0
        p_pos = est.predict_proba(flat_features(test_data))[:, 1] / c
        pred = (p_pos > 0.5).astype(np.int64)
        return {"accuracy": float(np.mean(pred == _test_targets(labels, test_data))), "train_seconds": seconds,
                "label_frequency": c}

    run.__name__ = f"elkan_noto_{estimator}"
    return run


# ----------------------------------------------------------------------------------------------
# Neural baselines: a small conv net with weak-supervision losses

CNN_EPOCHS = 20
CNN_BATCH = 64
CNN_LR = 1e-3


def conv_net(in_channels: int, num_classes: int, *, width: int = 32):
    """A small CNN for any image size: two 3x3 conv blocks, 2x2 pool, one more block, global
    average pool, linear head. ~60k parameters at width 32."""
    from torch import nn

    return nn.Sequential(
        nn.Conv2d(in_channels, width, 3, padding=1), nn.BatchNorm2d(width), nn.ReLU(),
        nn.Conv2d(width, 2 * width, 3, padding=1), nn.BatchNorm2d(2 * width), nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(2 * width, 2 * width, 3, padding=1), nn.BatchNorm2d(2 * width), nn.ReLU(),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(),
        nn.Linear(2 * width, num_classes),
    )


def train_conv_net(images, num_classes: int, loss_fn, *, seed: int, epochs: int = CNN_EPOCHS,
                   batch_size: int = CNN_BATCH, lr: float = CNN_LR):
    """Fit `conv_net` with Adam (cosine-decayed learning rate) on images (N, C, H, W) in [-1, 1];
    returns the model in eval mode.

    loss_fn(logits (B, K), idx (B,) int64 row indices) -> scalar: the loss closes over its own
    per-row state (targets, PRODEN weights, ELR's running predictions) and may update it.
    Weights and batch order come from torch generators seeded by `seed`; global RNG untouched.
    """
    import torch

    init = torch.Generator().manual_seed(seed)
    with torch.random.fork_rng(devices=[]):  # module initialisers draw from the global generator
        torch.manual_seed(int(torch.randint(2**31 - 1, (1,), generator=init)))
        net = conv_net(images.shape[1], num_classes)
    opt = torch.optim.Adam(net.parameters(), lr=lr, weight_decay=1e-4)
    order_gen = torch.Generator().manual_seed(seed + 1)
    n = images.shape[0]
    # Decaying to zero makes the end point a settled model rather than one noisy-label batch away
    # from a different one (with constant lr the test accuracy under noise swings by 5-10 points).
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=max(1, epochs * -(-n // batch_size)))
    net.train()
    for _ in range(epochs):
        perm = torch.randperm(n, generator=order_gen)
        for start in range(0, n, batch_size):
            idx = perm[start:start + batch_size]
            if idx.numel() < 2:  # BatchNorm needs more than one sample
                continue
            loss = loss_fn(net(images[idx]), idx)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
    return net.eval()


def _cnn_accuracy(net, test_data: ArrayDataset, targets: np.ndarray) -> float:
    import torch

    from wsl_diffusion.data.datasets import to_model_space

    with torch.no_grad():
        pred = net(to_model_space(test_data.images)).argmax(dim=1).numpy()
    return float(np.mean(pred == targets))


def _cnn_problem(train_data: ArrayDataset, labels):
    from wsl_diffusion.data.datasets import to_model_space

    _check_inputs(train_data, labels)
    k = 2 if labels.kind == "pu" else labels.num_classes
    return to_model_space(train_data.images), k


def cnn_ce(train_data: ArrayDataset, labels, test_data: ArrayDataset, *, seed: int) -> dict:
    """Cross-entropy on the naive training set (see module docstring)."""
    import torch
    import torch.nn.functional as F

    images, k = _cnn_problem(train_data, labels)
    rows, y = naive_training_set(labels, baseline_rng(seed))
    rows_t, y_t = torch.from_numpy(np.array(rows)), torch.from_numpy(np.array(y))
    t0 = time.perf_counter()
    net = train_conv_net(images[rows_t], k, lambda logits, idx: F.cross_entropy(logits, y_t[idx]),
                         seed=seed, epochs=CNN_EPOCHS)
    seconds = time.perf_counter() - t0
    return {"accuracy": _cnn_accuracy(net, test_data, _test_targets(labels, test_data)), "train_seconds": seconds}


def _transition_for(labels, x: np.ndarray, seed: int) -> np.ndarray:
    """The label model's T; without one, an anchor-point estimate from a logistic regression
    fitted on the noisy labels (Patrini et al. 2017)."""
    if labels.transition_matrix is not None:
        return np.asarray(labels.transition_matrix, dtype=np.float64)
    from label_models.transition import estimate_transition_anchor

    est = _fit(make_estimator("logreg", seed=seed), x, labels.observed)
    return estimate_transition_anchor(class_scores(est, x, labels.num_classes).clip(0, 1))


def cnn_forward(train_data: ArrayDataset, labels, test_data: ArrayDataset, *, seed: int) -> dict:
    """Forward-corrected cross-entropy (Patrini et al. 2017): -log (softmax(f(x))^T T)_z, with
    T[i, j] = P(z = j | y = i) from the label model."""
    import torch

    if labels.kind not in ("clean", "noisy"):
        raise ValueError(f"forward correction needs clean or noisy labels, got {labels.kind!r}")
    images, k = _cnn_problem(train_data, labels)
    t = torch.from_numpy(np.array(_transition_for(labels, flat_features(train_data), seed), dtype=np.float32))
    z = torch.from_numpy(np.array(labels.observed, dtype=np.int64))

    def loss_fn(logits, idx):
        noisy_probs = torch.softmax(logits, dim=1) @ t  # (B, K) p(z | x) = sum_y p(y | x) T[y, z]
        return -noisy_probs.gather(1, z[idx, None]).clamp_min(1e-12).log().mean()

    t0 = time.perf_counter()
    net = train_conv_net(images, k, loss_fn, seed=seed, epochs=CNN_EPOCHS)
    seconds = time.perf_counter() - t0
    return {"accuracy": _cnn_accuracy(net, test_data, _test_targets(labels, test_data)), "train_seconds": seconds}


ELR_LAMBDA = 3.0
ELR_BETA = 0.7


def cnn_elr(train_data: ArrayDataset, labels, test_data: ArrayDataset, *, seed: int) -> dict:
    """Early-learning regularisation (Liu et al. 2020): CE(z) + lambda log(1 - <p, t>), t a running
    average (beta 0.7) of each sample's past predictions; lambda 3 (their CIFAR-10 value)."""
    import torch
    import torch.nn.functional as F

    if labels.kind not in ("clean", "noisy"):
        raise ValueError(f"ELR needs clean or noisy labels, got {labels.kind!r}")
    images, k = _cnn_problem(train_data, labels)
    z = torch.from_numpy(np.array(labels.observed, dtype=np.int64))
    running = torch.zeros(len(z), k)  # (N, K) temporal ensemble of predictions

    def loss_fn(logits, idx):
        p = torch.softmax(logits, dim=1).clamp(1e-4, 1 - 1e-4)
        with torch.no_grad():
            q = p.detach() / p.detach().sum(1, keepdim=True)
            running[idx] = ELR_BETA * running[idx] + (1 - ELR_BETA) * q
        reg = torch.log(1 - (p * running[idx]).sum(1)).mean()
        return F.cross_entropy(logits, z[idx]) + ELR_LAMBDA * reg

    t0 = time.perf_counter()
    net = train_conv_net(images, k, loss_fn, seed=seed, epochs=CNN_EPOCHS)
    seconds = time.perf_counter() - t0
    return {"accuracy": _cnn_accuracy(net, test_data, _test_targets(labels, test_data)), "train_seconds": seconds}


def cnn_proden(train_data: ArrayDataset, labels, test_data: ArrayDataset, *, seed: int) -> dict:
    """PRODEN (Lv et al. 2020): CE against per-sample weights over the candidate set, which start
    uniform and are replaced after every batch by the model's own probabilities restricted to the
    candidates and renormalised."""
    import torch

    if labels.kind != "partial":
        raise ValueError(f"PRODEN needs partial labels, got {labels.kind!r}")
    images, k = _cnn_problem(train_data, labels)
    mask = torch.from_numpy(np.array(labels.matrix > 0)).float()  # (N, K)
    weights = mask / mask.sum(1, keepdim=True)

    def loss_fn(logits, idx):
        log_p = torch.log_softmax(logits, dim=1)
        loss = -(weights[idx] * log_p).sum(1).mean()
        with torch.no_grad():
            w = log_p.detach().exp() * mask[idx]
            weights[idx] = w / w.sum(1, keepdim=True).clamp_min(1e-12)
        return loss

    t0 = time.perf_counter()
    net = train_conv_net(images, k, loss_fn, seed=seed, epochs=CNN_EPOCHS)
    seconds = time.perf_counter() - t0
    out = {"accuracy": _cnn_accuracy(net, test_data, _test_targets(labels, test_data)), "train_seconds": seconds}
    if labels.true_labels is not None:
        out["train_label_accuracy"] = float((weights.argmax(1).numpy() == labels.true_labels).mean())
    return out


# ----------------------------------------------------------------------------------------------
# The registry

_ALL = SUPERVISION_KINDS
_NAIVE_NOTE = "observed labels (partial: a random candidate; semi: labelled rows; pu: unlabelled = negative)"
_CNN_BUDGET = f"CNN {CNN_EPOCHS} ep"

for _est, _title in (("logreg", "LogisticRegression"), ("svc", "SVC (RBF)"), ("knn", "kNN (k=5)"),
                     ("rf", "RandomForest"), ("mlp", "MLP")):
    register(Baseline(_est, _ALL, "sklearn default", _naive_sklearn(_est), f"{_title} on {_NAIVE_NOTE}"))
register(Baseline("svc_selftrain", ("partial",), "sklearn default, 5 rounds", _candidate_self_training("svc", 5),
                  "candidate-aware self-training, SVC decision function restricted to the candidates"))
register(Baseline("logreg_selftrain", ("partial",), "sklearn default, 5 rounds",
                  _candidate_self_training("logreg", 5),
                  "candidate-aware self-training, LogisticRegression probabilities restricted to the candidates"))
register(Baseline("labelspreading_knn", ("semi",), "sklearn, k=7", _label_spreading("knn"),
                  "LabelSpreading, kNN graph"))
register(Baseline("labelspreading_rbf", ("semi",), "sklearn, local gamma", _label_spreading("rbf"),
                  "LabelSpreading, RBF kernel with gamma = 2 / median squared 7th-neighbour distance"))
register(Baseline("selftraining_svc", ("semi",), "sklearn, 10 rounds", self_training_svc,
                  "SelfTrainingClassifier(SVC(probability=True)), threshold 0.75"))
register(Baseline("elkan_noto_logreg", ("pu",), "sklearn default", _elkan_noto("logreg"),
                  "Elkan-Noto: labelled-vs-unlabelled LogisticRegression divided by c"))
register(Baseline("elkan_noto_svc", ("pu",), "sklearn default", _elkan_noto("svc"),
                  "Elkan-Noto: labelled-vs-unlabelled SVC (Platt) divided by c"))
register(Baseline("cnn_ce", _ALL, _CNN_BUDGET, cnn_ce, f"small CNN, cross-entropy on {_NAIVE_NOTE}",
                  family="neural"))
register(Baseline("cnn_forward", ("noisy",), _CNN_BUDGET, cnn_forward,
                  "small CNN, forward-corrected cross-entropy with the label model's T", family="neural"))
register(Baseline("cnn_elr", ("clean", "noisy"), _CNN_BUDGET, cnn_elr, "small CNN, early-learning regularisation",
                  family="neural"))
register(Baseline("cnn_proden", ("partial",), _CNN_BUDGET, cnn_proden, "small CNN, PRODEN", family="neural"))
del _est, _title
