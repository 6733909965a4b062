"""A second stage's labels: z where the model agrees, unlabelled elsewhere; the first stage's
validation rows, noisy labels and T survive a round trip through a label file."""
import numpy as np
import pytest

from label_models.agreement import agreement_labels, first_stage_labels, pinned_validation_rows
from label_models.io import load_labels, save_labels
from label_models.labels import ImpreciseLabels


def noisy(z, truth=None):
    z = np.asarray(z)
    return ImpreciseLabels(np.eye(3, dtype=np.float32)[z], kind="noisy", true_labels=truth)


def test_agreement_keeps_the_agreeing_labels_and_unlabels_the_rest_and_the_validation_rows(tmp_path):
    labels = noisy([0, 1, 2, 2, 1, 0], truth=np.array([0, 1, 2, 1, 1, 0]))
    model = np.array([0, 2, 2, 2, 1, -1])  # disagrees on row 1; row 5 is held out (never classified)
    t = np.array([[0.8, 0.1, 0.1], [0.1, 0.8, 0.1], [0.1, 0.1, 0.8]])
    out = agreement_labels(labels, model, np.array([5, 4]), transition=t, source="runs/one")
    assert out.kind == "semi"
    np.testing.assert_array_equal(out.observed, [0, -1, 2, 2, -1, -1])  # row 4 agrees but is validation
    np.testing.assert_array_equal(out.true_labels, labels.true_labels)
    path = tmp_path / "stage2.npz"
    save_labels(path, out)
    back = load_labels(path)
    np.testing.assert_array_equal(pinned_validation_rows(back), [4, 5])
    first, t_back = first_stage_labels(back)
    assert first.kind == "noisy"
    np.testing.assert_array_equal(first.observed, labels.observed)
    np.testing.assert_allclose(t_back, t)


def test_other_label_sets_pin_nothing_and_only_noisy_labels_are_refined():
    labels = noisy([0, 1, 2])
    assert pinned_validation_rows(labels) is None and first_stage_labels(labels) is None
    partial = ImpreciseLabels(np.ones((3, 3), dtype=np.float32), kind="partial")
    with pytest.raises(ValueError, match="made from noisy labels"):
        agreement_labels(partial, np.zeros(3, dtype=int), np.zeros(0, dtype=int), transition=None, source="x")


def test_a_min_confidence_also_unlabels_the_agreeing_rows_the_model_is_unsure_of():
    labels = noisy([0, 1, 2, 2, 1])
    model = np.array([0, 1, 2, 0, 1])  # agrees on rows 0, 1, 2 and 4
    p_label = np.array([0.95, 0.6, 0.91, 0.3, 0.9])
    keep = agreement_labels(labels, model, np.zeros(0, dtype=int), transition=None, source="x",
                            label_probability=p_label, min_confidence=0.9)
    np.testing.assert_array_equal(keep.observed, [0, -1, 2, -1, 1])
    assert keep.meta["refine"]["min_confidence"] == 0.9
    plain = agreement_labels(labels, model, np.zeros(0, dtype=int), transition=None, source="x")
    np.testing.assert_array_equal(plain.observed, [0, 1, 2, -1, 1])
    with pytest.raises(ValueError, match="min_confidence"):
        agreement_labels(labels, model, np.zeros(0, dtype=int), transition=None, source="x",
                         label_probability=p_label, min_confidence=1.0)
    with pytest.raises(ValueError, match="probability of each row's label"):
        agreement_labels(labels, model, np.zeros(0, dtype=int), transition=None, source="x", min_confidence=0.5)
