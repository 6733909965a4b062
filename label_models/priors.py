"""Class-prior estimators, one per kind of imprecise label.

All priors are (K,) float64 vectors on the probability simplex, indexed by the *true* class.

* noisy:   the noisy prior is T^T pi; invert it with :func:`prior_from_transition`.
* shifted: :func:`em_prior` re-estimates the prior of a new set from posteriors (Saerens et al.).
* partial: :func:`partial_prior_update`, a moving average of argmax-within-candidate-set counts.
* semi:    :func:`labelled_counts_prior`, smoothed class counts of the labelled rows.
* pu:      :func:`pu_mixture_proportion_top_bin` (Garg et al. 2021) or :func:`pu_mixture_proportion`
           (Elkan & Noto 2008), then :func:`pu_dataset_prior`.
"""
from __future__ import annotations

import numpy as np

from label_models._checks import check_probs

from label_models.labels import ImpreciseLabels

_SUM_TOL = 1e-6


def _check_prior(
    name: str, prior: np.ndarray, *, num_classes: int | None = None, positive: bool = False
) -> np.ndarray:
    v = np.asarray(prior, dtype=np.float64)
    if v.ndim != 1 or v.size < 2:
        raise ValueError(f"{name} must be a (K,) vector with K >= 2, got shape {v.shape}")
    if num_classes is not None and v.size != num_classes:
        raise ValueError(f"{name} has {v.size} entries for {num_classes} classes")
    if not np.all(np.isfinite(v)) or np.any(v < 0) or abs(v.sum() - 1.0) > _SUM_TOL:
        raise ValueError(f"{name} must be non-negative and sum to 1, got {v.tolist()}")
    if positive and np.any(v <= 0):
        raise ValueError(f"{name} must be strictly positive (it divides the posteriors), got {v.tolist()}")
    return v


def project_to_simplex(v: np.ndarray) -> np.ndarray:
    """Euclidean projection of a (K,) vector onto {p : p >= 0, sum p = 1}.

    The projection is max(v - theta, 0) for the unique theta that makes it sum to one; theta is
    found from the sorted entries: with u sorted descending, the support is the largest prefix
    of length r for which u_r > (sum_{i<=r} u_i - 1) / r.
    """
    v = np.asarray(v, dtype=np.float64)
    if v.ndim != 1 or v.size == 0 or not np.all(np.isfinite(v)):
        raise ValueError(f"expected a finite non-empty 1-D vector, got shape {v.shape}")
    u = np.sort(v)[::-1]
    cumulative = np.cumsum(u) - 1.0
    r = np.arange(1, v.size + 1)
    support = u - cumulative / r > 0
    rho = int(np.flatnonzero(support)[-1]) + 1  # support is never empty: u_1 > u_1 - 1
    theta = cumulative[rho - 1] / rho
    return np.maximum(v - theta, 0.0)


def em_prior(
    probs: np.ndarray, *, train_prior: np.ndarray, max_iter: int = 100, tol: float = 1e-6
) -> np.ndarray:
    """Re-estimate the class prior of a new sample (Saerens, Latinne & Decaestecker 2002).

    probs: (N, K) posteriors p_train(y | x_n) of the new samples, computed by a model whose
        implicit prior is ``train_prior``.
    train_prior: (K,) the prior the posteriors were computed under (strictly positive).

    EM on the mixture weights with the class-conditionals held fixed: the E-step re-weights each
    posterior by prior / train_prior and renormalises, the M-step averages the re-weighted
    posteriors. Stops when the L1 change is below ``tol`` or after ``max_iter`` iterations.
    Returns the (K,) estimated prior of the new sample.
    """
    p = check_probs("probs", probs)
    train = _check_prior("train_prior", train_prior, num_classes=p.shape[1], positive=True)
    if int(max_iter) < 1 or not (float(tol) > 0):
        raise ValueError(f"max_iter must be >= 1 and tol > 0, got {max_iter}, {tol}")
    prior = train.copy()
    for _ in range(int(max_iter)):
        w = p * (prior / train)  # (N, K) unnormalised posteriors under the current prior
        w /= np.clip(w.sum(axis=1, keepdims=True), 1e-300, None)
        new = w.mean(axis=0)
        converged = np.abs(new - prior).sum() < tol
        prior = new
        if converged:
            break
    return prior / prior.sum()


def prior_from_transition(noisy_prior: np.ndarray, transition_matrix: np.ndarray) -> np.ndarray:
    """Clean prior pi from the noisy-label prior: solve T^T pi = pi_noisy, project onto the simplex.

    noisy_prior: (K,) frequencies of the observed labels. transition_matrix: (K, K),
    ``T[i, j] = P(observed = j | true = i)``. Least squares keeps a singular or estimated T usable;
    the simplex projection repairs small negative entries that estimation noise produces.
    """
    t = np.asarray(transition_matrix, dtype=np.float64)
    if t.ndim != 2 or t.shape[0] != t.shape[1]:
        raise ValueError(f"transition_matrix must be square (K, K), got shape {t.shape}")
    if not np.all(np.isfinite(t)) or np.any(t < 0) or np.any(np.abs(t.sum(axis=1) - 1.0) > _SUM_TOL):
        raise ValueError("transition_matrix must be row-stochastic: T[i, j] = P(observed = j | true = i)")
    noisy = _check_prior("noisy_prior", noisy_prior, num_classes=t.shape[0])
    solution, *_ = np.linalg.lstsq(t.T, noisy, rcond=None)
    return project_to_simplex(solution)


def partial_prior_update(
    prior: np.ndarray, probs: np.ndarray, candidate_mask: np.ndarray, *, momentum: float = 0.9
) -> np.ndarray:
    """One moving-average step of the partial-label class prior.

    prior: (K,) current estimate. probs: (N, K) model posteriors of a batch. candidate_mask: (N, K)
    candidate sets (> 0 = candidate). Each sample votes for its most probable *candidate* class
    (the class the disambiguation currently believes in); the new prior is
    ``momentum * prior + (1 - momentum) * vote_frequencies``.
    """
    p = check_probs("probs", probs)
    old = _check_prior("prior", prior, num_classes=p.shape[1])
    mask = np.asarray(candidate_mask)
    if mask.shape != p.shape:
        raise ValueError(f"candidate_mask must have the shape of probs {p.shape}, got {mask.shape}")
    inside = mask > 0
    if not np.all(inside.any(axis=1)):
        i = int(np.flatnonzero(~inside.any(axis=1))[0])
        raise ValueError(f"sample {i} has an empty candidate set")
    momentum = float(momentum)
    if not (0.0 <= momentum <= 1.0):
        raise ValueError(f"momentum must be in [0, 1], got {momentum}")
    votes = np.argmax(np.where(inside, p, -np.inf), axis=1)
    freq = np.bincount(votes, minlength=p.shape[1]) / p.shape[0]
    return momentum * old + (1.0 - momentum) * freq


def labelled_counts_prior(labels: ImpreciseLabels) -> np.ndarray:
    """Class prior from the observed labels of the labelled rows, with add-one smoothing.

    For semi (and clean) labels this estimates the true prior, since labelled rows are chosen per
    class in proportion. For noisy labels it is the *noisy* prior: pass it to
    :func:`prior_from_transition`. The +1 per class keeps every class possible: a zero prior would
    zero that class's posterior forever in any prior-weighted E-step.
    Raises ValueError for partial and pu labels, which have their own estimators.
    """
    if labels.kind == "partial":
        raise ValueError("partial labels have no observed label; use partial_prior_update instead")
    if labels.kind == "pu":
        raise ValueError("pu labels only mark positives; use pu_mixture_proportion / pu_dataset_prior")
    observed = labels.observed
    counts = np.bincount(observed[observed >= 0], minlength=labels.num_classes).astype(np.float64) + 1.0
    return counts / counts.sum()


def pu_mixture_proportion(
    scores_labelled: np.ndarray, scores_unlabelled: np.ndarray, *, label_frequency: float | None = None
) -> float:
    """Proportion of positives among the *unlabelled* samples (Elkan & Noto 2008).

    scores_*: (N_l,) and (N_u,) outputs g(x) = p(s = 1 | x) of a probabilistic classifier trained
    to tell labelled (s = 1) from unlabelled (s = 0) samples, with the data set's own class balance.
    Under "selected completely at random", g(x) = c p(y = 1 | x) with the label frequency
    c = p(s = 1 | y = 1), estimated as the mean score on labelled samples (their estimator e1)
    unless ``label_frequency`` is given. For an unlabelled x,

        p(y = 1 | x, s = 0) = (p(y = 1 | x) - g(x)) / (1 - g(x)) = (1 - c) / c * g(x) / (1 - g(x)),

    which is clipped to [0, 1] per sample and averaged over the unlabelled set.
    Returns a float in [0, 1]; see :func:`pu_dataset_prior` for the whole-data prior.
    """
    s_l = np.asarray(scores_labelled, dtype=np.float64)
    s_u = np.asarray(scores_unlabelled, dtype=np.float64)
    for name, s in (("scores_labelled", s_l), ("scores_unlabelled", s_u)):
        if s.ndim != 1 or s.size == 0:
            raise ValueError(f"{name} must be a non-empty 1-D array, got shape {s.shape}")
        if not np.all(np.isfinite(s)) or np.any(s < 0) or np.any(s > 1):
            raise ValueError(f"{name} must be probabilities p(s = 1 | x) in [0, 1]")
    c = float(s_l.mean()) if label_frequency is None else float(label_frequency)
    if not (0.0 < c <= 1.0):
        raise ValueError(
            f"label frequency c = p(s=1 | y=1) must be in (0, 1], got {c}; "
            f"the labelled-vs-unlabelled classifier gives the labelled samples no score"
        )
    g = np.clip(s_u, 0.0, 1.0 - 1e-12)  # g = 1 would mean "certainly labelled": weight 1 after clipping
    weight = np.clip((1.0 - c) / c * g / (1.0 - g), 0.0, 1.0)
    return float(weight.mean())


def pu_mixture_proportion_top_bin(
    scores_labelled: np.ndarray, scores_unlabelled: np.ndarray, *, delta: float = 0.1, gamma: float = 0.01
) -> float:
    """Proportion of positives among the *unlabelled* samples, from the top of a ranking.

    scores_*: (N_l,) and (N_u,) scores that rank positives above negatives, from a labelled-vs-
    unlabelled classifier that did not fit these rows (cross-fitted). Only their order matters:
    they need not be calibrated, unlike :func:`pu_mixture_proportion`'s, whose label frequency
    (the mean score of the labelled rows) is biased low wherever the classes overlap.

    For a threshold t let q_l(t) and q_u(t) be the shares of labelled and unlabelled scores >= t.
    Labelled rows are a sample of the positives ("selected completely at random"), so
    q_u(t) = a q_pos(t) + (1 - a) q_neg(t) >= a q_l(t) in expectation: every ratio q_u / q_l
    bounds a from above, and it equals a at a threshold that no negative passes (a pure top
    bin). The threshold kept is the one whose ratio has the smallest upper confidence bound
    (Hoeffding margins for both shares at confidence 1 - delta, widened by 1 + gamma), so that
    a top bin of a few rows, whose ratio is noise, is not chosen; the estimate is the ratio there,
    clipped to [0, 1]. This is the best-bin estimator of Garg et al. (2021).
    """
    s_l = np.sort(np.asarray(scores_labelled, dtype=np.float64))
    s_u = np.sort(np.asarray(scores_unlabelled, dtype=np.float64))
    for name, s in (("scores_labelled", s_l), ("scores_unlabelled", s_u)):
        if s.ndim != 1 or s.size == 0:
            raise ValueError(f"{name} must be a non-empty 1-D array, got shape {s.shape}")
        if not np.all(np.isfinite(s)):
            raise ValueError(f"{name} must be finite")
    if not (0.0 < delta < 1.0) or gamma < 0:
        raise ValueError(f"need 0 < delta < 1 and gamma >= 0, got delta={delta}, gamma={gamma}")
    thresholds = np.unique(s_l)  # q_l only changes at labelled scores; each is a candidate bin edge
    q_l = 1.0 - np.searchsorted(s_l, thresholds, side="left") / s_l.size
    q_u = 1.0 - np.searchsorted(s_u, thresholds, side="left") / s_u.size
    margin = np.sqrt(np.log(4.0 / delta) / 2.0) * (1.0 / np.sqrt(s_l.size) + 1.0 / np.sqrt(s_u.size))
    best = int(np.argmin((q_u + (1.0 + gamma) * margin) / q_l))
    return float(min(1.0, q_u[best] / q_l[best]))


def pu_dataset_prior(pi_unlabelled: float, *, num_labelled: int, num_unlabelled: int) -> np.ndarray:
    """Binary prior [1 - pi, pi] of the whole PU data set (class 1 = positive).

    Every labelled sample is positive, so pi = (N_l + pi_u N_u) / (N_l + N_u) with pi_u the
    positive proportion among the unlabelled (:func:`pu_mixture_proportion`).
    """
    pi_u = float(pi_unlabelled)
    if not (0.0 <= pi_u <= 1.0):
        raise ValueError(f"pi_unlabelled must be in [0, 1], got {pi_u}")
    n_l, n_u = int(num_labelled), int(num_unlabelled)
    if n_l < 0 or n_u < 0 or n_l + n_u == 0:
        raise ValueError(f"counts must be non-negative and not both zero, got {n_l}, {n_u}")
    pi = (n_l + pi_u * n_u) / (n_l + n_u)
    return np.array([1.0 - pi, pi])
