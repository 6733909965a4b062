"""The PU class prior from the images alone: close to the true share, deterministic, and a clear
error where there is too little to fit."""
from __future__ import annotations

import numpy as np
import pytest

from label_models import CorruptionSpec, corrupt
from wsl_diffusion.data.datasets import load_digits_split, to_model_space
from wsl_diffusion.training.pu_prior import FOLDS, estimate_pu_prior


@pytest.mark.parametrize("positives, fraction", [((0, 2, 4, 6, 8), 0.5), ((3,), 0.5), ((1, 2, 3, 4, 5, 6, 7), 0.3)])
def test_the_estimated_pu_prior_is_near_the_true_share_of_positives(positives, fraction):
    """Digits' training split, positives from 10% to 70% of the images: the estimate is within
    0.06 of the truth (the top-bin estimator errs upwards where the classifier's top bin holds
    some negatives; measured errors are 0.00-0.04 here), and the same seed gives the same number."""
    train, _ = load_digits_split()
    x = to_model_space(train.images).numpy()
    labels = corrupt(train.targets, num_classes=10,
                     spec=CorruptionSpec(supervision="pu", positive_classes=positives, labelled_fraction=fraction, seed=0))
    prior = estimate_pu_prior(x, labels.is_labelled, seed=0)
    assert abs(prior.sum() - 1) < 1e-12
    assert abs(prior[1] - labels.class_prior[1]) < 0.06
    assert np.array_equal(prior, estimate_pu_prior(x, labels.is_labelled, seed=0))


def test_too_few_labelled_images_to_estimate_the_prior_is_a_clear_error():
    x = np.zeros((50, 4))
    labelled = np.arange(50) < FOLDS - 1
    with pytest.raises(ValueError, match=rf"needs at least {FOLDS} labelled .*\(give the share of positives instead\)"):
        estimate_pu_prior(x, labelled, seed=0)
