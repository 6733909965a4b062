"""What every benchmark baseline shares: its random stream, its naive training set, input checks.

Both baseline families (`baselines_sklearn`, `baselines_neural`) import these, and the catalogue
(`baselines`) imports both families; keeping the shared helpers here, below all three, is what
keeps the imports acyclic. `baselines` re-exports the public ones.

How each kind of label is used by the *naive* baselines ("trained on the observed labels"):
  clean / noisy: the observed hard label of every row;
  partial:       one candidate per row drawn uniformly (fixed for the run);
  semi:          the labelled rows only;
  pu:            labelled positives = 1, every unlabelled row = 0 (negative).
"""
from __future__ import annotations

from collections.abc import Callable

import numpy as np

from label_models.likelihood import pick_candidates

from wsl_diffusion.data.datasets import ArrayDataset, targets_in_label_space

# run(train_data, labels, test_data, *, seed) -> {"accuracy": float, "train_seconds": float, ...}
BaselineFn = Callable[..., dict]

# The benchmark corrupts a setting's labels with numpy.random.default_rng(seed) and runs its
# baselines with the same seed. A baseline drawing from that same stream re-reads the corruption's
# uniforms: a partial label includes a wrong class where u < q, so "the candidate with the largest
# u" was the true class for ~78% of rows instead of ~27% (digits, q = 0.3) -- an oracle leak that
# inflated the partial-label baselines. Baselines therefore draw from their own stream.
BASELINE_STREAM = 0xB45E


def baseline_rng(seed: int) -> np.random.Generator:
    """The baselines' numpy generator for a benchmark seed, independent of the corruption's."""
    return np.random.default_rng([seed, BASELINE_STREAM])


def seed_int(seed: int) -> int:
    """sklearn's random_state from the benchmark seed (an int keeps estimators reproducible)."""
    return int(baseline_rng(seed).integers(2**31 - 1))


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


def label_space_targets(labels, test_data: ArrayDataset) -> np.ndarray:
    """(N_test,) the test split's true classes in the label model's class space (binary for PU)."""
    return targets_in_label_space(labels, test_data.targets)


def check_inputs(train_data: ArrayDataset, labels) -> None:
    """ValueError unless `labels` has one row per training image."""
    if labels.num_samples != len(train_data):
        raise ValueError(f"{labels.num_samples} label rows for {len(train_data)} training images")
