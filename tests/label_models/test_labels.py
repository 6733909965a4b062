"""ImpreciseLabels: construction, normalisation and every validation error."""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from label_models.labels import SUPERVISION_KINDS, ImpreciseLabels


def one_hot(idx, k):
    out = np.zeros((len(idx), k), dtype=np.float32)
    out[np.arange(len(idx)), idx] = 1
    return out


def test_kinds_are_the_documented_five():
    assert SUPERVISION_KINDS == ("clean", "noisy", "partial", "semi", "pu")


def test_noisy_labels_are_normalised_and_frozen():
    lab = ImpreciseLabels(
        matrix=one_hot([0, 2, 1], 3).astype(np.float64),
        kind="noisy",
        observed=[0, 2, 1],
        true_labels=np.array([0, 1, 1], dtype=np.int32),
        transition_matrix=np.eye(3),
        class_prior=[0.2, 0.3, 0.5],
        meta={"noise": "sym"},
    )
    assert lab.matrix.dtype == np.float32 and lab.observed.dtype == np.int64
    assert lab.true_labels.dtype == np.int64
    assert (lab.num_samples, lab.num_classes) == (3, 3)
    assert lab.is_labelled.all()
    with pytest.raises(dataclasses.FrozenInstanceError):
        lab.kind = "clean"  # type: ignore[misc]
    with pytest.raises(ValueError):
        lab.matrix[0, 0] = 0.5  # arrays are read-only copies


def test_observed_is_derived_for_hard_label_kinds():
    mat = np.vstack([one_hot([2], 3), np.ones((1, 3))])
    lab = ImpreciseLabels(matrix=mat, kind="semi")
    assert lab.observed.tolist() == [2, -1]
    assert lab.is_labelled.tolist() == [True, False]


def test_partial_has_no_observed_and_counts_full_sets_as_unlabelled():
    mat = np.array([[1, 1, 0], [1, 1, 1]], dtype=np.float32)
    lab = ImpreciseLabels(matrix=mat, kind="partial")
    assert lab.observed is None
    assert lab.is_labelled.tolist() == [True, False]


def test_pu_is_binary():
    lab = ImpreciseLabels(matrix=[[0, 1], [1, 1]], kind="pu", observed=[1, -1], class_prior=[0.4, 0.6],
                          meta={"positive_classes": [0, 5]})
    assert lab.num_classes == 2
    lab.validate_against(2, 10)  # original class count: the positive classes are checked instead
    lab.validate_against(2, 2)  # the binary task itself
    with pytest.raises(ValueError, match=r"positive classes \[5\] do not exist among 4 classes"):
        lab.validate_against(2, 4)


BAD = [
    (dict(matrix=np.ones(3), kind="noisy"), "2-D"),
    (dict(matrix=[[0.0, 1.0]], kind="nonsense"), "unknown supervision kind"),
    (dict(matrix=[[np.nan, 1.0]], kind="partial"), "NaN or inf"),
    (dict(matrix=[[np.inf, 1.0]], kind="partial"), "NaN or inf"),
    (dict(matrix=[[2.0, 1.0]], kind="partial"), r"\[0, 1\]"),
    (dict(matrix=[[-0.5, 1.0]], kind="partial"), r"\[0, 1\]"),
    (dict(matrix=[[1.0, 0.0], [0.0, 0.0]], kind="partial"), "sample 1 has an empty candidate set"),
    (dict(matrix=np.zeros((0, 3)), kind="partial"), "no rows"),
    (dict(matrix=[[1.0], [1.0]], kind="partial"), "at least 2 classes"),
    (dict(matrix=[["a", "b"]], kind="partial"), "numeric"),
    (dict(matrix=one_hot([0, 1], 2), kind="noisy", observed=[0, 2]), r"observed\[1\] = 2 is out of range"),
    (dict(matrix=one_hot([0, 1], 2), kind="noisy", observed=[0]), "shape"),
    (dict(matrix=one_hot([0, 1], 2), kind="noisy", observed=[1, 1]), "disagrees"),
    (dict(matrix=one_hot([0, 1], 2), kind="noisy", observed=[0.5, 1.0]), "integer"),
    (dict(matrix=[[1, 1], [0, 1]], kind="noisy", observed=[-1, 1]), "no unlabelled samples"),
    (dict(matrix=[[1, 1, 0]], kind="noisy"), "one-hot or all-ones"),
    (dict(matrix=[[1, 1, 0]], kind="partial", observed=[0]), "observed=None"),
    (dict(matrix=one_hot([0, 1], 2), kind="clean", true_labels=[0, 5]), r"true_labels\[1\] = 5"),
    (dict(matrix=one_hot([0, 1], 2), kind="noisy", transition_matrix=np.eye(3)), r"\(2, 2\)"),
    (dict(matrix=one_hot([0, 1], 2), kind="noisy", transition_matrix=[[0.5, 0.4], [0, 1]]), "row 0 sums to"),
    (dict(matrix=one_hot([0, 1], 2), kind="noisy", transition_matrix=[[1.5, -0.5], [0, 1]]), "negative"),
    (dict(matrix=one_hot([0, 1], 2), kind="noisy", class_prior=[0.5, 0.6]), "sum to 1"),
    (dict(matrix=one_hot([0, 1], 2), kind="noisy", class_prior=[1.0]), "shape"),
    (dict(matrix=one_hot([0, 1], 2), kind="noisy", meta={"x": object()}), "JSON-serialisable"),
    (dict(matrix=one_hot([0, 1], 2), kind="noisy", meta=[1]), "meta must be a dict"),
    (dict(matrix=one_hot([0, 1, 2], 3), kind="pu"), "K must be 2"),
    (dict(matrix=[[1, 0], [1, 1]], kind="pu", observed=[0, -1]), "labelled negative"),
]


@pytest.mark.parametrize("kwargs, message", BAD, ids=[m for _, m in BAD])
def test_bad_inputs_raise_clear_value_errors(kwargs, message):
    with pytest.raises(ValueError, match=message):
        ImpreciseLabels(**kwargs)


def test_validate_against_names_the_mismatch():
    lab = ImpreciseLabels(matrix=one_hot([0, 1, 2], 3), kind="clean")
    lab.validate_against(3, 3)
    with pytest.raises(ValueError, match="3 label rows for 5 images"):
        lab.validate_against(5, 3)
    with pytest.raises(ValueError, match="3 classes in the labels for 10 in the dataset"):
        lab.validate_against(3, 10)


def test_label_models_import_neither_torch_nor_wsl_diffusion():
    """The label-model layer sits below the model layer (design §4) and must stay torch-free."""
    import subprocess
    import sys

    code = (
        "import sys, label_models, label_models.io, label_models.summary; "
        "bad = [m for m in sys.modules if m.split('.')[0] in ('torch', 'wsl_diffusion')]; "
        "print(bad); sys.exit(1 if bad else 0)"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
