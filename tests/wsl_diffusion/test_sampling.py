"""EDM samplers against the exact probability-flow ODE of a Gaussian, batch-size independence,
classifier-free guidance and sample files."""
import math

import numpy as np
import pytest
import torch

from wsl_diffusion.sampling import (SOLVERS, class_conditional, edm_sigma_steps, euler_sample, heun_sample, image_seed,
                                    initial_noise, sample_per_class)
from wsl_diffusion.data.images import load_samples_npz, save_samples_npz

S = 0.3  # data std of the single Gaussian N(mu, S^2 I)
SIGMA_MIN, SIGMA_MAX = 0.002, 80.0


@pytest.fixture
def single_gaussian(gaussian_denoiser):
    """The exact denoiser of ONE Gaussian: the fixture's class with a single mean (K = 1)."""
    mu = gaussian_denoiser.means[:1]  # (1, C, H, W)
    net = type(gaussian_denoiser)(mu, s=S)
    onehot = torch.ones(1, 1)
    return (lambda x, sigma: net(x, sigma, onehot.expand(len(x), 1))), mu[0]


def exact_ode_solution(x_t: torch.Tensor, mu: torch.Tensor) -> torch.Tensor:
    """Where the probability-flow ODE takes x_T (at SIGMA_MAX) for N(mu, S^2 I) data.

    The ODE keeps (x - mu) / sqrt(S^2 + sigma^2) constant, so at SIGMA_MIN x - mu has been scaled
    by sqrt(S^2 + SIGMA_MIN^2) / sqrt(S^2 + SIGMA_MAX^2); the samplers' final Euler step to 0 is
    exactly D(x, SIGMA_MIN), a further factor S^2 / (S^2 + SIGMA_MIN^2)."""
    scale = S**2 / (math.sqrt(S**2 + SIGMA_MIN**2) * math.sqrt(S**2 + SIGMA_MAX**2))
    return mu.double() + (x_t.double() - mu.double()) * scale


def max_error(solver, steps, denoise, x_t, exact):
    out = SOLVERS[solver](denoise, x_t, edm_sigma_steps(steps))
    return float((out.double() - exact).abs().max())


def test_heun_is_second_order_and_euler_first_order(single_gaussian):
    denoise, mu = single_gaussian
    x_t = initial_noise(range(200), tuple(mu.shape), sigma_max=SIGMA_MAX)
    exact = exact_ode_solution(x_t, mu)
    heun = [max_error("heun", n, denoise, x_t, exact) for n in (32, 64, 128)]
    euler = [max_error("euler", n, denoise, x_t, exact) for n in (128, 256, 512)]
    # Halving the step size divides the global error by ~4 (Heun) and ~2 (Euler).
    for coarse, fine in zip(heun, heun[1:]):
        assert 0.15 < fine / coarse < 0.35
    for coarse, fine in zip(euler, euler[1:]):
        assert 0.4 < fine / coarse < 0.6
    # Both converge to the same (exact) solution.
    assert heun[-1] < 2e-3 and euler[-1] < 1e-2


def test_heun_recovers_gaussian_mean_and_variance(single_gaussian):
    denoise, mu = single_gaussian
    n = 2000
    x_t = initial_noise(range(n), tuple(mu.shape), sigma_max=SIGMA_MAX)
    x0 = heun_sample(denoise, x_t, edm_sigma_steps(64)).double()
    d = mu.numel()
    # Per-pixel means: standard error S / sqrt(n); the ODE itself shrinks the mean of
    # x_T = SIGMA_MAX * noise towards 0 by a factor S / SIGMA_MAX (well below that error).
    se_mean = S / math.sqrt(n)
    assert float((x0.mean(0) - mu).abs().max()) < 5 * se_mean
    # Pooled variance over pixels: standard error S^2 sqrt(2 / (n d)).
    var = float(x0.var(0).mean())
    assert abs(var - S**2) < 5 * S**2 * math.sqrt(2 / (n * d))


def test_samplers_are_pure_functions(single_gaussian):
    denoise, mu = single_gaussian
    x_t = initial_noise([1, 2, 3], tuple(mu.shape), sigma_max=SIGMA_MAX)
    before = x_t.clone()
    sigmas = edm_sigma_steps(8)
    for solver in (heun_sample, euler_sample):
        a, b = solver(denoise, x_t, sigmas), solver(denoise, x_t, sigmas)
        assert torch.equal(a, b) and torch.equal(x_t, before) and a.dtype == torch.float32
    x64 = x_t.double()
    heun_sample(denoise, x64, sigmas)
    assert torch.equal(x64, before.double())  # a float64 input is not modified in place either


def test_number_of_denoiser_calls():
    calls = []

    def denoise(x, sigma):
        calls.append(len(x))
        return torch.zeros_like(x)

    x = torch.randn(3, 1, 2, 2)
    heun_sample(denoise, x, edm_sigma_steps(10))
    assert len(calls) == 2 * 10 - 1  # no correction on the last step (to sigma = 0)
    calls.clear()
    euler_sample(denoise, x, edm_sigma_steps(10))
    assert len(calls) == 10


def test_sample_per_class_does_not_depend_on_batch_size(gaussian_denoiser):
    a, la = sample_per_class(gaussian_denoiser, per_class=5, seed=3, num_steps=6, batch_size=3)
    b, lb = sample_per_class(gaussian_denoiser, per_class=5, seed=3, num_steps=6, batch_size=64)
    assert torch.equal(la, lb) and la.tolist() == [c for c in range(4) for _ in range(5)]
    assert torch.allclose(a, b, atol=1e-6)
    # Nor on which other classes are drawn.
    only2, l2 = sample_per_class(gaussian_denoiser, per_class=5, seed=3, num_steps=6, classes=[2])
    assert torch.allclose(only2, a[10:15], atol=1e-6) and l2.tolist() == [2] * 5
    # Nor on how many images per class: the first 2 of 5 are the 2 of a per_class=2 draw.
    first2, _ = sample_per_class(gaussian_denoiser, per_class=2, seed=3, num_steps=6)
    assert torch.allclose(first2, a.view(4, 5, *a.shape[1:])[:, :2].reshape(8, *a.shape[1:]), atol=1e-6)
    c, _ = sample_per_class(gaussian_denoiser, per_class=5, seed=4, num_steps=6)
    assert not torch.allclose(a, c)  # the seed matters


def test_sample_per_class_batch_size_with_a_trained_network(tiny_run):
    from wsl_diffusion.run import load_model

    net, _, _ = load_model(tiny_run)
    a, _ = sample_per_class(net, per_class=3, num_steps=4, batch_size=7)
    b, _ = sample_per_class(net, per_class=3, num_steps=4, batch_size=30)
    assert a.shape == (30, *net.image_shape)
    assert float((a - b).abs().max()) < 1e-4  # only float round-off of different batch shapes


def test_image_seeds_are_distinct():
    seeds = {image_seed(s, c, i) for s in range(3) for c in range(10) for i in range(300)}
    assert len(seeds) == 3 * 10 * 300
    assert image_seed(0, 1, 0) != image_seed(0, 0, 10_007)  # a collision of naive linear mixing


def test_guidance_extrapolates_away_from_the_unconditional_model(gaussian_denoiser):
    x = torch.randn(4, *gaussian_denoiser.image_shape)
    sigma = torch.full((4,), 0.7)
    ids = torch.tensor([0, 1, 2, 3])
    onehot = torch.eye(4)
    cond = gaussian_denoiser(x, sigma, onehot)
    uncond = gaussian_denoiser(x, sigma, torch.zeros_like(onehot))
    guided = class_conditional(gaussian_denoiser, ids, guidance=2.0)(x, sigma)
    assert torch.allclose(guided, 3 * cond - 2 * uncond, atol=1e-6)
    assert torch.allclose(class_conditional(gaussian_denoiser, ids)(x, sigma), cond)


def test_bad_arguments_raise_value_error(gaussian_denoiser):
    with pytest.raises(ValueError, match="solver"):
        sample_per_class(gaussian_denoiser, per_class=1, solver="rk4")
    with pytest.raises(ValueError, match="per_class"):
        sample_per_class(gaussian_denoiser, per_class=0)
    with pytest.raises(ValueError, match="guidance"):
        sample_per_class(gaussian_denoiser, per_class=1, guidance=-1.0)
    with pytest.raises(ValueError, match="classes"):
        sample_per_class(gaussian_denoiser, per_class=1, classes=[7])


def test_samples_npz_round_trip(tmp_path, gaussian_denoiser):
    images, labels = sample_per_class(gaussian_denoiser, per_class=2, num_steps=3)
    path = tmp_path / "s.npz"
    save_samples_npz(path, images, labels, seed=0, solver="heun")
    arr, lab, meta = load_samples_npz(path)
    assert arr.dtype == np.uint8 and arr.shape == (8, 4, 4, 1)
    assert lab.tolist() == labels.tolist() and meta == {"seed": 0, "solver": "heun"}
    expected = ((images.clamp(-1, 1) + 1) * 127.5).round().permute(0, 2, 3, 1).numpy()
    assert np.array_equal(arr, expected.astype(np.uint8))
