"""Shared test fixtures: small deterministic data and an analytic Gaussian denoiser."""
from __future__ import annotations

import pytest
import torch
from torch import nn

torch.set_num_threads(2)  # the CI machine has two cores; be explicit rather than inherit


class GaussianClassDenoiser(nn.Module):
    """The exact denoiser of class-conditional Gaussians x0 | y ~ N(mu_y, s^2 I).

    E[x0 | x, y] = (s^2 x + sigma^2 mu_y) / (s^2 + sigma^2); class vectors may be soft (the
    denoiser is linear in mu, so a soft vector mixes the means) or zero (mean of the means).
    Has the attributes the library reads from a real EDMDenoiser (num_classes, image_shape).
    """

    def __init__(self, means: torch.Tensor, s: float):
        super().__init__()
        self.register_buffer("means", means)  # (K, C, H, W)
        self.s = s
        self.num_classes = means.shape[0]
        self.image_shape = tuple(means.shape[1:])

    def forward(self, x, sigma, class_vector):
        sigma = torch.as_tensor(sigma, dtype=x.dtype).reshape(-1)
        if sigma.numel() == 1:
            sigma = sigma.expand(x.shape[0])
        cv = class_vector.to(x.dtype)
        has_label = cv.sum(1, keepdim=True) > 0
        weights = torch.where(has_label, cv / cv.sum(1, keepdim=True).clamp_min(1e-12),
                              torch.full_like(cv, 1.0 / self.num_classes))
        mu = torch.einsum("bk,kchw->bchw", weights, self.means.to(x.dtype))
        s2, sig2 = self.s**2, sigma.view(-1, 1, 1, 1) ** 2
        return (s2 * x + sig2 * mu) / (s2 + sig2)


@pytest.fixture
def one_thread():
    """Run a test with torch on one thread (sklearn/CNN baselines share the cores with timing runs)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture
def gaussian_denoiser():
    g = torch.Generator().manual_seed(0)
    means = torch.randn(4, 1, 4, 4, generator=g) * 0.5
    return GaussianClassDenoiser(means, s=0.3)


@pytest.fixture(scope="session")
def digits_small():
    """A 200-image slice of the digits training split and the full test split (fast tests)."""
    from wsl_diffusion.data.datasets import ArrayDataset, load_digits_split

    train, test = load_digits_split()
    return ArrayDataset(train.images[:200], train.targets[:200], train.class_names), test


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory, digits_small):
    """A tiny DMIS run directory (partial labels, ~20 steps) shared by the CLI/API tests."""
    from label_models.corruption import CorruptionSpec, corrupt
    from wsl_diffusion.config import TrainConfig
    from wsl_diffusion.posterior import PosteriorConfig
    from wsl_diffusion.training.loop import train

    train_data, test_data = digits_small
    run_dir = tmp_path_factory.mktemp("tiny_run")
    labels = corrupt(train_data.targets, num_classes=10, spec=CorruptionSpec(supervision="partial", q=0.3))
    cfg = TrainConfig(model="tiny", batch_size=32, total_kimg=20 * 32 / 1000, table_refresh_kimg=10 * 32 / 1000,
                      samples_per_class=0, supervision={"supervision": "partial", "q": 0.3},
                      posterior=PosteriorConfig(schedule="interval", sigma_lo=0.4, sigma_hi=5.0, num_sigmas=3))
    train(cfg, run_dir, train_data=train_data, labels=labels, progress=False)
    return run_dir
