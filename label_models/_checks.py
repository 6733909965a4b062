"""Input checks shared by the label-model modules (one-line ValueErrors that say what is wrong)."""
from __future__ import annotations

import numpy as np


def check_num_classes(num_classes: int) -> int:
    """An integer K >= 2 (a bool is not a class count)."""
    if isinstance(num_classes, bool) or not isinstance(num_classes, (int, np.integer)) or num_classes < 2:
        raise ValueError(f"num_classes must be an integer >= 2, got {num_classes!r}")
    return int(num_classes)


def check_probs(name: str, probs: np.ndarray, *, normalise: bool = False) -> np.ndarray:
    """An (N, K) float64 matrix of finite non-negative scores, N >= 1 and K >= 2.

    normalise: divide each row by its sum (an all-zero row is then an error)."""
    p = np.asarray(probs, dtype=np.float64)
    if p.ndim != 2 or p.shape[0] == 0 or p.shape[1] < 2:
        raise ValueError(f"{name} must be (N, K) with N >= 1 and K >= 2, got shape {p.shape}")
    if not np.all(np.isfinite(p)) or np.any(p < 0):
        raise ValueError(f"{name} must hold finite non-negative probabilities")
    if not normalise:
        return p
    sums = p.sum(axis=1, keepdims=True)
    if np.any(sums <= 0):
        raise ValueError(f"{name} has an all-zero row {int(np.flatnonzero(sums[:, 0] <= 0)[0])}")
    return p / sums
