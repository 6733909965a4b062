"""Synthetic corruption of clean labels into imprecise ones (the paper's experimental settings).

Every generator takes the true labels ``y`` ((N,) int in [0, K)) and an explicit
``numpy.random.Generator``, and returns :class:`ImpreciseLabels` with ``true_labels`` set, so the
realised corruption can always be audited (see ``label_models.summary``).
:func:`corrupt` dispatches a :class:`CorruptionSpec`; both ``wsl-diff corrupt`` and
``wsl-diff train`` go through it, so a seed names the same label set everywhere.
"""
from __future__ import annotations

import math
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, replace
from types import MappingProxyType
from typing import Any

import numpy as np
from scipy.optimize import brentq
from scipy.stats import truncnorm

from label_models._checks import check_num_classes
from label_models.labels import SUPERVISION_KINDS, ImpreciseLabels
from label_models.transition import (
    NOISE_MODELS,
    asymmetric_transition,
    symmetric_transition,
    validate_class_map,
)

# Pair flips between look-alike CIFAR-10 classes (Patrini et al. 2017; the paper's asym setting):
# truck -> automobile, bird -> airplane, deer -> horse, cat <-> dog.
CIFAR10_ASYM_MAP: Mapping[int, int] = MappingProxyType({9: 1, 2: 0, 4: 7, 3: 5, 5: 3})
# The usual MNIST pair flips between visually confusable digits (Patrini et al. 2017):
# 2 -> 7, 3 -> 8, 5 <-> 6, 7 -> 1. Each source class flips to exactly one target.
DIGITS_ASYM_MAP: Mapping[int, int] = MappingProxyType({2: 7, 3: 8, 5: 6, 6: 5, 7: 1})
BUILTIN_CLASS_MAPS: Mapping[str, Mapping[int, int]] = MappingProxyType(
    {"digits": DIGITS_ASYM_MAP, "cifar10": CIFAR10_ASYM_MAP}
)

# Class-dependent partial labels: inclusion probability of the classes at circulant offsets
# +1, +2, +3 (mod K) from the true class; every other wrong class is never a candidate.
CLASS_DEPENDENT_OFFSET_PROBS: tuple[float, ...] = (0.7, 0.5, 0.3)
# Spread of the per-sample flip rates of instance-dependent noise (Xia et al. 2020 use 0.1).
INSTANCE_RATE_SD = 0.1


# ----------------------------------------------------------------------------- validation helpers
def _check_y(y: np.ndarray, num_classes: int) -> np.ndarray:
    arr = np.asarray(y)
    if arr.ndim != 1 or arr.size == 0:
        raise ValueError(f"y must be a non-empty 1-D array of class indices, got shape {arr.shape}")
    if not np.issubdtype(arr.dtype, np.integer):
        raise ValueError(f"y must hold integer class indices, got dtype {arr.dtype}")
    if arr.min() < 0 or arr.max() >= num_classes:
        raise ValueError(f"y has labels outside [0, {num_classes - 1}] (min {arr.min()}, max {arr.max()})")
    return arr.astype(np.int64)


def _check_unit(name: str, value: float, *, low_open: bool = False, high_open: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise ValueError(f"{name} must be a number, got {value!r}")
    v = float(value)
    lo_ok = v > 0.0 if low_open else v >= 0.0
    hi_ok = v < 1.0 if high_open else v <= 1.0
    if not (math.isfinite(v) and lo_ok and hi_ok):
        interval = ("(" if low_open else "[") + "0, 1" + (")" if high_open else "]")
        raise ValueError(f"{name} must be in {interval}, got {value}")
    return v


def _check_rng(rng: np.random.Generator) -> np.random.Generator:
    if not isinstance(rng, np.random.Generator):
        raise ValueError(
            f"rng must be a numpy.random.Generator (e.g. numpy.random.default_rng(seed)), got {type(rng).__name__}"
        )
    return rng


def _check_positive_classes(positive_classes: Sequence[int], num_classes: int | None) -> tuple[int, ...]:
    try:
        values = [int(c) for c in positive_classes]
        if any(int(c) != c for c in positive_classes):
            raise TypeError
    except (TypeError, ValueError):
        raise ValueError(f"positive_classes must be a sequence of class indices, got {positive_classes!r}") from None
    if not values:
        raise ValueError("positive_classes is empty; name at least one positive class")
    if len(set(values)) != len(values):
        raise ValueError(f"positive_classes has duplicates: {values}")
    if min(values) < 0 or (num_classes is not None and max(values) >= num_classes):
        bound = f"[0, {num_classes - 1}]" if num_classes is not None else "non-negative"
        raise ValueError(f"positive_classes {values} must be class indices in {bound}")
    if num_classes is not None and len(values) == num_classes:
        raise ValueError(f"positive_classes covers all {num_classes} classes; leave at least one negative class")
    return tuple(sorted(values))


# ----------------------------------------------------------------------------- sampling helpers
def _one_hot(idx: np.ndarray, num_classes: int) -> np.ndarray:
    out = np.zeros((idx.shape[0], num_classes), dtype=np.float32)
    out[np.arange(idx.shape[0]), idx] = 1.0
    return out


def _sample_rows(probs: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """One categorical draw per row of an (N, K) row-stochastic matrix, by inverse CDF."""
    cdf = np.cumsum(probs, axis=1)
    u = rng.random(probs.shape[0])[:, None] * cdf[:, -1:]  # scale by the row sum: rounding-safe
    return np.minimum(np.sum(u >= cdf, axis=1), probs.shape[1] - 1)


def _select_per_class(groups: np.ndarray, wanted: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """(N,) bool mask choosing exactly ``wanted[g]`` samples uniformly at random from each group g."""
    n = groups.shape[0]
    counts = np.bincount(groups, minlength=wanted.shape[0])
    keys = rng.random(n)
    order = np.lexsort((keys, groups))  # grouped, random order inside each group
    starts = np.cumsum(counts) - counts
    rank = np.empty(n, dtype=np.int64)
    rank[order] = np.arange(n) - starts[groups[order]]
    return rank < wanted[groups]


def labelled_count(n: np.ndarray | int, fraction: float) -> np.ndarray:
    """How many of ``n`` samples a class keeps labelled: round(fraction * n), half up, at least 1
    when the class is non-empty and fraction > 0, never more than n."""
    n_arr = np.asarray(n, dtype=np.int64)
    m = np.floor(fraction * n_arr + 0.5).astype(np.int64)
    if fraction > 0:
        m = np.where(n_arr > 0, np.maximum(m, 1), 0)
    return np.minimum(m, n_arr)


def _noisy(y: np.ndarray, z: np.ndarray, num_classes: int, t: np.ndarray, meta: dict) -> ImpreciseLabels:
    return ImpreciseLabels(
        matrix=_one_hot(z, num_classes), kind="noisy", observed=z, true_labels=y, transition_matrix=t, meta=meta
    )


# ----------------------------------------------------------------------------- generators
def symmetric_noise(
    y: np.ndarray, *, num_classes: int, rate: float, rng: np.random.Generator
) -> ImpreciseLabels:
    """Flip each label w.p. ``rate`` to a class drawn uniformly among the K - 1 *other* classes.

    The true class is never redrawn, so the realised noise rate is ``rate`` (not rate (K-1)/K).
    T = (1 - rate) on the diagonal, rate / (K - 1) elsewhere.
    """
    k = check_num_classes(num_classes)
    y = _check_y(y, k)
    rate = _check_unit("rate", rate, high_open=True)
    rng = _check_rng(rng)
    flip = rng.random(y.shape[0]) < rate
    # A non-zero offset mod K is uniform over the other classes.
    offset = rng.integers(1, k, size=y.shape[0])
    z = np.where(flip, (y + offset) % k, y)
    return _noisy(y, z, k, symmetric_transition(k, rate), {"noise": "sym", "rate": rate})


def asymmetric_noise(
    y: np.ndarray, *, num_classes: int, rate: float, class_map: Mapping[int, int], rng: np.random.Generator
) -> ImpreciseLabels:
    """Flip a sample of class c w.p. ``rate`` to ``class_map[c]``; classes outside the map are kept.

    T[c, c] = 1 - rate, T[c, class_map[c]] = rate for mapped c, identity rows otherwise.
    """
    k = check_num_classes(num_classes)
    y = _check_y(y, k)
    rate = _check_unit("rate", rate, high_open=True)
    cmap = validate_class_map(class_map, k)
    rng = _check_rng(rng)
    target = np.arange(k)
    target[list(cmap.keys())] = list(cmap.values())
    flip = (rng.random(y.shape[0]) < rate) & (target[y] != y)
    z = np.where(flip, target[y], y)
    meta = {"noise": "asym", "rate": rate, "class_map": {str(a): b for a, b in cmap.items()}}
    return _noisy(y, z, k, asymmetric_transition(k, rate, cmap), meta)


def _truncnorm_location(mean: float, sd: float) -> float | None:
    """Location mu of a normal(mu, sd) truncated to [0, 1] whose *truncated* mean is ``mean``.

    Truncation pulls the mean towards 1/2 (e.g. a nominal 0.05 becomes about 0.10), so the location
    is solved for, making the expected flip rate exactly ``mean``. Returns None when ``mean`` is
    within ~5e-4 of 0 or 1, where no location in the searched range reaches it.
    """
    def truncated_mean(mu: float) -> float:
        with warnings.catch_warnings():  # scipy's higher moments warn in the far tails; unused here
            warnings.simplefilter("ignore", RuntimeWarning)
            return float(truncnorm.mean((0.0 - mu) / sd, (1.0 - mu) / sd, loc=mu, scale=sd))

    lo, hi = -20.0, 21.0  # truncated means ~5e-4 and ~1 - 5e-4
    if not truncated_mean(lo) < mean < truncated_mean(hi):
        return None
    return float(brentq(lambda mu: truncated_mean(mu) - mean, lo, hi, xtol=1e-10))


def instance_noise(
    y: np.ndarray, features: np.ndarray, *, num_classes: int, rate: float, rng: np.random.Generator
) -> ImpreciseLabels:
    """Instance-dependent label noise in the manner of Xia et al. (2020).

    features: (N, D) float, one row per sample (e.g. flattened pixels).

    1. Per-sample flip rates q_n ~ Normal(mu, 0.1^2) truncated to [0, 1], with mu chosen so that
       E[q_n] = ``rate`` exactly (the realised mean noise rate is ``rate``); for rates within
       ~5e-4 of 0 or 1, where no such mu exists, q_n = ``rate`` for every sample.
    2. One Gaussian projection W_c (D, K) per true class; the scores x_n W_{y_n} over the *other*
       classes, softmaxed, say where sample n's label goes: p(z = j | x_n) = q_n softmax_j for
       j != y_n, and 1 - q_n for j = y_n. Features are standardised and scaled by 1/sqrt(D) first
       so the scores are O(1) whatever the pixel scale (raw 0..255 pixels would make every
       softmax one-hot).
    3. z_n ~ p(z | x_n).

    The returned ``transition_matrix`` is the class-level T of this model: the average of the
    per-sample rows p(z | x_n) over the samples of each true class (identity row for an absent
    class). It is exact for the given features, not a count of the realised flips.
    """
    k = check_num_classes(num_classes)
    y = _check_y(y, k)
    rate = _check_unit("rate", rate, high_open=True)
    rng = _check_rng(rng)
    x = np.asarray(features, dtype=np.float64)
    if x.ndim != 2 or x.shape[0] != y.shape[0] or x.shape[1] == 0:
        raise ValueError(f"features must be (N, D) = ({y.shape[0]}, D>0) to match y, got shape {x.shape}")
    if not np.all(np.isfinite(x)):
        raise ValueError("features contain NaN or inf")
    n, d = x.shape

    mu = _truncnorm_location(rate, INSTANCE_RATE_SD)
    if mu is None:
        # Rates within ~5e-4 of 0 or 1: the truncated normal cannot have that mean, and its
        # zero-spread limit is a constant flip rate, so use exactly that.
        q = np.full(n, rate)
    else:
        a, b = (0.0 - mu) / INSTANCE_RATE_SD, (1.0 - mu) / INSTANCE_RATE_SD
        q = truncnorm.rvs(a, b, loc=mu, scale=INSTANCE_RATE_SD, size=n, random_state=rng)

    std = x.std(axis=0)
    xs = (x - x.mean(axis=0)) / np.where(std > 0, std, 1.0) / math.sqrt(d)
    w = rng.standard_normal((k, d, k))
    scores = np.empty((n, k))
    for c in range(k):  # a loop over classes (K projections), never over samples
        rows = y == c
        scores[rows] = xs[rows] @ w[c]
    rows = np.arange(n)
    scores[rows, y] = -np.inf  # the flip mass goes to the other classes only
    scores -= scores.max(axis=1, keepdims=True)
    flip_dist = np.exp(scores)
    flip_dist /= flip_dist.sum(axis=1, keepdims=True)
    per_sample = flip_dist * q[:, None]  # (N, K) p(z | x_n)
    per_sample[rows, y] = 1.0 - q
    z = _sample_rows(per_sample, rng)

    counts = np.bincount(y, minlength=k).astype(np.float64)
    sums = _one_hot(y, k).astype(np.float64).T @ per_sample  # (K, K) summed rows per true class
    t = np.divide(sums, counts[:, None], out=np.eye(k), where=counts[:, None] > 0)
    t /= t.sum(axis=1, keepdims=True)  # remove float drift so validation's 1e-6 tolerance holds
    meta = {"noise": "instance", "rate": rate, "rate_sd": INSTANCE_RATE_SD, "mean_flip_probability": float(q.mean())}
    return _noisy(y, z, k, t, meta)


def partial_labels(
    y: np.ndarray, *, num_classes: int, q: float, rng: np.random.Generator, class_dependent: bool = False
) -> ImpreciseLabels:
    """Candidate sets that always contain the true class.

    Uniform (default): each wrong class enters independently w.p. ``q``; E|S| = 1 + q (K - 1).
    Class-dependent: the classes at circulant offsets +1, +2, +3 (mod K) of the true class enter
    w.p. 0.7, 0.5, 0.3 and no other wrong class ever does; ``q`` is ignored; needs K >= 4 so the
    three offsets are distinct wrong classes; E|S| = 2.5.
    Returns kind "partial" labels: (N, K) 0/1 masks, observed None.
    """
    k = check_num_classes(num_classes)
    y = _check_y(y, k)
    rng = _check_rng(rng)
    if class_dependent:
        offsets = len(CLASS_DEPENDENT_OFFSET_PROBS)
        if k <= offsets:
            raise ValueError(f"class-dependent partial labels need at least {offsets + 1} classes, got {k}")
        inclusion = np.zeros((k, k))
        classes = np.arange(k)
        for offset, prob in enumerate(CLASS_DEPENDENT_OFFSET_PROBS, start=1):
            inclusion[classes, (classes + offset) % k] = prob
        meta: dict[str, Any] = {"class_dependent": True, "offset_probabilities": list(CLASS_DEPENDENT_OFFSET_PROBS)}
        expected = 1.0 + sum(CLASS_DEPENDENT_OFFSET_PROBS)
    else:
        q = _check_unit("q", q)
        inclusion = np.full((k, k), q)
        meta = {"class_dependent": False, "q": q}
        expected = 1.0 + q * (k - 1)
    np.fill_diagonal(inclusion, 1.0)  # the true class is always a candidate
    mask = rng.random((y.shape[0], k)) < inclusion[y]
    meta["expected_set_size"] = expected
    return ImpreciseLabels(matrix=mask.astype(np.float32), kind="partial", true_labels=y, meta=meta)


def semi_supervised(
    y: np.ndarray, *, num_classes: int, labelled_fraction: float, rng: np.random.Generator
) -> ImpreciseLabels:
    """Keep exactly ``labelled_count(n_c, labelled_fraction)`` labels of each class c, chosen
    uniformly at random; every other row becomes unlabelled (all ones, observed -1).

    Per-class (stratified) selection is the SSL benchmark protocol: every class has labels.
    """
    k = check_num_classes(num_classes)
    y = _check_y(y, k)
    f = _check_unit("labelled_fraction", labelled_fraction, low_open=True)
    rng = _check_rng(rng)
    wanted = labelled_count(np.bincount(y, minlength=k), f)
    labelled = _select_per_class(y, wanted, rng)
    labels = np.ones((y.shape[0], k), dtype=np.float32)
    labels[labelled] = _one_hot(y[labelled], k)
    observed = np.where(labelled, y, -1)
    meta = {"labelled_fraction": f, "labelled_per_class": wanted.tolist()}
    return ImpreciseLabels(matrix=labels, kind="semi", observed=observed, true_labels=y, meta=meta)


def positive_unlabelled(
    y: np.ndarray,
    *,
    positive_classes: Sequence[int],
    labelled_fraction: float,
    rng: np.random.Generator,
    num_classes: int | None = None,
) -> ImpreciseLabels:
    """Binary positive-unlabelled labels: class 1 = union of ``positive_classes``, class 0 = rest.

    Exactly ``labelled_count(n_pos, labelled_fraction)`` positives, chosen uniformly ("selected
    completely at random"), are labelled: row [0, 1], observed 1. All other samples, positive or
    negative, are unlabelled: row [1, 1], observed -1. ``true_labels`` are the binary labels and
    ``class_prior`` is [1 - pi, pi] with pi the true proportion of positives.
    ``num_classes`` (optional) is the original class count, used to range-check positive_classes.
    """
    if num_classes is not None:
        num_classes = check_num_classes(num_classes)
    # Without num_classes only non-negativity of y can be checked.
    y = _check_y(y, num_classes if num_classes is not None else np.iinfo(np.int64).max)
    f = _check_unit("labelled_fraction", labelled_fraction, low_open=True)
    rng = _check_rng(rng)
    positives = _check_positive_classes(positive_classes, num_classes)
    binary = np.isin(y, positives).astype(np.int64)
    n_pos = int(binary.sum())
    if n_pos == 0:
        raise ValueError(
            f"no sample belongs to the positive classes {list(positives)}; pick classes present in the data"
        )
    if n_pos == binary.shape[0]:
        raise ValueError(
            f"every sample belongs to the positive classes {list(positives)}; PU needs some negatives"
        )
    wanted = np.array([0, int(labelled_count(n_pos, f))])
    labelled = _select_per_class(binary, wanted, rng)
    labels = np.ones((binary.shape[0], 2), dtype=np.float32)
    labels[labelled, 0] = 0.0
    pi = n_pos / binary.shape[0]
    meta = {
        "positive_classes": list(positives),
        "labelled_fraction": f,
        "label_frequency": int(wanted[1]) / n_pos,  # c = p(s = 1 | y = 1), Elkan & Noto's notation
    }
    return ImpreciseLabels(
        matrix=labels,
        kind="pu",
        observed=np.where(labelled, 1, -1),
        true_labels=binary,
        class_prior=np.array([1.0 - pi, pi]),
        meta=meta,
    )


# ----------------------------------------------------------------------------- spec + dispatcher
@dataclass(frozen=True)
class CorruptionSpec:
    """Everything that determines a synthetic imprecise label set (saved with every run).

    supervision: one of SUPERVISION_KINDS.
    noise: "sym" | "asym" | "instance" (used when supervision == "noisy").
    rate: noise rate in [0, 1).  q: partial-label inclusion probability in [0, 1] (uniform only).
    class_dependent: class-dependent partial labels (offsets +1/+2/+3 at 0.7/0.5/0.3).
    labelled_fraction: in (0, 1], fraction labelled per class (semi) or of the positives (pu).
    positive_classes: original classes forming the PU positive class (stored sorted).
    seed: seeds ``numpy.random.default_rng`` for the corruption, nothing else.
    class_map: name of a built-in asymmetric map ("digits" | "cifar10"); None = the dataset's own.
    """

    supervision: str
    noise: str = "sym"
    rate: float = 0.4
    q: float = 0.3
    class_dependent: bool = False
    labelled_fraction: float = 0.1
    positive_classes: tuple[int, ...] = (0, 2, 4, 6, 8)
    seed: int = 0
    class_map: str | None = None

    def __post_init__(self) -> None:
        if self.supervision not in SUPERVISION_KINDS:
            raise ValueError(
                f"unknown supervision {self.supervision!r}; choose one of {', '.join(SUPERVISION_KINDS)}"
            )
        if self.noise not in NOISE_MODELS:
            raise ValueError(f"unknown noise model {self.noise!r}; choose one of {', '.join(NOISE_MODELS)}")
        object.__setattr__(self, "rate", _check_unit("rate", self.rate, high_open=True))
        object.__setattr__(self, "q", _check_unit("q", self.q))
        object.__setattr__(
            self, "labelled_fraction", _check_unit("labelled_fraction", self.labelled_fraction, low_open=True)
        )
        if not isinstance(self.class_dependent, (bool, np.bool_)):
            raise ValueError(f"class_dependent must be True or False, got {self.class_dependent!r}")
        object.__setattr__(self, "class_dependent", bool(self.class_dependent))
        if isinstance(self.positive_classes, (str, bytes)):
            raise ValueError(
                f"positive_classes must be a sequence of ints like (0, 2, 4), got {self.positive_classes!r}"
            )
        object.__setattr__(self, "positive_classes", _check_positive_classes(self.positive_classes, None))
        if isinstance(self.seed, bool) or not isinstance(self.seed, (int, np.integer)) or self.seed < 0:
            raise ValueError(f"seed must be a non-negative integer, got {self.seed!r}")
        object.__setattr__(self, "seed", int(self.seed))
        if self.class_map is not None and self.class_map not in BUILTIN_CLASS_MAPS:
            raise ValueError(f"unknown class map {self.class_map!r}; choose one of {', '.join(BUILTIN_CLASS_MAPS)}")

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serialisable dict (positive_classes as a list)."""
        d = asdict(self)
        d["positive_classes"] = list(self.positive_classes)
        return d

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> CorruptionSpec:
        """Inverse of :meth:`to_dict`; unknown keys are an error (a typo would silently be ignored)."""
        known = set(cls.__dataclass_fields__)
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown CorruptionSpec fields {unknown}; known: {sorted(known)}")
        values = dict(data)
        if "positive_classes" in values and not isinstance(values["positive_classes"], (str, bytes)):
            values["positive_classes"] = tuple(values["positive_classes"])
        return cls(**values)


def resolve_class_map(spec: CorruptionSpec, dataset_name: str) -> Mapping[int, int]:
    """The asymmetric class map of a spec: its named map, else the dataset's built-in one."""
    name = spec.class_map or dataset_name
    if name not in BUILTIN_CLASS_MAPS:
        raise ValueError(
            f"no built-in asymmetric class map for dataset {dataset_name!r}; "
            f"choose one with class_map= ({', '.join(BUILTIN_CLASS_MAPS)})"
        )
    return BUILTIN_CLASS_MAPS[name]


def corrupt(
    y: np.ndarray,
    *,
    num_classes: int,
    spec: CorruptionSpec,
    features: np.ndarray | None = None,
    dataset_name: str = "digits",
) -> ImpreciseLabels:
    """Turn true labels into the imprecise labels a :class:`CorruptionSpec` describes.

    y: (N,) int true labels in [0, num_classes). features: (N, D) float, needed only for instance
    noise. The random stream is ``numpy.random.default_rng(spec.seed)``, so the same spec and
    labels always give the same label set. ``meta`` records the dataset name and the spec.
    "clean" returns one-hot labels of y with an identity transition matrix.
    """
    if not isinstance(spec, CorruptionSpec):
        raise ValueError(f"spec must be a CorruptionSpec, got {type(spec).__name__}")
    k = check_num_classes(num_classes)
    y = _check_y(y, k)
    rng = np.random.default_rng(spec.seed)
    if spec.supervision == "clean":
        out = ImpreciseLabels(
            matrix=_one_hot(y, k), kind="clean", observed=y, true_labels=y, transition_matrix=np.eye(k), meta={}
        )
    elif spec.supervision == "noisy":
        if spec.noise == "sym":
            out = symmetric_noise(y, num_classes=k, rate=spec.rate, rng=rng)
        elif spec.noise == "asym":
            cmap = resolve_class_map(spec, dataset_name)
            out = asymmetric_noise(y, num_classes=k, rate=spec.rate, class_map=cmap, rng=rng)
        else:
            if features is None:
                raise ValueError("instance-dependent noise needs per-sample features (N, D); pass features=")
            out = instance_noise(y, features, num_classes=k, rate=spec.rate, rng=rng)
    elif spec.supervision == "partial":
        out = partial_labels(y, num_classes=k, q=spec.q, rng=rng, class_dependent=spec.class_dependent)
    elif spec.supervision == "semi":
        out = semi_supervised(y, num_classes=k, labelled_fraction=spec.labelled_fraction, rng=rng)
    else:
        out = positive_unlabelled(
            y,
            positive_classes=spec.positive_classes,
            labelled_fraction=spec.labelled_fraction,
            rng=rng,
            num_classes=k,
        )
    return replace(out, meta={**out.meta, "dataset": dataset_name, "spec": spec.to_dict()})
