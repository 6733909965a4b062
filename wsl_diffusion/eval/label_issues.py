"""Which training labels does the model doubt? Label-issue finding from a DMIS run's own table.

A DMIS run keeps, for every training image, the EMA model's posterior f(y | x) (the table of the
last E-step) and the label likelihood p(z | y) of its observed label z under the run's T. Their
product, normalised, is the posterior of the true class given the image AND its label,

    w(y) = f(y | x) p(z | y) / sum_y' f(y' | x) p(z | y'),

so 1 - w(z) is how strongly the model believes the observed label is wrong (the "score"), and
argmax_y w(y) is the label it would put there instead. An example is flagged when that argmax is
not z: exactly the labels the E-step has moved. No extra network evaluation is needed.
"""
from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from label_models.io import load_labels

from wsl_diffusion.run import CHECKPOINT_NAME, LABELS_NAME, checkpoint_config, load_checkpoint, run_label_likelihood

KINDS_WITH_OBSERVED = ("noisy", "clean", "semi")


@dataclass
class LabelIssues:
    """Labelled training examples ranked by doubt (most doubtful first).

    index: (M,) row in the training split; observed / suggested: (M,) class indices; score: (M,)
    1 - p(y = observed | x, label) in [0, 1]; flagged: (M,) suggested != observed.
    """

    index: np.ndarray
    observed: np.ndarray
    suggested: np.ndarray
    score: np.ndarray
    flagged: np.ndarray
    class_names: tuple[str, ...]

    def write_csv(self, path: str | Path) -> None:
        with open(path, "w", newline="") as f:
            out = csv.writer(f)
            out.writerow(["index", "observed", "observed_name", "suggested", "suggested_name", "score", "flagged"])
            for i, z, s, score, flag in zip(self.index, self.observed, self.suggested, self.score, self.flagged):
                out.writerow([int(i), int(z), self.class_names[z], int(s), self.class_names[s], f"{score:.6f}",
                              int(flag)])


def find_label_issues(run_dir: str | Path) -> LabelIssues:
    """Rank a DMIS run's labelled training examples by how much its model doubts their labels."""
    run_dir = Path(run_dir)
    path = run_dir / CHECKPOINT_NAME
    ckpt = load_checkpoint(path)
    config = checkpoint_config(ckpt, path)
    labels = load_labels(run_dir / LABELS_NAME)
    if labels.kind not in KINDS_WITH_OBSERVED:
        raise ValueError(f"{run_dir}: finding label issues needs observed labels ({', '.join(KINDS_WITH_OBSERVED)}); "
                         f"this run has {labels.kind} labels")
    table = ckpt.get("table")
    if config.method != "dmis" or table is None or int(ckpt.get("refreshes", 0)) == 0:
        raise ValueError(f"{run_dir}: the run has no posterior table yet (a vanilla run, or one stopped before "
                         "its first E-step); train DMIS longer")
    lik = run_label_likelihood(ckpt, labels, config)
    names = tuple(ckpt.get("class_names", ())) or tuple(str(k) for k in range(labels.num_classes))
    return rank_label_issues(table.double().numpy(), lik, labels.observed, names)


def rank_label_issues(table: np.ndarray, lik: np.ndarray, observed: np.ndarray,
                      class_names: tuple[str, ...]) -> LabelIssues:
    """The ranking itself: table (N, K) posteriors f(y | x), lik (N, K) p(z_n | y), observed (N,)
    labels (-1 = unlabelled, left out)."""
    w = table * lik
    w = w / np.clip(w.sum(axis=1, keepdims=True), 1e-300, None)
    rows = np.flatnonzero(observed >= 0)
    z = observed[rows]
    score = 1.0 - w[rows, z]
    suggested = w[rows].argmax(axis=1)
    confidence = w[rows, suggested]
    order = np.lexsort((-confidence, -score))  # most doubt first; among equal doubt, the surest suggestion
    return LabelIssues(index=rows[order], observed=z[order], suggested=suggested[order], score=score[order],
                       flagged=(suggested != z)[order], class_names=class_names)
