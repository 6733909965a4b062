"""The label likelihood p(z | y) of an imprecise label set, the prior before any model exists, and
one candidate drawn from a set: the label model as the training loop and the baselines need it.

Every function takes an :class:`ImpreciseLabels` (or its matrix) and returns NumPy arrays; the
model layer turns them into tensors.
"""
from __future__ import annotations

import numpy as np

from label_models.labels import ImpreciseLabels
from label_models.priors import labelled_counts_prior, prior_from_transition
from label_models.transition import symmetric_transition


def label_likelihood(labels: ImpreciseLabels, *, assumed_noise_rate: float,
                     transition_matrix: np.ndarray | None = None,
                     class_prior: np.ndarray | None = None) -> np.ndarray:
    """(N, K) matrix L[n, y] = p(z_n | y) up to a per-row constant.

    Masks (partial candidate sets, one-hot labels, all-ones unlabelled rows) are their own
    likelihood. Noisy labels use a transition matrix T: L[n, y] = T[y, z_n], with T the given
    `transition_matrix`, or symmetric noise at `assumed_noise_rate` without one (the design's
    uniform-off-diagonal default). A T stored in the label set (the true one, for synthetic
    corruption) is never read here: a caller that wants that oracle passes it explicitly.

    PU labels with a `class_prior` [1 - pi, pi] (the run's): under "selected completely at
    random" a positive is labelled with probability c = labelled / (pi N), so a labelled row is
    [0, c] and an unlabelled one [1, 1 - c]. Being unlabelled is evidence for the negative class:
    the mask ([1, 1]) would overstate an unlabelled image's odds of being positive by 1 / (1 - c)
    (on digits pu-even, c = 0.5, it called 45% of the unlabelled images positive where 33% are).
    Without a prior, the mask. The label set's own stored prior is never read here either.
    """
    if labels.kind == "pu" and class_prior is not None:
        labelled = np.asarray(labels.is_labelled, dtype=bool)
        c = min(1.0, labelled.sum() / max(float(class_prior[1]) * labels.num_samples, 1e-12))
        return np.where(labelled[:, None], [0.0, c], [1.0, 1.0 - c])
    if labels.kind != "noisy":
        return labels.matrix.astype(np.float64)
    t = transition_matrix
    if t is None:
        t = symmetric_transition(labels.num_classes, assumed_noise_rate)
    lik = t[:, np.clip(labels.observed, 0, None)].T.copy()  # (N, K)
    lik[labels.observed < 0] = 1.0  # unlabelled rows carry no information
    return lik


def initial_log_prior(labels: ImpreciseLabels, *, transition_matrix: np.ndarray | None = None) -> np.ndarray:
    """log pi (K,) from the label model alone, before any posterior exists.

    The label set's own class prior if it has one (PU: the mixture proportion it was made with);
    noisy: the observed class frequencies, mapped through `transition_matrix` when one is given;
    semi / clean: the labelled counts; partial: uniform (the moving average of argmax-within-S
    takes over once a model exists). Clipped at 1e-4.
    """
    k = labels.num_classes
    if labels.class_prior is not None:
        pi = np.asarray(labels.class_prior, dtype=np.float64)
    elif labels.kind == "noisy":
        counts = np.bincount(labels.observed[labels.observed >= 0], minlength=k).astype(np.float64)
        t = transition_matrix
        pi = prior_from_transition(counts / counts.sum(), t) if t is not None else counts / counts.sum()
    elif labels.kind in ("semi", "clean"):
        pi = labelled_counts_prior(labels)
    else:
        pi = np.full(k, 1.0 / k)
    pi = np.clip(pi, 1e-4, None)
    return np.log(pi / pi.sum())


def pick_candidates(mask: np.ndarray, u: np.ndarray) -> np.ndarray:
    """(N,) one class per row, drawn uniformly from the row's candidate set.

    mask: (N, K) 0/1 (or bool) candidate sets, no empty row. u: (N,) uniform numbers in [0, 1)
    that decide the draw (the caller owns the randomness): the row's candidates in class order,
    the one at position floor(u * |S|). Same dtype arithmetic as the caller's u, so a float32 u
    gives the same pick on any backend.
    """
    rows = np.asarray(mask) > 0
    sizes = rows.sum(axis=1).astype(np.asarray(u).dtype)
    rank = np.minimum(np.floor(u * sizes), sizes - 1)  # which candidate, 0-based
    return np.argmax((rows.cumsum(axis=1) > rank[:, None]) & rows, axis=1)
