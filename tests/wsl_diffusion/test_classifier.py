import numpy as np
import pytest
import torch

from wsl_diffusion.classifier import DiffusionClassifier
from wsl_diffusion.data.datasets import to_model_space
from wsl_diffusion.posterior import INFERENCE_DRAWS, PosteriorConfig, diffusion_posterior


def test_classifier_api_matches_posterior_function(tiny_run, digits_small):
    _, test = digits_small
    clf = DiffusionClassifier.from_run(tiny_run, seed=3, batch_size=1000)
    images = test.images[:40]
    probs = clf.predict_proba(images)
    assert probs.shape == (40, 10)
    np.testing.assert_allclose(probs.sum(1), 1.0, rtol=1e-5)
    # the same numbers as the low-level function with the same noise seed
    res = diffusion_posterior(clf.net, to_model_space(images), clf.posterior,
                              generator=torch.Generator().manual_seed(3), log_prior=clf.log_prior)
    np.testing.assert_allclose(probs, res.probs.numpy(), rtol=1e-5, atol=1e-6)
    assert clf.posterior.draws == INFERENCE_DRAWS and clf.last_nfe_per_image == 10 * 3 * INFERENCE_DRAWS
    assert (clf.predict(images) == probs.argmax(1)).all()
    assert clf.score(images, test.targets[:40]) == pytest.approx((probs.argmax(1) == test.targets[:40]).mean())
    errors = torch.as_tensor(clf.class_errors(images))
    expected = torch.softmax(-errors / clf.posterior.temperature + clf.log_prior, dim=1)
    np.testing.assert_allclose(probs, expected.numpy(), rtol=1e-5, atol=1e-6)


def test_classifier_is_batch_size_independent_in_shape_and_rejects_wrong_shape(tiny_run, digits_small):
    _, test = digits_small
    clf = DiffusionClassifier.from_run(tiny_run, posterior=PosteriorConfig(schedule="median"))
    assert clf.predict_proba(test.images[:5]).shape == (5, 10)
    assert clf.last_nfe_per_image == 10
    with pytest.raises(ValueError, match="expects"):
        clf.predict_proba(np.zeros((2, 9, 9, 1), np.uint8))


def test_class_pruning_through_api(tiny_run, digits_small):
    _, test = digits_small
    cfg = PosteriorConfig(schedule="interval", sigma_lo=0.4, sigma_hi=5.0, num_sigmas=3, keep_classes=2, prune_sigmas=1)
    clf = DiffusionClassifier.from_run(tiny_run, posterior=cfg)
    probs = clf.predict_proba(test.images[:10])
    assert ((probs > 0).sum(1) <= 2).all()
    assert clf.last_nfe_per_image == 10 * 1 + 2 * 2


@pytest.mark.parametrize("make,needle", [
    (lambda x: np.where(np.arange(x.size).reshape(x.shape) == 3, np.nan, x), "NaN or inf"),
    (lambda x: np.where(np.arange(x.size).reshape(x.shape) == 3, np.inf, x), "NaN or inf"),
    (lambda x: (x + 1) * 127.5, "must lie in \\[-1, 1\\]"),  # 0..255 floats
    (lambda x: x.astype(np.complex64), "dtype complex64"),
    (lambda x: np.round((x + 1) * 127.5).astype(np.int64), "must be uint8"),
    (lambda x: x[:0], "no images"),
    (lambda x: x[:, 0], "\\(N, C, H, W\\)"),
])
def test_inputs_the_model_would_misread_are_rejected(tiny_run, digits_small, make, needle):
    """Model-space floats are the contract: anything else is a ValueError that says what to do,
    never NaN probabilities or a silent truncation."""
    _, test = digits_small
    clf = DiffusionClassifier.from_run(tiny_run)
    good = to_model_space(test.images[:4]).numpy()
    assert np.isfinite(clf.predict_proba(good)).all()
    with pytest.raises(ValueError, match=needle):
        clf.predict_proba(make(good))


def test_uint8_pixels_as_a_torch_tensor_match_the_numpy_array(tiny_run, digits_small):
    _, test = digits_small
    clf = DiffusionClassifier.from_run(tiny_run)
    np.testing.assert_array_equal(clf.predict_proba(torch.from_numpy(test.images[:4])),
                                  clf.predict_proba(test.images[:4]))


def test_budget_schedules_are_stored_in_the_run_and_refitted_after_more_training(tiny_run, digits_small, tmp_path):
    """The schedule fitted for a budget lands in RUN/posterior_budgets.json; a new classifier on the
    same checkpoint reads it (no calibration pass), and one on a checkpoint with another step fits
    again, because its model is another."""
    import json
    import shutil

    from wsl_diffusion.run import BUDGETS_NAME

    run = tmp_path / "run"
    shutil.copytree(tiny_run, run)
    (run / BUDGETS_NAME).unlink(missing_ok=True)
    first = DiffusionClassifier.from_run(run)
    fitted = first.schedule_for_budget(14)
    assert first._grid_errors is not None  # it fitted
    stored = json.loads((run / BUDGETS_NAME).read_text())
    assert stored["step"] == first.run_step and set(stored["budgets"]) == {"14"}

    again = DiffusionClassifier.from_run(run)
    assert again.schedule_for_budget(14) == fitted and again._grid_errors is None  # read, not refitted

    stored["step"] += 1  # as if the run had trained on after the fit
    (run / BUDGETS_NAME).write_text(json.dumps(stored))
    later = DiffusionClassifier.from_run(run)
    later.schedule_for_budget(14)
    assert later._grid_errors is not None
    assert json.loads((run / BUDGETS_NAME).read_text())["step"] == later.run_step
