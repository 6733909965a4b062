"""The catalogue of benchmark baselines: scikit-learn on raw pixels (`baselines_sklearn`) and
classifier networks with weak-supervision losses (`baselines_neural`), each trained from the same
imprecise labels as the diffusion model.

Every baseline is a function

    run(train_data, labels, test_data, *, seed) -> {"accuracy": float, "train_seconds": float, ...}

where `labels` is the `label_models.ImpreciseLabels` of `train_data` and the accuracy is measured on
the test split in the label model's class space (`targets_in_label_space`: binary for PU).
`train_seconds` is the fitting time only (prediction excluded). All randomness comes from `seed`
through explicit numpy / torch generators (`baseline_rng`).

The naive baselines train on the observed labels (`naive_training_set`: partial -> a random
candidate, semi -> the labelled rows, pu -> unlabelled = negative); the label-aware ones
(candidate-aware self-training, label spreading, self-training SVC, Elkan–Noto, forward
correction, ELR, PRODEN, nnPU) use the imprecise label as what it is.

`BASELINES` lists every method, written out below; `REGISTRY` is the same as a read-only
name -> `Baseline` mapping, and `methods_for(kind)` the callables for one supervision kind. The
benchmark reads `baselines.REGISTRY` at call time, so a test adds a method by replacing the
attribute (`monkeypatch.setattr(baselines, "REGISTRY", registry_of([*BASELINES, extra]))`).
"""
from __future__ import annotations

import importlib.util
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from types import MappingProxyType

from label_models.labels import SUPERVISION_KINDS

from wsl_diffusion.bench.baseline_common import BaselineFn, baseline_rng, naive_training_set
from wsl_diffusion.bench.baselines_neural import CNN_EPOCHS, cnn_ce, cnn_elr, cnn_forward, cnn_nnpu, cnn_proden
from wsl_diffusion.bench.baselines_sklearn import (candidate_self_training, cleanlearning_svc, elkan_noto,
                                                   label_spreading, naive_sklearn, self_training_svc)

__all__ = ["BASELINES", "REGISTRY", "Baseline", "BaselineFn", "baseline_rng", "methods_for", "naive_training_set",
           "registry_of"]

FAMILIES = ("sklearn", "neural")


@dataclass(frozen=True)
class Baseline:
    """One benchmark method that is not a diffusion model.

    kinds: the supervision kinds it applies to. budget: how much training it gets, printed beside
    its numbers in the report (e.g. "sklearn default", "CNN 40 ep") and compared on a rerun to
    decide whether a finished cell is still current. family: "sklearn" (on pixels) or "neural"
    (a classifier network), for the report's comparison per family. requires: an optional package
    the method needs ("" for none); a benchmark that names no methods leaves it out when missing.
    """

    name: str
    kinds: tuple[str, ...]
    budget: str
    run: BaselineFn
    description: str = ""
    family: str = "sklearn"
    requires: str = ""

    @property
    def installed(self) -> bool:
        return not self.requires or importlib.util.find_spec(self.requires) is not None

    def __post_init__(self) -> None:
        unknown = [k for k in self.kinds if k not in SUPERVISION_KINDS]
        if unknown:
            raise ValueError(f"baseline {self.name!r}: unknown supervision kinds {unknown}")
        if self.family not in FAMILIES:
            raise ValueError(f"baseline {self.name!r}: `family` must be one of {', '.join(FAMILIES)}, "
                             f"got {self.family!r}")


def registry_of(baselines: Iterable[Baseline]) -> Mapping[str, Baseline]:
    """A read-only name -> Baseline mapping in the given order; ValueError on a repeated name."""
    table: dict[str, Baseline] = {}
    for b in baselines:
        if b.name in table:
            raise ValueError(f"two baselines are named {b.name!r}")
        table[b.name] = b
    return MappingProxyType(table)


_ALL = SUPERVISION_KINDS
_NAIVE_NOTE = "observed labels (partial: a random candidate; semi: labelled rows; pu: unlabelled = negative)"
# The budget string is compared on a rerun (a changed budget reruns the cell), so it stays
# "CNN ..." although images of 32x32 and larger train a ResNet-18 (see classifier_backbone).
_CNN_BUDGET = f"CNN {CNN_EPOCHS} ep"
_NET = "small CNN (ResNet-18 from 32x32)"

BASELINES: tuple[Baseline, ...] = (
    Baseline("logreg", _ALL, "sklearn default", naive_sklearn("logreg"), f"LogisticRegression on {_NAIVE_NOTE}"),
    Baseline("svc", _ALL, "sklearn default", naive_sklearn("svc"), f"SVC (RBF) on {_NAIVE_NOTE}"),
    Baseline("knn", _ALL, "sklearn default", naive_sklearn("knn"), f"kNN (k=5) on {_NAIVE_NOTE}"),
    Baseline("rf", _ALL, "sklearn default", naive_sklearn("rf"), f"RandomForest on {_NAIVE_NOTE}"),
    Baseline("mlp", _ALL, "sklearn default", naive_sklearn("mlp"), f"MLP on {_NAIVE_NOTE}"),
    Baseline("cleanlearning_svc", ("noisy",), "cleanlab, 5-fold", cleanlearning_svc,
             "cleanlab CleanLearning(SVC, Platt): drop the label issues found out of fold, refit",
             requires="cleanlab"),
    Baseline("svc_selftrain", ("partial",), "sklearn default, 5 rounds", candidate_self_training("svc", 5),
             "candidate-aware self-training, SVC decision function restricted to the candidates"),
    Baseline("logreg_selftrain", ("partial",), "sklearn default, 5 rounds", candidate_self_training("logreg", 5),
             "candidate-aware self-training, LogisticRegression probabilities restricted to the candidates"),
    Baseline("labelspreading_knn", ("semi",), "sklearn, k=7", label_spreading("knn"), "LabelSpreading, kNN graph"),
    Baseline("labelspreading_rbf", ("semi",), "sklearn, local gamma", label_spreading("rbf"),
             "LabelSpreading, RBF kernel with gamma = 2 / median squared 7th-neighbour distance"),
    Baseline("selftraining_svc", ("semi",), "sklearn, 10 rounds", self_training_svc,
             "SelfTrainingClassifier(SVC(probability=True)), threshold 0.75"),
    Baseline("elkan_noto_logreg", ("pu",), "sklearn default", elkan_noto("logreg"),
             "Elkan-Noto: labelled-vs-unlabelled LogisticRegression divided by c"),
    Baseline("elkan_noto_svc", ("pu",), "sklearn default", elkan_noto("svc"),
             "Elkan-Noto: labelled-vs-unlabelled SVC (Platt) divided by c"),
    Baseline("cnn_ce", _ALL, _CNN_BUDGET, cnn_ce, f"{_NET}, cross-entropy on {_NAIVE_NOTE}", family="neural"),
    Baseline("cnn_forward", ("noisy",), _CNN_BUDGET, cnn_forward,
             f"{_NET}, forward-corrected cross-entropy with the label model's T", family="neural"),
    Baseline("cnn_elr", ("clean", "noisy"), _CNN_BUDGET, cnn_elr, f"{_NET}, early-learning regularisation",
             family="neural"),
    Baseline("cnn_proden", ("partial",), _CNN_BUDGET, cnn_proden, f"{_NET}, PRODEN", family="neural"),
    Baseline("cnn_nnpu", ("pu",), _CNN_BUDGET, cnn_nnpu,
             f"{_NET}, non-negative PU risk with the estimated share of positives", family="neural"),
)

REGISTRY: Mapping[str, Baseline] = registry_of(BASELINES)


def methods_for(kind: str) -> dict[str, BaselineFn]:
    """The baselines that apply to a supervision kind, name -> callable, in catalogue order."""
    if kind not in SUPERVISION_KINDS:
        raise ValueError(f"unknown supervision kind {kind!r}; choose one of {', '.join(SUPERVISION_KINDS)}")
    return {name: b.run for name, b in REGISTRY.items() if kind in b.kinds}
