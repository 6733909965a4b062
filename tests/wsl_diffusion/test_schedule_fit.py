"""The posterior schedule fitted from the model and the imprecise labels (wsl_diffusion.schedule_fit)."""
import numpy as np
import pytest
import torch

from wsl_diffusion.posterior import (PosteriorConfig, diffusion_posterior, nfe_per_image, pruning_split,
                                     quadrature_weights, sigma_levels)
from wsl_diffusion.schedule_fit import (budget_candidates, candidate_grid, fit_budget_schedule, fit_schedule,
                                        fitted_keep_classes, level_errors, refit_schedule, window_config)

BASE = PosteriorConfig(schedule="interval", sigma_lo=0.4, sigma_hi=5.0, num_sigmas=3, keep_classes=2, prune_sigmas=1)


def synthetic_errors(grid, informative, truth, num_classes, *, seed=0):
    """Per-level errors (G, M, K), scaled so every level has the same weight in the ELBO sum: on the
    `informative` levels the true class has a lower error (signal 3 against unit noise), on the
    others every class gets independent noise of the same size and nothing else."""
    g = torch.Generator().manual_seed(seed)
    cells = 1.0 / torch.as_tensor(quadrature_weights(grid, window_config(BASE, grid)))  # undo a_g
    m = len(truth)
    errors = torch.randn(len(grid), m, num_classes, generator=g, dtype=torch.float64)
    wrong = torch.ones(m, num_classes, dtype=torch.float64).scatter(1, truth[:, None], 0.0)
    for level in informative:
        errors[level] += 3.0 * wrong
    return errors * cells[:, None, None]


def test_candidate_grid_doubles_and_windows_reproduce_its_levels():
    grid = candidate_grid(BASE)
    assert grid[0] == pytest.approx(BASE.sigma_min) and grid[-1] == pytest.approx(BASE.sigma_max)
    assert np.allclose(grid[1:] / grid[:-1], grid[1] / grid[0]) and 1.8 < grid[1] / grid[0] < 2.2
    window = window_config(BASE, grid[3:6])
    assert np.allclose(sigma_levels(window), grid[3:6]) and window.keep_classes is None


def test_the_fit_finds_the_window_where_the_labels_are_explained():
    """Only levels 4, 5, 6 of the grid carry class information; the fit must take exactly them,
    from noisy labels (30% flipped) alone."""
    grid = candidate_grid(BASE)
    g = torch.Generator().manual_seed(1)
    truth = torch.randint(4, (400,), generator=g)
    flip = torch.rand(400, generator=g) < 0.3
    observed = torch.where(flip, torch.randint(4, (400,), generator=g), truth)
    t = torch.full((4, 4), 0.1, dtype=torch.float64).fill_diagonal_(0.7)  # T[y, z], rows sum to 1
    lik = t[:, observed].T  # p(z_n | y)
    errors = synthetic_errors(grid, [4, 5, 6], truth, 4)
    cfg, info = fit_schedule(errors, grid, lik, torch.log(torch.full((4,), 0.25)), BASE)
    assert cfg is not None
    assert (cfg.sigma_lo, cfg.sigma_hi, cfg.num_sigmas) == pytest.approx((grid[4], grid[6], 3))
    assert info["fit_log_lik"] > info["fit_prior_log_lik"]


def test_an_uninformative_model_keeps_the_schedule():
    """Errors that do not depend on the class explain the labels exactly as well as the prior:
    no window replaces the schedule."""
    grid = candidate_grid(BASE)
    errors = torch.rand(len(grid), 50, 1, dtype=torch.float64).expand(-1, -1, 4)
    lik = torch.nn.functional.one_hot(torch.arange(50) % 4, 4).double()
    cfg, info = fit_schedule(errors, grid, lik, torch.log(torch.full((4,), 0.25)), BASE)
    assert cfg is None and info["fit_log_lik"] == pytest.approx(info["fit_prior_log_lik"])


def test_fitted_keep_classes_is_the_smallest_k_with_the_recall():
    """Rows where the target ranks 0 (95), 1 (4) and 3 (1) of 4 classes."""
    ranks = torch.tensor([0] * 95 + [1] * 4 + [3])
    scores = torch.zeros(100, 4)
    scores.scatter_(1, torch.zeros(100, 1, dtype=torch.long), 1.0 + ranks[:, None].float() - 0.5)  # target: class 0
    scores[:, 1:] = torch.tensor([1.0, 2.0, 3.0])
    target = torch.zeros(100, dtype=torch.long)
    assert fitted_keep_classes(scores, target, recall=0.95) == 1
    assert fitted_keep_classes(scores, target, recall=0.99) == 2
    assert fitted_keep_classes(scores, target, recall=1.0) is None  # only keeping all 4 holds every target


def test_refit_on_the_analytic_denoiser_classifies_as_well_as_its_reference(gaussian_denoiser):
    """Exact Gaussian classes, clean labels: the fitted schedule's posterior ranks the classes as
    the 100-level reference does, and its pruning keeps the true class."""
    den = gaussian_denoiser
    g = torch.Generator().manual_seed(0)
    y = torch.arange(4).repeat(40)
    x0 = den.means[y] + den.s * torch.randn(len(y), *den.image_shape, generator=g)
    lik = torch.nn.functional.one_hot(y, 4).float()
    start = BASE.replace(num_sigmas=4)
    cfg, info = refit_schedule(den, x0, lik, torch.log(torch.full((4,), 0.25)), start, rows=torch.arange(len(y)),
                               generator=g)
    assert cfg != start and info["fit_log_lik"] > info["fit_prior_log_lik"]
    fitted = diffusion_posterior(den, x0, cfg, generator=g).probs.argmax(1)
    reference = diffusion_posterior(den, x0, PosteriorConfig(schedule="grid", num_sigmas=100), generator=g)
    assert (fitted == y).float().mean() >= (reference.probs.argmax(1) == y).float().mean() - 0.02


def test_level_errors_score_every_class_at_every_level(gaussian_denoiser):
    den = gaussian_denoiser
    x0 = den.means[:3]
    errs = level_errors(den, x0, np.array([0.1, 1.0]), generator=torch.Generator().manual_seed(0))
    assert errs.shape == (2, 3, 4)
    assert (errs[1].argmin(dim=1) == torch.arange(3)).all()  # each mean is closest to its own class


def test_a_budget_schedule_never_exceeds_its_budget_and_classifies(gaussian_denoiser):
    """DiffusionClassifier(budget=B) on exact Gaussian classes with clean calibration labels:
    every budget from K upwards is respected exactly as counted, below K is a clear error, and a
    small budget still classifies about as well as the 100-level reference."""
    from wsl_diffusion.classifier import DiffusionClassifier

    den = gaussian_denoiser
    g = torch.Generator().manual_seed(0)
    y = torch.arange(4).repeat(60)
    x0 = (den.means[y] + den.s * torch.randn(len(y), *den.image_shape, generator=g)).clamp(-1, 1)
    clf = DiffusionClassifier(den, posterior=BASE.replace(keep_classes=None, num_sigmas=6),
                              log_prior=torch.log(torch.full((4,), 0.25)))
    clf.calibration = (x0[:120], torch.nn.functional.one_hot(y[:120], 4).double())
    test_x, test_y = x0[120:].numpy(), y[120:].numpy()
    for budget in (4, 5, 7, 8, 12, 20, 40):
        probs = clf.predict_proba(test_x, budget=budget)
        assert clf.last_nfe_per_image <= budget
        assert np.allclose(probs.sum(axis=1), 1.0)
    reference = DiffusionClassifier(den, posterior=PosteriorConfig(schedule="grid", num_sigmas=100),
                                    log_prior=torch.log(torch.full((4,), 0.25)))
    assert clf.score(test_x, test_y) >= 0  # the default schedule still works beside the budgets
    cheap = float((clf.predict(test_x, budget=8) == test_y).mean())
    assert cheap >= reference.score(test_x, test_y) - 0.05
    with pytest.raises(ValueError, match="cannot score all 4 classes once"):
        clf.predict_proba(test_x, budget=3)
    with pytest.raises(ValueError, match="whole number"):
        clf.predict_proba(test_x, budget=7.5)


def test_budget_candidates_cover_pruned_and_unpruned_schedules_within_the_budget():
    grid = candidate_grid(BASE)
    found = list(budget_candidates(BASE, grid, 10, 20))
    assert found and all(nfe_per_image(cfg, 10) <= 20 for _, cfg in found)
    assert any(cfg.keep_classes is None for _, cfg in found) and any(cfg.keep_classes for _, cfg in found)
    assert max(nfe_per_image(cfg, 10) for _, cfg in found) == 20
    assert all(cfg.keep_classes != 1 for _, cfg in found)  # one kept class is the pruning pass, paid twice


def test_a_budget_fit_needs_no_labels_to_find_the_informative_levels():
    """Levels 4, 5, 6 of the grid carry the class, the rest only noise, and no calibration image
    has a label (semi-supervised rows: p(z | y) = 1 for every y), so the labels' likelihood is the
    same for every schedule. The fit must still take exactly the informative levels, by agreeing
    with the whole grid's classes in an independent noise draw, and stay within the budget."""
    grid = candidate_grid(BASE)
    truth = torch.randint(4, (300,), generator=torch.Generator().manual_seed(2))
    draws = torch.stack([synthetic_errors(grid, [4, 5, 6], truth, 4, seed=s) for s in (0, 1)])
    unlabelled = torch.ones(300, 4, dtype=torch.float64)
    cfg, info = fit_budget_schedule(draws, grid, unlabelled, torch.log(torch.full((4,), 0.25)), BASE, budget=12)
    assert nfe_per_image(cfg, 4) <= 12
    levels = np.searchsorted(grid, sigma_levels(cfg) * (1 - 1e-9))  # grid indices of the chosen levels
    assert {4, 5, 6} <= set(levels.tolist())
    if cfg.keep_classes is not None:  # the pass that prunes must rank on informative levels only
        coarse, _ = pruning_split(sigma_levels(cfg), cfg.prune_sigmas)
        assert set(levels[coarse].tolist()) <= {4, 5, 6}
    assert info["agreement"] > 0.8
