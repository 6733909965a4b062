"""The labels of a second noisy-label stage: keep an observed label where a model agrees with it.

`agreement_labels` turns noisy labels and a model's class for every row into semi-supervised
labels: z where the model names z, unlabelled elsewhere. Training on them is CleanLearning's
recipe (find the label issues, drop them, retrain) with the dropped rows kept as unlabelled
images (`wsl_diffusion.training.refine`, `wsl-diff refine`).

The label set also carries, in its meta (STAGE_KEY), what scoring the second stage like the
first needs: the first stage's validation rows, which the second stage holds out as well
(`pinned_validation_rows`), and every row's noisy label with the first stage's estimated T
(`first_stage_labels`), against which the second stage's validation rows are scored. NumPy only.
"""
from __future__ import annotations

import numpy as np

from label_models.labels import ImpreciseLabels

STAGE_KEY = "refine"  # the meta entry of a second stage's labels


def agreement_labels(labels: ImpreciseLabels, model_class: np.ndarray, validation_rows: np.ndarray, *,
                     transition: np.ndarray | None, source: str, label_probability: np.ndarray | None = None,
                     min_confidence: float = 0.0) -> ImpreciseLabels:
    """A second stage's semi-supervised labels from the first stage's noisy `labels` and its
    model's class for every row (`model_class`, (N,); the validation rows' entries are not read):
    z where the model names z, unlabelled elsewhere and on the `validation_rows`, which neither
    stage trains on. The meta keeps what scoring the second stage like the first needs (the
    validation rows, every row's noisy label, the first stage's estimated `transition`) and where
    the labels came from (`source`); the truth of a synthetic label set is carried for
    diagnostics only.

    min_confidence > 0 keeps z only where the model also gives it at least that probability
    (`label_probability`, (N,): the model's p(z | x) per row, required then): the labels a model
    agrees with wrongly are mostly on ambiguous images, where it is less sure."""
    if labels.kind != "noisy":
        raise ValueError(f"agreement labels are made from noisy labels; got {labels.kind} labels")
    if not 0.0 <= min_confidence < 1.0:
        raise ValueError(f"`min_confidence` must be in [0, 1); got {min_confidence}")
    z = np.asarray(labels.observed)
    keep = np.asarray(model_class) == z
    if min_confidence > 0:
        if label_probability is None or np.shape(label_probability) != z.shape:
            raise ValueError("a min_confidence needs the model's probability of each row's label, one per row")
        keep &= np.asarray(label_probability) >= min_confidence
    keep[np.asarray(validation_rows, dtype=np.int64)] = False
    k = labels.num_classes
    matrix = np.where(keep[:, None], np.eye(k, dtype=np.float32)[z], np.ones((len(z), k), dtype=np.float32))
    meta = {STAGE_KEY: {"rule": "agreement", "from": source, "min_confidence": float(min_confidence),
                        "validation_rows": [int(i) for i in validation_rows],
                        "observed": [int(i) for i in z],
                        "transition": None if transition is None else np.asarray(transition, dtype=float).tolist()}}
    return ImpreciseLabels(matrix, kind="semi", true_labels=labels.true_labels, meta=meta)


def pinned_validation_rows(labels: ImpreciseLabels) -> np.ndarray | None:
    """The validation rows a second stage's labels pin (the first stage's, sorted); None for any
    other label set."""
    entry = labels.meta.get(STAGE_KEY)
    if entry is None:
        return None
    return np.sort(np.asarray(entry["validation_rows"], dtype=np.int64))


def first_stage_labels(labels: ImpreciseLabels) -> tuple[ImpreciseLabels, np.ndarray | None] | None:
    """(the first stage's noisy labels, its estimated T or None) that a second stage's labels
    carry, to score its validation rows against; None for any other label set."""
    entry = labels.meta.get(STAGE_KEY)
    if entry is None:
        return None
    z = np.asarray(entry["observed"], dtype=np.int64)
    noisy = ImpreciseLabels(np.eye(labels.num_classes, dtype=np.float32)[z], kind="noisy", observed=z)
    t = entry.get("transition")
    return noisy, None if t is None else np.asarray(t, dtype=np.float64)
