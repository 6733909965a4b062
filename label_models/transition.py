"""Label-noise transition matrices: build them from a noise model, count them, estimate them.

Convention everywhere: ``T[i, j] = P(observed = j | true = i)``, an (K, K) row-stochastic matrix.
cleanlab's ``noise_matrix`` is the transpose (indexed [observed, true]); transpose before comparing.
With this convention the noisy-label posterior of a sample is ``p(z | x) = p(y | x) @ T`` and the
noisy class prior is ``T.T @ p(y)``.
"""
from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from label_models._checks import check_num_classes, check_probs

NOISE_MODELS: tuple[str, ...] = ("sym", "asym", "instance")


def _check_rate(rate: float, *, name: str = "rate") -> float:
    rate = float(rate)
    if not (0.0 <= rate <= 1.0):  # also rejects NaN
        raise ValueError(f"{name} must be a probability in [0, 1], got {rate}")
    return rate


def validate_class_map(class_map: Mapping[int, int], num_classes: int) -> dict[int, int]:
    """Check an asymmetric-noise class map {source class: target class} and return a plain copy.

    Each source class appears once (a dict cannot say otherwise), sources and targets must be valid
    class indices and a class may not map to itself (that would be a silent no-op "flip").
    """
    num_classes = check_num_classes(num_classes)
    if not isinstance(class_map, Mapping):
        raise ValueError(f"class_map must be a mapping {{source: target}}, got {type(class_map).__name__}")
    out: dict[int, int] = {}
    for src, dst in class_map.items():
        src_i, dst_i = int(src), int(dst)
        if not (0 <= src_i < num_classes and 0 <= dst_i < num_classes):
            raise ValueError(
                f"class_map entry {src}->{dst} is outside the {num_classes} classes; "
                f"use a map made for this dataset"
            )
        if src_i == dst_i:
            raise ValueError(f"class_map maps class {src_i} to itself; drop the entry instead")
        out[src_i] = dst_i
    return out


def symmetric_transition(num_classes: int, rate: float) -> np.ndarray:
    """(K, K) symmetric-noise T: 1 - rate on the diagonal, rate / (K - 1) elsewhere.

    This is the flip-to-a-*different*-class model: the realised noise rate equals ``rate``.
    """
    k = check_num_classes(num_classes)
    rate = _check_rate(rate)
    t = np.full((k, k), rate / (k - 1), dtype=np.float64)
    np.fill_diagonal(t, 1.0 - rate)
    return t


def asymmetric_transition(num_classes: int, rate: float, class_map: Mapping[int, int]) -> np.ndarray:
    """(K, K) pair-flip T: a class c in ``class_map`` keeps its label w.p. 1 - rate and becomes
    ``class_map[c]`` w.p. rate; classes outside the map are never corrupted (identity rows)."""
    k = check_num_classes(num_classes)
    rate = _check_rate(rate)
    cmap = validate_class_map(class_map, k)
    t = np.eye(k, dtype=np.float64)
    src = np.fromiter(cmap.keys(), dtype=np.int64, count=len(cmap))
    dst = np.fromiter(cmap.values(), dtype=np.int64, count=len(cmap))
    t[src, src] = 1.0 - rate
    t[src, dst] = rate
    return t


def build_transition(
    noise: str, *, num_classes: int, rate: float, class_map: Mapping[int, int] | None = None
) -> np.ndarray:
    """The class-level T of a named noise model ("sym" or "asym").

    Instance-dependent noise has no closed-form class-level T: count it from the corrupted labels
    with :func:`empirical_transition` (``instance_noise`` already returns it).
    """
    if noise == "sym":
        return symmetric_transition(num_classes, rate)
    if noise == "asym":
        if class_map is None:
            raise ValueError("asymmetric noise needs a class_map {source: target}")
        return asymmetric_transition(num_classes, rate, class_map)
    if noise == "instance":
        raise ValueError(
            "instance-dependent noise has no closed-form transition matrix; "
            "use empirical_transition(true_labels, observed, num_classes) on the corrupted labels"
        )
    raise ValueError(f"unknown noise model {noise!r}; expected one of {NOISE_MODELS}")


def empirical_transition(true_labels: np.ndarray, observed: np.ndarray, num_classes: int) -> np.ndarray:
    """Row-normalised confusion counts ``T[i, j] = #(true = i, observed = j) / #(true = i)``.

    true_labels, observed: (N,) int class indices; rows with ``observed == -1`` (unlabelled) are
    ignored. A true class without any labelled sample gets an identity row, so the result is
    always row-stochastic. Returns (K, K) float64.
    """
    k = check_num_classes(num_classes)
    y = np.asarray(true_labels)
    z = np.asarray(observed)
    if y.ndim != 1 or z.shape != y.shape:
        raise ValueError(f"true_labels and observed must be 1-D of equal length, got {y.shape} and {z.shape}")
    if not (np.issubdtype(y.dtype, np.integer) and np.issubdtype(z.dtype, np.integer)):
        raise ValueError("true_labels and observed must be integer class indices")
    keep = z >= 0
    y, z = y[keep].astype(np.int64), z[keep].astype(np.int64)
    if y.size and (y.min() < 0 or y.max() >= k or z.max() >= k):
        raise ValueError(f"class indices must be in [0, {k - 1}]")
    counts = np.bincount(y * k + z, minlength=k * k).reshape(k, k).astype(np.float64)
    totals = counts.sum(axis=1, keepdims=True)
    t = np.divide(counts, totals, out=np.eye(k), where=totals > 0)
    return t


def implied_noise_rate(transition: np.ndarray, class_prior: np.ndarray) -> float:
    """The share of labels a transition matrix says are wrong: 1 - sum_y p(y) T[y, y].

    transition: (K, K) row-stochastic T; class_prior: (K,) the clean class prior p(y). Applied to
    an *estimated* T this is the run's own estimate of its labels' noise rate, read without any
    true label; with the true T and prior it is the expected realised rate of the corruption.
    """
    t = check_probs("transition", transition)
    pi = check_probs("class_prior", np.asarray(class_prior, dtype=np.float64)[None, :], normalise=True)[0]
    if t.ndim != 2 or t.shape != (len(pi), len(pi)):
        raise ValueError(f"transition must be (K, K) with K = {len(pi)} classes of the prior, got {t.shape}")
    return float(1.0 - (pi * np.diag(t)).sum())


def estimate_transition_anchor(probs_noisy: np.ndarray, *, quantile: float = 0.97) -> np.ndarray:
    """Anchor-point estimate of T (Patrini et al. 2017; Xia et al. 2019).

    probs_noisy: (N, K) a classifier's estimate of p(observed label | x), e.g. trained with
    cross-entropy on the noisy labels. An anchor of class i is an x with p(true = i | x) = 1; there
    ``p(z | x) = T[i, :]``. The anchor of class i is taken as the sample at the ``quantile`` of the
    scores p(z = i | x) rather than at the maximum, because the very top scores are where an
    over-confident classifier is least calibrated (quantile = 1 selects the maximum). Every class
    must hold more than a (1 - quantile) share of the samples, or its anchor falls in another class.

    Returns (K, K) float64 row-stochastic, ``T[i, j] = P(observed = j | true = i)``.
    """
    p = check_probs("probs_noisy", probs_noisy, normalise=True)
    quantile = float(quantile)
    if not (0.0 <= quantile <= 1.0):
        raise ValueError(f"quantile must be in [0, 1], got {quantile}")
    rank = int(np.floor(quantile * (p.shape[0] - 1)))
    # (K,) sample index per class: the one of the given rank in each column, all columns at once.
    anchors = np.argpartition(p, rank, axis=0)[rank]
    t = p[anchors]
    return t / t.sum(axis=1, keepdims=True)


def unmix_posterior(probs_noisy: np.ndarray, transition: np.ndarray) -> np.ndarray:
    """Backward correction: the clean-class posterior p(y | x) from a model of noisy labels.

    A model that has learned the posterior of labels t with P(t | y) = ``transition`` outputs
    ``p(t | x) = p(y | x) @ T``, so ``p(y | x) = p(t | x) @ T^-1``. An estimated p(t | x) can
    leave the simplex under T^-1: negative entries are clipped to 0 and rows renormalised; a row
    that clips to all zeros keeps its input. A singular T (the pseudo-inverse is used) identifies
    nothing beyond its range.

    Why it matters: with such a model, the E-step w(y) ∝ p(y | x) T[y, z] is at a fixed point
    (a 3 flipped to 8 w.p. 0.4: 0.6 * 0.4 < 0.4 * 1, so the flip is kept), while the unmixed
    posterior puts it back to 3.
    """
    p = check_probs("probs_noisy", probs_noisy, normalise=True)
    t = check_probs("transition", transition, normalise=True)
    if t.shape != (p.shape[1], p.shape[1]):
        raise ValueError(f"transition must be ({p.shape[1]}, {p.shape[1]}), got {t.shape}")
    q = np.clip(p @ np.linalg.pinv(t), 0.0, None)
    total = q.sum(axis=1, keepdims=True)
    return np.where(total > 1e-12, q / np.maximum(total, 1e-12), p)


def _row_softmax(logits: np.ndarray) -> np.ndarray:
    e = np.exp(logits - logits.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def estimate_transition_volmin(
    probs_clean: np.ndarray,
    observed: np.ndarray,
    *,
    num_classes: int,
    lam: float = 1e-3,
    steps: int = 500,
    lr: float = 0.05,
    init: np.ndarray | None = None,
) -> np.ndarray:
    """VolMinNet-style estimate of T (Li et al. 2021) with the clean-label classifier held fixed.

    Minimises over row-stochastic T

        L(T) = - mean_n log (probs_clean @ T)[n, observed_n]  +  lam * log det T

    i.e. the noisy-label NLL of the forward model p(z | x) = p(y | x) @ T plus VolMinNet's volume
    penalty. T is parametrised by free logits A with T = softmax(A) row-wise, so it stays
    row-stochastic; the gradient is written out analytically and the logits are updated by
    full-batch Adam with a cosine-decayed step for ``steps`` steps (deterministic, no RNG).

    The volume term is unbounded below as T approaches a singular matrix, so this is a local method:
    it starts from a diagonally dominant T (or ``init``) and keeps ``lam`` small; it only breaks
    ties the NLL leaves open (e.g. an over-confident classifier) in favour of the smaller simplex.
    The default ``lam = 1e-3`` is deliberately small: with a calibrated synthetic posterior
    (N = 40k, K = 10) it recovers T to ~0.03 max error, while ``lam = 1e-2`` already biases the
    diagonal down by up to 0.1.

    probs_clean: (N, K) classifier estimate of p(true = y | x).
    observed: (N,) int observed labels; rows with -1 (unlabelled) are ignored.
    init: optional (K, K) row-stochastic starting point (e.g. the anchor estimate).
    Returns (K, K) float64 row-stochastic, ``T[i, j] = P(observed = j | true = i)``.
    """
    k = check_num_classes(num_classes)
    p = check_probs("probs_clean", probs_clean, normalise=True)
    if p.shape[1] != k:
        raise ValueError(f"probs_clean has {p.shape[1]} columns for num_classes={k}")
    z = np.asarray(observed)
    if z.shape != (p.shape[0],) or not np.issubdtype(z.dtype, np.integer):
        raise ValueError(f"observed must be ({p.shape[0]},) integer labels, got {z.shape} {z.dtype}")
    if z.size and z.max() >= k:
        raise ValueError(f"observed labels must be in [-1, {k - 1}], got {int(z.max())}")
    keep = z >= 0
    p, z = p[keep], z[keep].astype(np.int64)
    if z.size == 0:
        raise ValueError("no labelled samples (all observed labels are -1); T cannot be estimated")
    lam = float(lam)
    if not (np.isfinite(lam) and lam >= 0):
        raise ValueError(f"lam must be a finite non-negative number, got {lam}")
    if int(steps) < 1 or not (float(lr) > 0):
        raise ValueError(f"steps must be >= 1 and lr > 0, got steps={steps}, lr={lr}")

    if init is None:
        # Diagonally dominant start (0.8 kept, rest spread): inside the region where det T > 0.
        t0 = np.full((k, k), 0.2 / (k - 1))
        np.fill_diagonal(t0, 0.8)
    else:
        t0 = check_probs("init", init, normalise=True)
        if t0.shape != (k, k):
            raise ValueError(f"init must be ({k}, {k}), got {t0.shape}")
    logits = np.log(np.clip(t0, 1e-6, None))

    n = z.shape[0]
    # Group the samples by observed label once: the likelihood of a sample with z_n = j only
    # involves column j of T, so each step is K mat-vecs of total size N x K.
    groups = [p[z == j] for j in range(k)]  # (N_j, K) each
    m1 = np.zeros_like(logits)
    m2 = np.zeros_like(logits)
    beta1, beta2, eps = 0.9, 0.999, 1e-8
    for step in range(1, int(steps) + 1):
        t = _row_softmax(logits)
        grad_t = np.empty((k, k))
        for j, p_j in enumerate(groups):
            lik = np.clip(p_j @ t[:, j], 1e-12, None)  # (N_j,) (p @ T)[n, j] for the samples with z_n = j
            # dNLL/dT[i, j] = -(1/N) sum_{n: z_n = j} p[n, i] / lik_n
            grad_t[:, j] = -(p_j.T @ (1.0 / lik)) / n
        if lam > 0:
            grad_t += lam * np.linalg.inv(t).T  # d log|det T| / dT = T^{-T}
        # Chain rule through the row softmax: dA[i] = T[i] * (G[i] - <G[i], T[i]>).
        grad_a = t * (grad_t - np.sum(grad_t * t, axis=1, keepdims=True))
        m1 = beta1 * m1 + (1 - beta1) * grad_a
        m2 = beta2 * m2 + (1 - beta2) * grad_a**2
        step_lr = float(lr) * 0.5 * (1.0 + np.cos(np.pi * (step - 1) / int(steps)))
        logits -= step_lr * (m1 / (1 - beta1**step)) / (np.sqrt(m2 / (1 - beta2**step)) + eps)
    return _row_softmax(logits)


def transition_m_step(posteriors: np.ndarray, observed: np.ndarray, *, smoothing: float = 1.0) -> np.ndarray:
    """Dawid–Skene M-step: the T that maximises the expected log-likelihood of the observed labels.

    posteriors: (N, K) w[n, y] = p(y | x_n, z_n), the E-step's clean-class posteriors (rows sum
    to 1). observed: (N,) noisy labels z_n, -1 for unlabelled rows (ignored).
        T[i, j] = (smoothing / K + sum_n w[n, i] [z_n = j]) / (smoothing + sum_n w[n, i])
    smoothing: a symmetric Dirichlet pseudo-count per row (spread evenly over its K cells), so a
    class the E-step never assigns keeps a uniform row instead of 0/0. A perfect table
    (w = one-hot of the true class) returns the empirical confusion matrix up to that smoothing.
    Returns a row-stochastic (K, K) float64 matrix, T[i, j] = P(observed = j | true = i).
    """
    w = check_probs("posteriors", posteriors, normalise=True)
    n, k = w.shape
    z = np.asarray(observed)
    if z.shape != (n,) or not np.issubdtype(z.dtype, np.integer) or z.max(initial=-1) >= k or z.min(initial=0) < -1:
        raise ValueError(f"observed must be ({n},) integer labels in [-1, {k - 1}], got {z.dtype} {z.shape}")
    if not smoothing >= 0:
        raise ValueError(f"smoothing must be >= 0, got {smoothing}")
    labelled = z >= 0
    counts = w[labelled].T @ np.eye(k)[z[labelled]]  # (K, K): expected #(true i, observed j)
    counts += smoothing / k
    totals = counts.sum(axis=1, keepdims=True)
    return np.divide(counts, totals, out=np.full((k, k), 1.0 / k), where=totals > 0)


def estimate_transition_em(class_posteriors: np.ndarray, observed: np.ndarray, *, init: np.ndarray,
                           rounds: int = 20, smoothing: float = 1.0, tol: float = 1e-6) -> np.ndarray:
    """T by EM with the model's clean-class posteriors held fixed (Dawid–Skene with one annotator).

    class_posteriors: (N, K) p(y | x_n), the model's posterior before seeing the noisy label.
    E-step: w[n, y] ∝ p(y | x_n) T[y, z_n]; M-step: `transition_m_step(w, z)`. Starts from `init`
    and stops after `rounds` rounds or when no entry moves by more than `tol`. The estimate is
    identified by the model: where p(y | x) is uninformative, T stays near `init`'s structure only
    through the smoothing, so call it once the model classifies.
    """
    p = check_probs("class_posteriors", class_posteriors, normalise=True)
    t = check_probs("init", init, normalise=True)
    z = np.asarray(observed)
    if t.shape != (p.shape[1], p.shape[1]):
        raise ValueError(f"init must be ({p.shape[1]}, {p.shape[1]}), got {t.shape}")
    for _ in range(rounds):
        lik = np.where(z[:, None] >= 0, t[:, np.clip(z, 0, None)].T, 1.0)  # (N, K) p(z_n | y)
        w = p * lik
        w /= np.clip(w.sum(axis=1, keepdims=True), 1e-300, None)
        new = transition_m_step(w, z, smoothing=smoothing)
        done = np.abs(new - t).max() <= tol
        t = new
        if done:
            break
    return t


def to_cleanlab_noise_matrix(transition: np.ndarray) -> np.ndarray:
    """cleanlab's `noise_matrix` from our T: noise_matrix[i, j] = P(label = i | true = j), while
    T[i, j] = P(observed = j | true = i); one is the other's transpose."""
    t = np.asarray(transition, dtype=np.float64)
    if t.ndim != 2 or t.shape[0] != t.shape[1]:
        raise ValueError(f"a transition matrix is square (K, K); got shape {t.shape}")
    return t.T.copy()


def from_cleanlab_noise_matrix(noise_matrix: np.ndarray) -> np.ndarray:
    """Our T from cleanlab's `noise_matrix` (columns sum to 1 there, rows here)."""
    return to_cleanlab_noise_matrix(noise_matrix)
