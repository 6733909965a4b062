"""Fréchet distance, density and coverage, and their class-wise versions, on sets with known answers."""
import math

import numpy as np
import pytest

from wsl_diffusion.eval.sample_metrics import (classwise_metrics, density_coverage, frechet_distance,
                                   frechet_distance_from_stats, knn_radii, sample_metrics)


def gaussian(rng, n, d, mean=0.0):
    return rng.normal(size=(n, d)) + mean


def test_fd_of_a_set_with_itself_is_zero():
    x = gaussian(np.random.default_rng(0), 400, 16)
    r = frechet_distance(x, x)
    assert r.distance == pytest.approx(0.0, abs=1e-8)
    assert (r.n_real, r.n_fake) == (400, 400)


def test_fd_of_a_shifted_copy_is_the_squared_shift():
    # Same covariance exactly, so FD = ||shift||^2 with no sampling error at all.
    rng = np.random.default_rng(1)
    x = gaussian(rng, 300, 8)
    for scale in (0.1, 0.5, 2.0):
        shift = scale * rng.normal(size=8)
        assert frechet_distance(x, x + shift).distance == pytest.approx(shift @ shift, rel=1e-6, abs=1e-8)


def test_fd_of_independent_gaussians_grows_by_the_squared_shift():
    # For two independent samples of equal-covariance Gaussians, shifting one by delta adds
    # ||delta||^2 - 2 delta . (mean_a - mean_b) to the FD; the cross term is the only sampling
    # error: its standard deviation is 2 ||delta|| sqrt(1/n_a + 1/n_b) for unit covariance.
    rng = np.random.default_rng(2)
    n, d = 2000, 8
    a, b = gaussian(rng, n, d), gaussian(rng, n, d)
    base = frechet_distance(a, b).distance
    for norm in (0.5, 1.0, 3.0):
        delta = np.full(d, norm / math.sqrt(d))
        grown = frechet_distance(a, b + delta).distance - base
        assert abs(grown - norm**2) < 5 * 2 * norm * math.sqrt(2 / n)


def test_fd_matches_the_closed_form_for_diagonal_gaussians():
    # FD(N(m1, diag s1^2), N(m2, diag s2^2)) = ||m1 - m2||^2 + sum (s1 - s2)^2
    m1, m2 = np.array([0.0, 1.0, 2.0]), np.array([1.0, 1.0, 0.0])
    s1, s2 = np.array([1.0, 2.0, 0.5]), np.array([2.0, 2.0, 1.5])
    fd, regularised = frechet_distance_from_stats(m1, np.diag(s1**2), m2, np.diag(s2**2))
    assert fd == pytest.approx(np.sum((m1 - m2) ** 2) + np.sum((s1 - s2) ** 2))
    assert not regularised


def test_fd_with_singular_covariances_is_finite_and_flagged():
    rng = np.random.default_rng(3)
    x = np.concatenate([gaussian(rng, 200, 4), np.zeros((200, 4))], axis=1)  # 4 dead features
    r = frechet_distance(x, x + 1.0)
    assert r.regularised and r.distance == pytest.approx(8.0, abs=1e-4)
    few = frechet_distance(gaussian(rng, 10, 32), gaussian(rng, 12, 32))  # fewer samples than dims
    assert math.isfinite(few.distance) and (few.n_real, few.n_fake) == (10, 12)


def test_density_and_coverage_of_identical_sets_are_one():
    x = gaussian(np.random.default_rng(4), 300, 5)
    dc = density_coverage(x, x, k=5)
    # Each real ball holds its own centre and k - 1 neighbours strictly inside: density = k / k.
    assert dc.density == pytest.approx(1.0) and dc.coverage == pytest.approx(1.0)
    assert (dc.n_real, dc.n_fake, dc.k) == (300, 300, 5)


def test_density_and_coverage_of_far_apart_sets_are_zero():
    rng = np.random.default_rng(5)
    dc = density_coverage(gaussian(rng, 200, 5), gaussian(rng, 200, 5, mean=100.0))
    assert dc.density == 0.0 and dc.coverage == 0.0


def test_same_distribution_scores_near_one_and_mode_dropping_lowers_coverage():
    rng = np.random.default_rng(6)
    real = np.concatenate([gaussian(rng, 500, 2, -5.0), gaussian(rng, 500, 2, 5.0)])
    fake_full = np.concatenate([gaussian(rng, 500, 2, -5.0), gaussian(rng, 500, 2, 5.0)])
    fake_half = gaussian(rng, 1000, 2, 5.0)  # one mode dropped
    full, half = density_coverage(real, fake_full), density_coverage(real, fake_half)
    assert 0.8 < full.density < 1.2 and full.coverage > 0.9
    assert half.coverage < 0.55 and full.coverage - half.coverage > 0.4


def test_knn_radii_are_kth_neighbour_distances():
    x = np.arange(6, dtype=float)[:, None]  # points on a line, spacing 1
    assert knn_radii(x, k=2).tolist() == [2.0, 1.0, 1.0, 1.0, 1.0, 2.0]
    with pytest.raises(ValueError, match="k = 6"):
        knn_radii(x, k=6)


def test_classwise_metrics_catch_swapped_classes_that_global_metrics_miss():
    rng = np.random.default_rng(7)
    real0, real1 = gaussian(rng, 300, 4, -3.0), gaussian(rng, 300, 4, 3.0)
    real = np.concatenate([real0, real1])
    y = np.repeat([0, 1], 300)
    right = classwise_metrics(real, y, real, y)
    assert right["cw_fd"] == pytest.approx(0.0, abs=1e-8)
    assert right["cw_density"] == pytest.approx(1.0) and right["cw_coverage"] == pytest.approx(1.0)
    assert right["n_fake_per_class"] == [300, 300] and right["classes"] == [0, 1]
    swapped = sample_metrics(real, y, real, 1 - y)  # images right, conditioning labels wrong
    assert swapped["fd"] == pytest.approx(0.0, abs=1e-8)  # the pooled sets are identical...
    # ... but each class is compared with the other class's images: FD(real0, real1) for both,
    # which is about the squared mean shift 4 * 6^2.
    cross = frechet_distance(real0, real1).distance
    assert swapped["cw_fd"] == pytest.approx(cross, rel=1e-9) and cross == pytest.approx(4 * 36.0, rel=0.05)
    assert swapped["cw_coverage"] == 0.0 and swapped["fd_n_fake"] == 600


def test_classwise_metrics_need_enough_samples():
    x = np.zeros((4, 2)) + np.arange(4)[:, None]
    with pytest.raises(ValueError, match="class 0"):
        classwise_metrics(x, [0, 0, 0, 0], x, [0, 0, 0, 0], k=5)


def test_inputs_are_validated():
    with pytest.raises(ValueError, match="dimensions"):
        frechet_distance(np.zeros((5, 2)), np.zeros((5, 3)))
    with pytest.raises(ValueError, match="NaN"):
        density_coverage(np.full((10, 2), np.nan), np.zeros((3, 2)))
    with pytest.raises(ValueError, match=r"\(N, D\)"):
        frechet_distance(np.zeros(5), np.zeros(5))
