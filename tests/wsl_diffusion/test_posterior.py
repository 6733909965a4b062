import math

import numpy as np
import pytest
import torch

from wsl_diffusion.posterior import (PosteriorConfig, class_errors, diffusion_posterior, fit_temperature, nfe_per_image,
                                     log_posterior, median_interval, noised_input_errors, quadrature_weights,
                                     sigma_levels)


def exact_log_posterior(den, x0):
    """Bayes posterior of x0 under N(mu_y, s^2 I) classes with a uniform prior."""
    d2 = (x0[:, None] - den.means[None]).pow(2).flatten(2).sum(-1)  # (B, K)
    return torch.log_softmax(-d2 / (2 * den.s**2), dim=1)


def test_posterior_matches_bayes_on_analytic_denoiser(gaussian_denoiser):
    """The ELBO-weighted class errors are exact log-likelihoods for Gaussian classes."""
    den = gaussian_denoiser
    g = torch.Generator().manual_seed(0)
    y = torch.arange(4).repeat(8)
    x0 = den.means[y] + den.s * torch.randn(len(y), *den.image_shape, generator=g)
    cfg = PosteriorConfig(schedule="grid", num_sigmas=200, sigma_min=1e-3, sigma_max=300.0)
    # average several shared-noise draws: the estimator is unbiased, its variance shrinks
    runs = [diffusion_posterior(den, x0, cfg, generator=g).errors for _ in range(6)]
    logp = log_posterior(torch.stack(runs).mean(0))
    exact = exact_log_posterior(den, x0)
    p, q = logp.exp(), exact.exp()
    assert (p - q).abs().max() < 0.03
    assert (logp.argmax(1) == exact.argmax(1)).all()


def test_shared_noise_lowers_variance_of_class_difference(gaussian_denoiser):
    den = gaussian_denoiser
    g = torch.Generator().manual_seed(3)
    x0 = den.means[:1] + den.s * torch.randn(1, *den.image_shape, generator=g)
    sigmas = np.array([0.05])  # low sigma: the class-independent noise norm dominates the error
    w = np.ones(1)
    shared = torch.stack([class_errors(den, x0, sigmas=sigmas, weights=w, generator=g)[0] for _ in range(300)])
    diff_shared = shared[:, 1] - shared[:, 0]
    # independent noise per class: score each class in its own call
    indep = torch.stack([torch.stack([class_errors(den, x0, sigmas=sigmas, weights=w, generator=g,
                                                   classes=torch.tensor([[c]]))[0, 0] for c in (0, 1)])
                         for _ in range(300)])
    diff_indep = indep[:, 1] - indep[:, 0]
    assert diff_shared.var() < 0.5 * diff_indep.var()
    # both estimate the same expected difference
    assert abs(diff_shared.mean() - diff_indep.mean()) < 4 * math.sqrt(diff_indep.var() / 300)


def test_median_interval_solves_theorem_2():
    from scipy.stats import norm

    for delta in [0.5, 2.0, 6.4]:
        lo, hi = median_interval(delta)
        f = lambda s: norm.cdf((math.log(s) + 1.2) / 1.2)
        assert hi - lo == pytest.approx(delta)
        assert f(lo) + f(hi) == pytest.approx(1.0, abs=1e-9)
    lo, hi = median_interval(1e-12)
    assert lo == pytest.approx(math.exp(-1.2)) and hi == pytest.approx(math.exp(-1.2))
    lo, hi = median_interval(1e-4)
    assert lo == pytest.approx(math.exp(-1.2), rel=1e-3)


def test_schedules_and_weights():
    assert sigma_levels(PosteriorConfig(schedule="median")).tolist() == [pytest.approx(math.exp(-1.2))]
    s = sigma_levels(PosteriorConfig(schedule="interval", sigma_lo=0.4, sigma_hi=6.4, num_sigmas=5))
    assert s[0] == pytest.approx(0.4) and s[-1] == pytest.approx(6.4) and len(s) == 5
    edm = quadrature_weights(s, PosteriorConfig(weighting="edm"))
    assert edm.sum() == pytest.approx(1.0)
    elbo = quadrature_weights(s, PosteriorConfig())
    # elbo weights integrate 1/sigma^2 over log sigma: sum_i a_i sigma_i^2 = log(hi / lo)
    assert (elbo * s**2).sum() == pytest.approx(math.log(6.4 / 0.4))
    with pytest.raises(ValueError, match="schedule"):
        PosteriorConfig(schedule="bogus")


def test_class_pruning_keeps_true_class_and_counts_nfe(gaussian_denoiser):
    den = gaussian_denoiser
    g = torch.Generator().manual_seed(5)
    y = torch.arange(4).repeat(4)
    x0 = den.means[y] + den.s * torch.randn(len(y), *den.image_shape, generator=g)
    cfg = PosteriorConfig(schedule="grid", num_sigmas=6, sigma_min=0.05, sigma_max=5.0, keep_classes=2, prune_sigmas=2)
    res = diffusion_posterior(den, x0, cfg, generator=g)
    assert res.nfe_per_image == 4 * 2 + 2 * 4
    assert ((res.probs > 0).sum(1) <= 2).all()
    torch.testing.assert_close(res.probs.sum(1), torch.ones(len(y)))


def test_fit_temperature_recovers_scale():
    """Labels drawn from softmax(-e / 2) make tau = 2 the maximum-likelihood temperature."""
    g = torch.Generator().manual_seed(0)
    e = torch.rand(20_000, 5, generator=g) * 6
    y = torch.multinomial(torch.softmax(-e / 2.0, dim=1), 1, generator=g).squeeze(1)
    tau = fit_temperature(e, torch.nn.functional.one_hot(y, 5).float())
    assert tau == pytest.approx(2.0, rel=0.05)


def test_noised_input_posterior_limits(gaussian_denoiser):
    """sigma -> 0: the clean-image classifier; sigma large: uninformative (prior)."""
    den = gaussian_denoiser
    g = torch.Generator().manual_seed(7)
    x0 = den.means[[0, 1, 2, 3]] + den.s * torch.randn(4, *den.image_shape, generator=g)
    offsets = np.geomspace(0.01, 50, 60)
    w = quadrature_weights(offsets, PosteriorConfig())
    noise = torch.randn(len(offsets), *x0.shape, generator=g)
    small = noised_input_errors(den, x0, torch.full((4,), 1e-4), offsets=offsets, weights=w, noise=noise)
    assert (log_posterior(small).argmax(1) == torch.arange(4)).all()
    x_big = x0 + 100.0 * torch.randn(x0.shape, generator=g)
    big = noised_input_errors(den, x_big, torch.full((4,), 100.0), offsets=offsets, weights=w, noise=noise)
    assert log_posterior(big).exp().max() < 0.3  # close to uniform over 4 classes


def counting(denoiser, rows: list):
    """`denoiser` with the number of input rows of every network call appended to `rows`."""

    class Counting(torch.nn.Module):
        num_classes, image_shape = denoiser.num_classes, denoiser.image_shape

        def forward(self, x, sigma, class_vector):
            rows.append(x.shape[0])
            return denoiser(x, sigma, class_vector)

    return Counting()


@pytest.mark.parametrize("keep,prune", [(None, 1), (3, 2), (2, 1)])
def test_nfe_per_image_counts_the_network_rows_spent(gaussian_denoiser, keep, prune):
    """The stated cost is what the network actually evaluates: count its input rows."""
    rows = []
    net = counting(gaussian_denoiser, rows)
    cfg = PosteriorConfig(schedule="interval", sigma_lo=0.4, sigma_hi=5.0, num_sigmas=4, keep_classes=keep,
                          prune_sigmas=prune)
    x = torch.zeros(3, *gaussian_denoiser.image_shape)
    res = diffusion_posterior(net, x, cfg, generator=torch.Generator().manual_seed(0))
    assert sum(rows) == 3 * res.nfe_per_image == 3 * nfe_per_image(cfg, gaussian_denoiser.num_classes)


def test_also_keep_refines_one_more_class_without_displacing_the_models_own(gaussian_denoiser):
    rows = []
    net = counting(gaussian_denoiser, rows)
    cfg = PosteriorConfig(schedule="interval", sigma_lo=0.4, sigma_hi=5.0, num_sigmas=4, keep_classes=2,
                          prune_sigmas=1)
    g = torch.Generator().manual_seed(0)
    x = gaussian_denoiser.means[[0, 1, 2]] + 0.05 * torch.randn(3, *gaussian_denoiser.image_shape, generator=g)
    plain = diffusion_posterior(gaussian_denoiser, x, cfg, generator=torch.Generator().manual_seed(1))
    forced = torch.tensor([3, -1, 2])  # image 2's own class is among the model's best: its next best is added
    res = diffusion_posterior(net, x, cfg, generator=torch.Generator().manual_seed(1), also_keep=forced)
    assert sum(rows) == 3 * res.nfe_per_image == 3 * (4 * 1 + 3 * 3)
    finite = torch.isfinite(res.errors)
    assert finite.sum(dim=1).tolist() == [3, 3, 3] and bool(finite[0, 3])
    assert torch.all(finite[torch.isfinite(plain.errors)])  # the model's own kept classes stay kept


def test_antithetic_pairs_cancel_the_noise_of_the_class_difference(gaussian_denoiser):
    """The Gaussian denoiser is linear in its input, so the noise enters a class difference only
    through a term odd in n: an (n, -n) pair removes it exactly, while two independent draws
    (the same evaluations) only halve its variance. Both estimate the same expected difference."""
    den = gaussian_denoiser
    g = torch.Generator().manual_seed(5)
    x0 = den.means[:1] + den.s * torch.randn(1, *den.image_shape, generator=g)
    sigmas, w = np.array([0.3]), np.ones(1)

    def difference(antithetic: bool) -> float:
        e = class_errors(den, x0, sigmas=sigmas, weights=w, generator=g, antithetic=antithetic)[0]
        return float(e[1] - e[0])

    anti = torch.tensor([difference(True) for _ in range(200)])
    pairs = torch.tensor([0.5 * (difference(False) + difference(False)) for _ in range(200)])
    assert anti.var() < 1e-6 * pairs.var()
    assert abs(anti.mean() - pairs.mean()) < 4 * math.sqrt(pairs.var() / 200)


def test_antithetic_doubles_the_counted_evaluations():
    cfg = PosteriorConfig(schedule="interval", sigma_lo=0.4, sigma_hi=5.0, num_sigmas=6, keep_classes=3, prune_sigmas=2)
    assert nfe_per_image(cfg.replace(antithetic=True), 10) == 2 * nfe_per_image(cfg, 10) == 64
    with pytest.raises(ValueError, match="antithetic must be true or false"):
        cfg.replace(antithetic="yes")


def test_draws_average_independent_noise_draws_and_one_draw_is_unchanged(gaussian_denoiser):
    """draws=d is exactly the mean of d one-draw estimates taken one after the other from the same
    generator (so draws=1 reproduces a run's old posterior bit for bit), its variance of a class
    difference is 1/d of one draw's, and it counts d times the evaluations."""
    den = gaussian_denoiser
    x0 = den.means[[0, 1, 2]] + den.s * torch.randn(3, *den.image_shape, generator=torch.Generator().manual_seed(2))
    cfg = PosteriorConfig(schedule="interval", sigma_lo=0.4, sigma_hi=5.0, num_sigmas=4, keep_classes=2, prune_sigmas=1)
    sigmas, w = sigma_levels(cfg), quadrature_weights(sigma_levels(cfg), cfg)

    g1, g2 = torch.Generator().manual_seed(7), torch.Generator().manual_seed(7)
    averaged = class_errors(den, x0, sigmas=sigmas, weights=w, generator=g1, draws=3)
    one_by_one = torch.stack([class_errors(den, x0, sigmas=sigmas, weights=w, generator=g2) for _ in range(3)])
    assert torch.allclose(averaged, one_by_one.mean(0), rtol=1e-6, atol=1e-6)

    old = diffusion_posterior(den, x0, cfg, generator=torch.Generator().manual_seed(4))
    new = diffusion_posterior(den, x0, cfg.replace(draws=1), generator=torch.Generator().manual_seed(4))
    assert torch.equal(old.errors, new.errors)

    g = torch.Generator().manual_seed(9)
    single = torch.stack([class_errors(den, x0[:1], sigmas=sigmas, weights=w, generator=g)[0] for _ in range(300)])
    four = torch.stack([class_errors(den, x0[:1], sigmas=sigmas, weights=w, generator=g, draws=4)[0] for _ in range(300)])
    ratio = float((four[:, 1] - four[:, 0]).var() / (single[:, 1] - single[:, 0]).var())
    assert 0.15 < ratio < 0.4  # 1/4, with the sampling error of two 300-sample variances

    rows = []
    res = diffusion_posterior(counting(den, rows), x0, cfg.replace(draws=4), generator=torch.Generator().manual_seed(0))
    assert sum(rows) == 3 * res.nfe_per_image == 3 * 4 * nfe_per_image(cfg, den.num_classes)
    with pytest.raises(ValueError, match="draws must be an integer >= 1"):
        cfg.replace(draws=0)
