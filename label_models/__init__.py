"""The label-model layer: imprecise-label containers, corruption generators, transition matrices,
class-prior estimators and label-file I/O. NumPy/SciPy only; never imports torch or wsl_diffusion.

Convention: ``transition_matrix[i, j] = P(observed = j | true = i)`` (rows sum to 1); cleanlab's
``noise_matrix`` is its transpose.
"""
from label_models.corruption import (
    BUILTIN_CLASS_MAPS,
    CIFAR10_ASYM_MAP,
    DIGITS_ASYM_MAP,
    CorruptionSpec,
    asymmetric_noise,
    corrupt,
    instance_noise,
    labelled_count,
    partial_labels,
    positive_unlabelled,
    semi_supervised,
    symmetric_noise,
)
from label_models.io import check_writable_label_path, label_file_format, load_labels, save_labels
from label_models.labels import SUPERVISION_KINDS, ImpreciseLabels
from label_models.priors import (
    em_prior,
    labelled_counts_prior,
    partial_prior_update,
    prior_from_transition,
    project_to_simplex,
    pu_dataset_prior,
    pu_mixture_proportion,
    pu_mixture_proportion_top_bin,
)
from label_models.summary import summarize
from label_models.transition import (
    NOISE_MODELS,
    asymmetric_transition,
    build_transition,
    empirical_transition,
    estimate_transition_anchor,
    estimate_transition_volmin,
    implied_noise_rate,
    symmetric_transition,
)

__all__ = [
    "BUILTIN_CLASS_MAPS",
    "CIFAR10_ASYM_MAP",
    "DIGITS_ASYM_MAP",
    "NOISE_MODELS",
    "SUPERVISION_KINDS",
    "CorruptionSpec",
    "ImpreciseLabels",
    "asymmetric_noise",
    "asymmetric_transition",
    "build_transition",
    "check_writable_label_path",
    "corrupt",
    "em_prior",
    "empirical_transition",
    "estimate_transition_anchor",
    "estimate_transition_volmin",
    "implied_noise_rate",
    "instance_noise",
    "label_file_format",
    "labelled_count",
    "labelled_counts_prior",
    "load_labels",
    "partial_labels",
    "partial_prior_update",
    "positive_unlabelled",
    "prior_from_transition",
    "project_to_simplex",
    "pu_dataset_prior",
    "pu_mixture_proportion",
    "pu_mixture_proportion_top_bin",
    "save_labels",
    "semi_supervised",
    "summarize",
    "symmetric_noise",
    "symmetric_transition",
]
