"""The imprecise-label container shared by every layer of the project.

An imprecise label set for N samples and K classes is an (N, K) float matrix whose row n says
which classes sample n may belong to:

* clean / noisy: a one-hot row (the observed hard label),
* partial:       a 0/1 candidate mask that contains the (latent) true class,
* semi:          a one-hot row for labelled samples, all ones for unlabelled ones,
* pu:            binary (K = 2, class 1 = positive): [0, 1] for a labelled positive,
                 [1, 1] for an unlabelled sample (positive or negative).

Label-noise convention: ``transition_matrix[i, j] = P(observed = j | true = i)``; rows sum to 1.
cleanlab's ``noise_matrix`` is the transpose (it is indexed [observed, true]).
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

SUPERVISION_KINDS: tuple[str, ...] = ("clean", "noisy", "partial", "semi", "pu")

# Kinds that carry one observed hard label per row (-1 = unlabelled).
_KINDS_WITH_OBSERVED = ("clean", "noisy", "semi", "pu")
# Tolerance for "sums to one" checks: float32 rows of a K=1000 matrix still pass, typos do not.
_SUM_TOL = 1e-6


def _as_float_matrix(name: str, value: Any, *, ndim: int, dtype: type) -> np.ndarray:
    """Convert ``value`` to a finite float array of the given ndim, or raise a clear ValueError."""
    arr = np.asarray(value)
    if arr.dtype == object or not (np.issubdtype(arr.dtype, np.number) or arr.dtype == bool):
        raise ValueError(f"{name} must be a numeric array, got dtype {arr.dtype}")
    if arr.ndim != ndim:
        raise ValueError(f"{name} must be {ndim}-D, got shape {arr.shape}")
    arr = arr.astype(dtype, copy=True)
    if not np.all(np.isfinite(arr)):
        bad = np.argwhere(~np.isfinite(arr))[0]
        raise ValueError(f"{name} contains NaN or inf (first at index {tuple(int(i) for i in bad)})")
    return arr


def _as_index_vector(name: str, value: Any, *, length: int, low: int, high: int) -> np.ndarray:
    """Convert ``value`` to an (length,) int64 vector with entries in [low, high)."""
    arr = np.asarray(value)
    if arr.ndim != 1 or arr.shape[0] != length:
        raise ValueError(f"{name} must have shape ({length},) to match labels, got {arr.shape}")
    if np.issubdtype(arr.dtype, np.floating):
        # Integer-valued floats (e.g. read back from a CSV) are accepted; fractional ones are not.
        if not np.all(np.isfinite(arr)) or np.any(arr != np.round(arr)):
            raise ValueError(f"{name} must hold integer class indices, got non-integer values")
    elif not np.issubdtype(arr.dtype, np.integer):
        raise ValueError(f"{name} must hold integer class indices, got dtype {arr.dtype}")
    arr = arr.astype(np.int64, copy=True)
    out_of_range = (arr < low) | (arr >= high)
    if np.any(out_of_range):
        i = int(np.flatnonzero(out_of_range)[0])
        allowed = f"[{low}, {high - 1}]"
        raise ValueError(f"{name}[{i}] = {arr[i]} is out of range; class indices must be in {allowed}")
    return arr


@dataclass(frozen=True, eq=False)
class ImpreciseLabels:
    """Imprecise labels of one dataset split, validated on construction.

    Attributes:
        matrix: (N, K) float32 in [0, 1]. Row n is a one-hot (clean, noisy, labelled semi/pu rows),
            a 0/1 candidate mask (partial) or all ones (unlabelled). No row may be all zeros.
        kind: one of ``SUPERVISION_KINDS``.
        observed: (N,) int64 observed hard label, -1 for an unlabelled row. Present for clean,
            noisy, semi and pu; None for partial. If omitted for those kinds it is derived from
            ``labels`` (argmax of one-hot rows, -1 for all-ones rows).
        true_labels: (N,) int64 latent true class, when known (synthetic corruption).
        transition_matrix: (K, K) float64, ``T[i, j] = P(observed = j | true = i)``, rows sum to 1.
            cleanlab's ``noise_matrix`` is the transpose of this matrix.
        class_prior: (K,) float64 true class prior p(y), when known. For pu it is
            [1 - pi, pi] with pi the proportion of positives.
        meta: free-form JSON-serialisable dict (noise model, rate, q, positive classes, ...).

    Equality is identity (``eq=False``): array fields make field-wise ``==`` ambiguous.
    """

    matrix: np.ndarray
    kind: str
    observed: np.ndarray | None = None
    true_labels: np.ndarray | None = None
    transition_matrix: np.ndarray | None = None
    class_prior: np.ndarray | None = None
    meta: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        # The dataclass is frozen so that a label set cannot drift after validation; the
        # normalised copies are installed once here through object.__setattr__.
        def put(name: str, value: Any) -> None:
            object.__setattr__(self, name, value)

        if self.kind not in SUPERVISION_KINDS:
            raise ValueError(f"unknown supervision kind {self.kind!r}; expected one of {SUPERVISION_KINDS}")

        labels = _as_float_matrix("matrix", self.matrix, ndim=2, dtype=np.float32)
        n, k = labels.shape
        if n == 0:
            raise ValueError("labels has no rows; a label set needs at least one sample")
        if k < 2:
            raise ValueError(f"labels must have at least 2 classes (columns), got {k}")
        if labels.min() < 0.0 or labels.max() > 1.0:
            raise ValueError(
                f"labels must lie in [0, 1] (one-hot rows, candidate masks or all-ones rows); "
                f"got values in [{labels.min():g}, {labels.max():g}]"
            )
        empty = ~np.any(labels > 0, axis=1)
        if np.any(empty):
            i = int(np.flatnonzero(empty)[0])
            raise ValueError(
                f"sample {i} has an empty candidate set (all-zero label row); every row must name at "
                f"least one class (use an all-ones row for an unlabelled sample)"
            )
        labels.setflags(write=False)
        put("matrix", labels)

        unlabelled = np.all(labels == 1.0, axis=1)
        one_hot = (np.count_nonzero(labels, axis=1) == 1) & np.all((labels == 0) | (labels == 1), axis=1)
        if self.kind == "pu" and k != 2:
            raise ValueError(f"pu labels are binary (class 1 = positive), so K must be 2, got {k}")

        observed = self.observed
        if observed is None and self.kind in _KINDS_WITH_OBSERVED:
            # Derive the hard label from the matrix, which must then be one-hot / all-ones rows.
            if not np.all(one_hot | unlabelled):
                i = int(np.flatnonzero(~(one_hot | unlabelled))[0])
                raise ValueError(
                    f"kind {self.kind!r} needs one-hot or all-ones label rows, but row {i} is neither; "
                    f"pass observed= explicitly or use kind='partial'"
                )
            observed = np.where(unlabelled, -1, np.argmax(labels, axis=1))
        if observed is not None:
            if self.kind == "partial":
                raise ValueError("partial labels have no single observed label; pass observed=None")
            observed = _as_index_vector("observed", observed, length=n, low=-1, high=k)
            self._check_observed_consistent(labels, observed, unlabelled, one_hot)
            observed.setflags(write=False)
        put("observed", observed)

        if self.true_labels is not None:
            true_labels = _as_index_vector("true_labels", self.true_labels, length=n, low=0, high=k)
            true_labels.setflags(write=False)
            put("true_labels", true_labels)

        if self.transition_matrix is not None:
            t = _as_float_matrix("transition_matrix", self.transition_matrix, ndim=2, dtype=np.float64)
            if t.shape != (k, k):
                raise ValueError(f"transition_matrix must be ({k}, {k}) to match labels, got {t.shape}")
            if np.any(t < 0):
                raise ValueError("transition_matrix has negative entries; entries are probabilities")
            row_err = np.abs(t.sum(axis=1) - 1.0)
            if np.any(row_err > _SUM_TOL):
                i = int(np.argmax(row_err))
                raise ValueError(
                    f"transition_matrix row {i} sums to {t[i].sum():.6g}, not 1; rows are "
                    f"P(observed | true = i) (cleanlab's noise_matrix is the transpose)"
                )
            t.setflags(write=False)
            put("transition_matrix", t)

        if self.class_prior is not None:
            prior = _as_float_matrix("class_prior", self.class_prior, ndim=1, dtype=np.float64)
            if prior.shape != (k,):
                raise ValueError(f"class_prior must have shape ({k},) to match labels, got {prior.shape}")
            if np.any(prior < 0) or abs(prior.sum() - 1.0) > _SUM_TOL:
                raise ValueError(f"class_prior must be non-negative and sum to 1, got sum {prior.sum():.6g}")
            prior.setflags(write=False)
            put("class_prior", prior)

        if not isinstance(self.meta, dict):
            raise ValueError(f"meta must be a dict, got {type(self.meta).__name__}")
        try:
            # Round-trip through JSON: it proves serialisability and gives a private copy.
            put("meta", json.loads(json.dumps(self.meta)))
        except (TypeError, ValueError) as exc:
            raise ValueError(f"meta must be JSON-serialisable: {exc}") from None

    def _check_observed_consistent(
        self, labels: np.ndarray, observed: np.ndarray, unlabelled: np.ndarray, one_hot: np.ndarray
    ) -> None:
        """The observed label must agree with the label matrix (a file could disagree with itself)."""
        n = labels.shape[0]
        is_missing = observed < 0
        mismatch = is_missing != unlabelled
        labelled_rows = np.flatnonzero(~is_missing)
        # A labelled row must be the one-hot of its observed label.
        bad_hot = ~one_hot[labelled_rows] | (labels[labelled_rows, observed[labelled_rows]] != 1.0)
        mismatch[labelled_rows[bad_hot]] = True
        if np.any(mismatch):
            i = int(np.flatnonzero(mismatch)[0])
            raise ValueError(
                f"row {i}: observed label {observed[i]} disagrees with label row {labels[i].tolist()}; "
                f"a labelled row must be the one-hot of its observed label and an unlabelled row "
                f"(observed = -1) must be all ones"
            )
        if self.kind in ("clean", "noisy") and np.any(is_missing):
            i = int(np.flatnonzero(is_missing)[0])
            raise ValueError(
                f"kind {self.kind!r} has no unlabelled samples but row {i} is unlabelled; "
                f"use kind='semi' for partly labelled data"
            )
        if self.kind == "pu" and np.any(observed == 0):
            i = int(np.flatnonzero(observed == 0)[0])
            raise ValueError(
                f"pu labels mark only positives (observed = 1) or unlabelled rows (observed = -1), "
                f"but row {i} of {n} is a labelled negative"
            )

    @property
    def num_classes(self) -> int:
        """K, the number of columns of ``labels`` (2 for pu)."""
        return int(self.matrix.shape[1])

    @property
    def num_samples(self) -> int:
        """N, the number of rows of ``labels``."""
        return int(self.matrix.shape[0])

    @property
    def is_labelled(self) -> np.ndarray:
        """(N,) bool: True where the row carries information (is not all ones)."""
        return ~np.all(self.matrix == 1.0, axis=1)

    def take(self, rows) -> "ImpreciseLabels":
        """The label set of these rows only (same kind, T, class prior and meta)."""
        rows = np.asarray(rows, dtype=np.int64)
        return replace(self, matrix=self.matrix[rows],
                       observed=None if self.observed is None else self.observed[rows],
                       true_labels=None if self.true_labels is None else self.true_labels[rows])

    def validate_against(self, num_samples: int, num_classes: int) -> None:
        """Raise ValueError unless these labels fit a dataset of ``num_samples`` x ``num_classes``.

        pu labels are binary whatever the dataset's class count: for them ``num_classes`` may be 2
        (the binary task) or the dataset's original class count, against which
        ``meta["positive_classes"]`` is checked.
        """
        problems = []
        if self.num_samples != num_samples:
            problems.append(f"{self.num_samples} label rows for {num_samples} images")
        if self.kind == "pu":
            positives = self.meta.get("positive_classes", [])
            outside = [c for c in positives if not 0 <= int(c) < num_classes]
            if num_classes != 2 and outside:
                problems.append(f"positive classes {outside} do not exist among {num_classes} classes")
        elif self.num_classes != num_classes:
            problems.append(f"{self.num_classes} classes in the labels for {num_classes} in the dataset")
        if problems:
            raise ValueError(
                "the label file does not fit the dataset (" + "; ".join(problems) + "); "
                "regenerate it for this dataset split (wsl-diff corrupt) or pick the matching dataset"
            )
