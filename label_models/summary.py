"""A JSON-serialisable audit of an imprecise label set (what `wsl-diff corrupt` prints)."""
from __future__ import annotations

from typing import Any

import numpy as np

from label_models.labels import ImpreciseLabels
from label_models.transition import empirical_transition


def summarize(labels: ImpreciseLabels) -> dict[str, Any]:
    """Describe ``labels`` with plain Python types (safe for ``json.dumps``).

    Keys (None where it does not apply):
      kind, num_samples, num_classes;
      labelled_fraction: share of rows that are not all ones;
      labelled_fraction_per_class: (K,) per *true* class when true labels are known, else None;
      labelled_per_class: (K,) counts of labelled rows per true class (None without true labels);
      samples_per_class: (K,) counts of rows per true class (None without true labels);
      mean_candidate_set_size_per_class: (K,) mean set size per true class (0 for an absent class);
      noise_rate_per_class: (K,) realised noise rate per true class over labelled rows (0 where
        a class has no labelled row);
      mean_candidate_set_size: mean number of candidate classes per row (all rows; an unlabelled
        row counts K);
      mean_candidate_set_size_labelled: the same over labelled rows only;
      noise_rate: realised P(observed != true) over labelled rows (needs observed and true labels);
      true_label_in_set_rate: share of rows whose candidate set holds the true class;
      empirical_transition: (K, K) counted T[i, j] = P(observed = j | true = i) over labelled rows,
        for clean/noisy/semi labels (for pu, "observed" only flags labelled positives, so a T
        of it would be meaningless);
      transition_matrix, class_prior: the stored ones; meta: the stored meta dict.
    """
    k = labels.num_classes
    labelled = labels.is_labelled
    candidates = labels.matrix > 0
    sizes = candidates.sum(axis=1)
    out: dict[str, Any] = {
        "kind": labels.kind,
        "num_samples": labels.num_samples,
        "num_classes": k,
        "labelled_fraction": float(labelled.mean()),
        "labelled_fraction_per_class": None,
        "labelled_per_class": None,
        "mean_candidate_set_size": float(sizes.mean()),
        "mean_candidate_set_size_labelled": float(sizes[labelled].mean()) if labelled.any() else None,
        "noise_rate": None,
        "samples_per_class": None,
        "mean_candidate_set_size_per_class": None,
        "noise_rate_per_class": None,
        "true_label_in_set_rate": None,
        "empirical_transition": None,
        "transition_matrix": None if labels.transition_matrix is None else labels.transition_matrix.tolist(),
        "class_prior": None if labels.class_prior is None else labels.class_prior.tolist(),
        "meta": labels.meta,
    }
    y = labels.true_labels
    if y is not None:
        per_class = np.bincount(y, minlength=k)
        labelled_per_class = np.bincount(y[labelled], minlength=k)
        out["labelled_per_class"] = labelled_per_class.tolist()
        out["samples_per_class"] = per_class.tolist()
        size_sums = np.bincount(y, weights=sizes, minlength=k)
        out["mean_candidate_set_size_per_class"] = np.divide(
            size_sums, per_class, out=np.zeros(k), where=per_class > 0
        ).tolist()
        fraction = np.divide(labelled_per_class, per_class, out=np.zeros(k), where=per_class > 0)
        out["labelled_fraction_per_class"] = fraction.tolist()
        out["true_label_in_set_rate"] = float(candidates[np.arange(labels.num_samples), y].mean())
        z = labels.observed
        if z is not None and labelled.any():
            wrong = (z != y) & labelled
            out["noise_rate"] = float(wrong[labelled].mean())
            out["noise_rate_per_class"] = np.divide(
                np.bincount(y[wrong], minlength=k), labelled_per_class,
                out=np.zeros(k), where=labelled_per_class > 0,
            ).tolist()
            if labels.kind != "pu":
                out["empirical_transition"] = empirical_transition(y, z, k).tolist()
    return out
