"""Shared synthetic data for the label-model tests."""
from __future__ import annotations

import numpy as np
import pytest


def _calibrated_posteriors(rng: np.random.Generator, n: int, k: int) -> tuple[np.ndarray, np.ndarray]:
    """A sharp, imperfect *and calibrated* classifier: (probs (N, K), true labels (N,)).

    Each sample gets a predicted class c_n from a non-uniform prior and a posterior that puts
    ~95% of its mass on c_n (a Dirichlet-noised one-hot); the true label is then *drawn from that
    posterior*, so p(y | x_n) = probs[n] holds exactly and estimators that assume a correct
    posterior have a known answer.
    """
    prior = np.linspace(1.0, 2.0, k)
    prior /= prior.sum()
    predicted = rng.choice(k, size=n, p=prior)
    spill = rng.beta(2.0, 38.0, size=n)[:, None]  # mean 0.05 of the mass leaves the predicted class
    probs = (1 - spill) * np.eye(k)[predicted] + spill * rng.dirichlet(np.ones(k), size=n)
    cdf = np.cumsum(probs, axis=1)
    y = np.minimum((rng.random(n)[:, None] * cdf[:, -1:] >= cdf).sum(axis=1), k - 1)
    return probs, y


def _draw_observed(rng: np.random.Generator, y: np.ndarray, t: np.ndarray) -> np.ndarray:
    """z_n ~ T[y_n, :]."""
    cdf = np.cumsum(t[y], axis=1)
    return np.minimum((rng.random(len(y))[:, None] * cdf[:, -1:] >= cdf).sum(axis=1), t.shape[0] - 1)


@pytest.fixture
def calibrated_posteriors():
    return _calibrated_posteriors


@pytest.fixture
def draw_observed():
    return _draw_observed
