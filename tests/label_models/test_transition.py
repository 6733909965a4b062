"""Transition matrices: construction, counting, and estimation of a known T."""
from __future__ import annotations

import numpy as np
import pytest

from label_models.corruption import CIFAR10_ASYM_MAP
from label_models.transition import (
    asymmetric_transition,
    build_transition,
    empirical_transition,
    estimate_transition_anchor,
    estimate_transition_volmin,
    implied_noise_rate,
    symmetric_transition,
    validate_class_map,
)


def test_symmetric_transition():
    t = symmetric_transition(4, 0.3)
    np.testing.assert_allclose(np.diag(t), 0.7)
    np.testing.assert_allclose(t[0, 1:], 0.1)
    np.testing.assert_allclose(t.sum(axis=1), 1.0)


def test_asymmetric_transition_follows_the_map():
    t = asymmetric_transition(4, 0.4, {0: 1, 1: 0, 2: 3})
    expected = np.array([[0.6, 0.4, 0, 0], [0.4, 0.6, 0, 0], [0, 0, 0.6, 0.4], [0, 0, 0, 1]])
    np.testing.assert_allclose(t, expected)
    np.testing.assert_allclose(build_transition("asym", num_classes=4, rate=0.4, class_map={0: 1, 1: 0, 2: 3}), t)
    np.testing.assert_allclose(build_transition("sym", num_classes=4, rate=0.2), symmetric_transition(4, 0.2))


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda: build_transition("instance", num_classes=3, rate=0.2), "empirical_transition"),
        (lambda: build_transition("pairflip", num_classes=3, rate=0.2), "unknown noise model"),
        (lambda: build_transition("asym", num_classes=3, rate=0.2), "class_map"),
        (lambda: symmetric_transition(1, 0.2), ">= 2"),
        (lambda: symmetric_transition(3, 1.2), r"\[0, 1\]"),
        (lambda: validate_class_map({0: 5}, 3), "outside the 3 classes"),
        (lambda: validate_class_map({1: 1}, 3), "to itself"),
        (lambda: validate_class_map([1, 2], 3), "mapping"),
    ],
)
def test_construction_errors(call, message):
    with pytest.raises(ValueError, match=message):
        call()


def test_empirical_transition_counts_and_fills_missing_rows():
    y = np.array([0, 0, 0, 0, 1, 1, 0])
    z = np.array([0, 0, 0, 1, 0, 1, -1])  # the unlabelled row is ignored
    t = empirical_transition(y, z, 3)
    np.testing.assert_allclose(t, [[0.75, 0.25, 0], [0.5, 0.5, 0], [0, 0, 1]])
    with pytest.raises(ValueError, match="equal length"):
        empirical_transition(y, z[:3], 3)


CASES = {
    "sym-0.3-K10": symmetric_transition(10, 0.3),
    "asym-0.4-cifar-K10": asymmetric_transition(10, 0.4, CIFAR10_ASYM_MAP),
    "sym-0.45-K5": symmetric_transition(5, 0.45),
}


@pytest.mark.parametrize("name", list(CASES))
def test_estimators_recover_a_known_transition_matrix(name, calibrated_posteriors, draw_observed):
    t = CASES[name]
    k = t.shape[0]
    rng = np.random.default_rng(1)
    probs_clean, y = calibrated_posteriors(rng, 40_000, k)
    z = draw_observed(rng, y, t)
    # The anchor estimator sees the exact noisy posterior p(z | x) = p(y | x) @ T.
    anchor = estimate_transition_anchor(probs_clean @ t)
    assert np.abs(anchor - t).max() < 0.05
    volmin = estimate_transition_volmin(probs_clean, z, num_classes=k)
    assert np.abs(volmin - t).max() < 0.05
    np.testing.assert_allclose(volmin.sum(axis=1), 1.0)
    # Warm-starting from the anchor estimate lands on the same answer.
    warm = estimate_transition_volmin(probs_clean, z, num_classes=k, init=anchor, steps=200)
    assert np.abs(warm - t).max() < 0.05


def test_volmin_ignores_unlabelled_rows(calibrated_posteriors, draw_observed):
    rng = np.random.default_rng(2)
    t = symmetric_transition(4, 0.2)
    probs, y = calibrated_posteriors(rng, 8000, 4)
    z = draw_observed(rng, y, t)
    z_missing = z.copy()
    z_missing[::2] = -1
    both = estimate_transition_volmin(probs[1::2], z[1::2], num_classes=4, steps=200)
    masked = estimate_transition_volmin(probs, z_missing, num_classes=4, steps=200)
    np.testing.assert_allclose(both, masked)


def test_anchor_quantile_one_takes_the_maximum():
    p = np.array([[0.9, 0.1], [0.6, 0.4], [0.2, 0.8]])
    np.testing.assert_allclose(estimate_transition_anchor(p, quantile=1.0), [[0.9, 0.1], [0.2, 0.8]])


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda: estimate_transition_anchor(np.ones(3)), r"\(N, K\)"),
        (lambda: estimate_transition_anchor(np.array([[0.5, np.nan]])), "finite"),
        (lambda: estimate_transition_anchor(np.array([[0.5, 0.5]]), quantile=2), "quantile"),
        (lambda: estimate_transition_anchor(np.array([[0.0, 0.0], [0.5, 0.5]])), "all-zero row 0"),
        (lambda: estimate_transition_volmin(np.full((2, 3), 1 / 3), np.array([0, 1]), num_classes=2), "columns"),
        (lambda: estimate_transition_volmin(np.full((2, 2), 0.5), np.array([0, 2]), num_classes=2), r"\[-1, 1\]"),
        (lambda: estimate_transition_volmin(np.full((2, 2), 0.5), np.array([-1, -1]), num_classes=2), "no labelled"),
        (lambda: estimate_transition_volmin(np.full((2, 2), 0.5), np.array([0, 1]), num_classes=2, lam=-1), "lam"),
        (lambda: estimate_transition_volmin(np.full((2, 2), 0.5), np.array([0, 1]), num_classes=2, steps=0), "steps"),
        (lambda: estimate_transition_volmin(np.full((2, 2), 0.5), np.array([0, 1]), num_classes=2,
                                            init=np.eye(3)), "init"),
    ],
)
def test_estimator_errors(call, message):
    with pytest.raises(ValueError, match=message):
        call()


def test_m_step_recovers_a_known_t_from_a_perfect_table():
    from label_models.transition import transition_m_step

    rng = np.random.default_rng(0)
    y = rng.integers(0, 5, 20000)
    t = asymmetric_transition(5, 0.3, {0: 1, 2: 3})
    z = np.array([rng.choice(5, p=t[c]) for c in y])
    estimate = transition_m_step(np.eye(5)[y], z, smoothing=0.0)
    np.testing.assert_allclose(estimate, empirical_transition(y, z, 5), atol=1e-12)
    assert np.abs(estimate - t).max() < 0.02  # and the empirical matrix is the true one up to sampling
    # unlabelled rows are ignored; an empty class gets a uniform row from the smoothing
    z_u = np.where(y == 4, -1, z)
    smoothed = transition_m_step(np.eye(5)[y], z_u, smoothing=1.0)
    np.testing.assert_allclose(smoothed[4], np.full(5, 0.2))
    np.testing.assert_allclose(smoothed.sum(axis=1), 1.0)


def test_m_step_and_em_commute_with_a_relabelling_of_the_classes():
    from label_models.transition import estimate_transition_em, transition_m_step

    rng = np.random.default_rng(1)
    p = rng.dirichlet(np.ones(4), size=300)
    z = rng.integers(0, 4, 300)
    perm = np.array([2, 0, 3, 1])  # new class c is old class perm[c]
    inv = np.argsort(perm)
    t = transition_m_step(p, z)
    t_perm = transition_m_step(p[:, perm], inv[z])
    np.testing.assert_allclose(t_perm, t[np.ix_(perm, perm)], atol=1e-12)
    init = symmetric_transition(4, 0.2)
    em = estimate_transition_em(p, z, init=init)
    em_perm = estimate_transition_em(p[:, perm], inv[z], init=init[np.ix_(perm, perm)])
    np.testing.assert_allclose(em_perm, em[np.ix_(perm, perm)], atol=1e-10)


def test_unmixing_a_noisy_label_posterior_recovers_the_clean_one_and_breaks_the_e_step_fixed_point():
    from label_models.transition import unmix_posterior

    rng = np.random.default_rng(2)
    t = asymmetric_transition(5, 0.4, {3: 4, 1: 2, 2: 1})  # one-way 3 -> 4, a swapped pair 1 <-> 2
    clean = rng.dirichlet(np.full(5, 0.3), size=200)
    np.testing.assert_allclose(unmix_posterior(clean @ t, t), clean, atol=1e-9)  # exact inverse
    # The noisy posterior of a pure 3 is T's row 3. The E-step w ∝ p(y | x) T[y, z] on it keeps a
    # 3 labelled 4 at 4; on the unmixed posterior it returns the label to 3.
    pure3 = t[[3]]
    assert np.argmax(pure3[0] * t[:, 4]) == 4
    assert np.argmax(unmix_posterior(pure3, t)[0] * t[:, 4]) == 3
    # off the simplex after inversion: clipped and renormalised; an all-clipped row is kept
    out = unmix_posterior(np.array([[0.9, 0.1, 0, 0, 0], [0, 0, 0, 0.2, 0.8]]), t)
    assert (out >= 0).all() and np.allclose(out.sum(axis=1), 1.0)
    with pytest.raises(ValueError, match="transition must be"):
        unmix_posterior(clean, np.eye(4))


def test_cleanlab_noise_matrix_is_the_transpose_and_round_trips():
    """cleanlab's noise_matrix[i, j] = P(label = i | true = j); ours T[i, j] = P(observed = j | true = i)."""
    from label_models.transition import from_cleanlab_noise_matrix, to_cleanlab_noise_matrix

    t = np.array([[0.7, 0.3, 0.0], [0.1, 0.8, 0.1], [0.0, 0.4, 0.6]])
    nm = to_cleanlab_noise_matrix(t)
    np.testing.assert_allclose(nm.sum(axis=0), 1.0)  # cleanlab's columns are distributions
    assert nm[1, 0] == t[0, 1]  # P(label 1 | true 0)
    np.testing.assert_array_equal(from_cleanlab_noise_matrix(nm), t)
    # cleanlab's own validity check agrees (when cleanlab is installed: pip install '.[compare]')
    noise_generation = pytest.importorskip("cleanlab.benchmarking.noise_generation")
    noise_matrix_is_valid = noise_generation.noise_matrix_is_valid

    assert noise_matrix_is_valid(nm, py=np.full(3, 1 / 3))


def test_implied_noise_rate_is_the_share_of_wrong_labels():
    """1 - sum_y p(y) T[y, y]: the rate itself for symmetric noise under any prior; only the
    flipped classes' share for asymmetric noise; and for a real corruption the realised share of
    wrong labels, up to sampling noise (the realised T and class frequencies give it exactly)."""
    for prior in (np.full(5, 0.2), np.array([0.5, 0.2, 0.1, 0.1, 0.1])):
        assert implied_noise_rate(symmetric_transition(5, 0.3), prior) == pytest.approx(0.3)
    prior = np.array([0.5, 0.2, 0.2, 0.1])
    t = asymmetric_transition(4, 0.4, {0: 1, 2: 3})
    assert implied_noise_rate(t, prior) == pytest.approx(0.4 * (0.5 + 0.2))
    rng = np.random.default_rng(0)
    y = rng.choice(4, size=20000, p=prior)
    z = np.array([rng.choice(4, p=t[c]) for c in y])
    freq = np.bincount(y, minlength=4) / len(y)
    assert implied_noise_rate(empirical_transition(y, z, 4), freq) == pytest.approx((z != y).mean())
    assert abs(implied_noise_rate(t, freq) - (z != y).mean()) < 3 * np.sqrt(0.28 * 0.72 / len(y))
    with pytest.raises(ValueError, match="K = 3"):
        implied_noise_rate(t, np.full(3, 1 / 3))


def test_one_count_of_label_aware_posteriors_recovers_t_where_em_counts_the_label_twice():
    """What a network that trained on a row's noisy label z gives at that row: a posterior that
    already carries z. Take it exact, w ∝ p(y | x) T[y, z] with y ~ p(y | x), z ~ T[y]. Counting
    it once against z is unbiased for the joint of (y, z), so `transition_m_step` returns T;
    Dawid-Skene EM multiplies it by T[y, z] again at every round, so its estimate is pulled
    towards the identity and implies less noise than there is (the `--transition-mstep` choice)."""
    from label_models.transition import estimate_transition_em, transition_m_step

    rng = np.random.default_rng(3)
    k, n = 4, 40000
    p = rng.dirichlet(np.full(k, 0.5), size=n)  # p(y | x): informative but not one-hot
    y = (p.cumsum(axis=1) > rng.random((n, 1))).argmax(axis=1)
    t = asymmetric_transition(k, 0.3, {0: 1, 2: 3})
    z = (t[y].cumsum(axis=1) > rng.random((n, 1))).argmax(axis=1)
    w = p * t[:, z].T
    w /= w.sum(axis=1, keepdims=True)
    once = transition_m_step(w, z, smoothing=0.0)
    assert np.abs(once - t).max() < 0.02
    twice = estimate_transition_em(w, z, init=t, smoothing=0.0)
    prior = np.bincount(y, minlength=k) / n
    assert implied_noise_rate(twice, prior) < implied_noise_rate(t, prior) - 0.05
    # on p(y | x) itself, a posterior that has not seen z, EM is the right estimator and recovers T
    np.testing.assert_allclose(estimate_transition_em(p, z, init=symmetric_transition(k, 0.2), smoothing=0.0), t,
                               atol=0.03)
