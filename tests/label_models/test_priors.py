"""Class-prior estimators recover known priors on synthetic data with exact posteriors."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.stats import norm

from label_models.labels import ImpreciseLabels
from label_models.priors import (
    em_prior,
    labelled_counts_prior,
    partial_prior_update,
    prior_from_transition,
    project_to_simplex,
    pu_dataset_prior,
    pu_mixture_proportion,
    pu_mixture_proportion_top_bin,
)
from label_models.transition import asymmetric_transition, symmetric_transition

MEANS = np.array([-2.0, 0.0, 2.0])  # three unit-variance 1-D Gaussian classes


def gaussian_mixture(rng, n, prior):
    y = rng.choice(len(prior), size=n, p=prior)
    return rng.normal(MEANS[y], 1.0), y


def exact_posteriors(x, prior):
    """p(y | x) under the given prior (the Bayes classifier of the mixture)."""
    joint = norm.pdf(x[:, None], loc=MEANS[None, :]) * prior[None, :]
    return joint / joint.sum(axis=1, keepdims=True)


@pytest.mark.parametrize("train_prior", [[1 / 3, 1 / 3, 1 / 3], [0.2, 0.5, 0.3]])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_em_prior_recovers_a_shifted_prior(train_prior, seed):
    train_prior = np.array(train_prior)
    test_prior = np.array([0.6, 0.3, 0.1])
    x, _ = gaussian_mixture(np.random.default_rng(seed), 50_000, test_prior)
    probs = exact_posteriors(x, train_prior)  # the classifier still believes the training prior
    estimate = em_prior(probs, train_prior=train_prior)
    assert np.abs(estimate - test_prior).sum() < 0.03
    # The naive average of the posteriors is biased towards the training prior: EM is needed.
    assert np.abs(probs.mean(axis=0) - test_prior).sum() > 0.05


def test_em_prior_is_a_fixed_point_without_shift():
    x, _ = gaussian_mixture(np.random.default_rng(5), 20_000, np.full(3, 1 / 3))
    estimate = em_prior(exact_posteriors(x, np.full(3, 1 / 3)), train_prior=np.full(3, 1 / 3))
    assert np.abs(estimate - 1 / 3).sum() < 0.03


@pytest.mark.parametrize(
    "t", [symmetric_transition(4, 0.4), asymmetric_transition(4, 0.3, {0: 1, 2: 3}), np.eye(4)]
)
def test_prior_from_transition_is_exact_on_exact_inputs(t):
    pi = np.array([0.1, 0.2, 0.3, 0.4])
    np.testing.assert_allclose(prior_from_transition(t.T @ pi, t), pi, atol=1e-12)


def test_prior_from_transition_projects_onto_the_simplex():
    t = symmetric_transition(3, 0.2)
    noisy = np.array([0.1, 0.1, 0.8])  # not reachable from any clean prior: needs projection
    pi = prior_from_transition(noisy, t)
    assert np.all(pi >= 0) and abs(pi.sum() - 1) < 1e-12
    assert pi[2] == pi.max()


@settings(max_examples=20, deadline=None)
@given(
    v=st.lists(st.floats(-10, 10), min_size=2, max_size=8),
    seed=st.integers(0, 2**32 - 1),
)
def test_simplex_projection_is_the_closest_simplex_point(v, seed):
    v = np.array(v)
    p = project_to_simplex(v)
    assert np.all(p >= 0) and abs(p.sum() - 1) < 1e-9
    np.testing.assert_allclose(project_to_simplex(p), p, atol=1e-12)  # idempotent
    others = np.random.default_rng(seed).dirichlet(np.ones(v.size), size=200)
    assert np.all(np.linalg.norm(others - v, axis=1) >= np.linalg.norm(p - v) - 1e-9)


def test_partial_prior_update_votes_inside_the_candidate_set():
    probs = np.array([[0.7, 0.2, 0.1], [0.6, 0.3, 0.1], [0.1, 0.1, 0.8]])
    mask = np.array([[1, 1, 0], [0, 1, 1], [1, 1, 1]])  # votes: 0, 1 (not 0: outside S), 2
    new = partial_prior_update(np.array([1.0, 0.0, 0.0]), probs, mask, momentum=0.5)
    np.testing.assert_allclose(new, 0.5 * np.array([1, 0, 0]) + 0.5 * np.array([1, 1, 1]) / 3)
    with pytest.raises(ValueError, match="sample 0 has an empty candidate set"):
        partial_prior_update(np.full(3, 1 / 3), probs, np.zeros((3, 3)))
    with pytest.raises(ValueError, match="momentum"):
        partial_prior_update(np.full(3, 1 / 3), probs, mask, momentum=1.5)


def test_labelled_counts_prior_smooths_and_refuses_other_kinds():
    lab = ImpreciseLabels(matrix=[[1, 0, 0], [1, 0, 0], [1, 1, 1], [0, 1, 0]], kind="semi")
    np.testing.assert_allclose(labelled_counts_prior(lab), np.array([3, 2, 1]) / 6)  # counts 2, 1, 0 (+1)
    with pytest.raises(ValueError, match="partial_prior_update"):
        labelled_counts_prior(ImpreciseLabels(matrix=[[1, 1, 0]], kind="partial"))
    with pytest.raises(ValueError, match="pu_mixture_proportion"):
        labelled_counts_prior(ImpreciseLabels(matrix=[[0, 1], [1, 1]], kind="pu"))


@pytest.mark.parametrize("pi, c", [(0.4, 0.3), (0.2, 0.5), (0.7, 0.1)])
def test_pu_mixture_proportion_on_exact_scores(pi, c):
    """Positives ~ N(+3, 1), negatives ~ N(-3, 1); g(x) = c p(y=1 | x) is the exact
    labelled-vs-unlabelled posterior under "selected completely at random"."""
    rng = np.random.default_rng(0)
    n = 40_000
    y = rng.random(n) < pi
    x = np.where(y, rng.normal(3.0, 1.0, n), rng.normal(-3.0, 1.0, n))
    p_pos = pi * norm.pdf(x, 3.0) / (pi * norm.pdf(x, 3.0) + (1 - pi) * norm.pdf(x, -3.0))
    s = y & (rng.random(n) < c)
    g = c * p_pos
    pi_u = pu_mixture_proportion(g[s], g[~s])
    truth_u = y[~s].mean()
    assert abs(pi_u - truth_u) < 0.02
    prior = pu_dataset_prior(pi_u, num_labelled=int(s.sum()), num_unlabelled=int((~s).sum()))
    assert abs(prior[1] - y.mean()) < 0.02 and abs(prior.sum() - 1) < 1e-12
    # A known label frequency gives the same answer as the estimated one here.
    assert abs(pu_mixture_proportion(g[s], g[~s], label_frequency=c) - truth_u) < 0.02


@pytest.mark.parametrize("alpha", [0.1, 0.3, 0.7])
def test_top_bin_estimator_recovers_the_positive_share_and_reads_only_the_ranking(alpha):
    """Positives score U(0, 3) and negatives U(-3, 1): above 1 only positives remain, so the
    ratio of unlabelled to labelled tail shares there is the positive share of the unlabelled
    rows. Any increasing transform of the scores gives the same estimate. Where the top bin is
    not pure, the estimator that needs calibrated scores is biased and this one is not."""
    rng = np.random.default_rng(1)
    n_l, n_u = 5_000, 20_000
    labelled = rng.uniform(0.0, 3.0, n_l)
    is_pos = rng.random(n_u) < alpha
    unlabelled = np.where(is_pos, rng.uniform(0.0, 3.0, n_u), rng.uniform(-3.0, 1.0, n_u))
    estimate = pu_mixture_proportion_top_bin(labelled, unlabelled)
    assert abs(estimate - is_pos.mean()) < 0.02
    assert pu_mixture_proportion_top_bin(np.exp(labelled), np.exp(unlabelled)) == estimate
    assert pu_mixture_proportion_top_bin(-labelled, -unlabelled) > estimate + 0.1  # a reversed ranking: no pure bin


def test_top_bin_estimator_beats_the_mean_score_label_frequency_where_classes_overlap():
    """Positives ~ N(+1, 1), negatives ~ N(-1, 1), labelled with c = 0.5, and g = c p(y=1 | x)
    exact: E[g | labelled] < c because positives near the overlap get g < c, so Elkan-Noto's
    label frequency is low and its positive share high; the top bin (far right, nearly pure)
    is off by much less."""
    rng = np.random.default_rng(2)
    n, pi, c = 60_000, 0.4, 0.5
    y = rng.random(n) < pi
    x = np.where(y, rng.normal(1.0, 1.0, n), rng.normal(-1.0, 1.0, n))
    p_pos = pi * norm.pdf(x, 1.0) / (pi * norm.pdf(x, 1.0) + (1 - pi) * norm.pdf(x, -1.0))
    s = y & (rng.random(n) < c)
    truth = y[~s].mean()
    elkan_noto = pu_mixture_proportion(c * p_pos[s], c * p_pos[~s])
    top_bin = pu_mixture_proportion_top_bin(x[s], x[~s])
    assert elkan_noto - truth > 0.05
    assert abs(top_bin - truth) < 0.5 * abs(elkan_noto - truth)


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda: em_prior(np.full((2, 2), 0.5), train_prior=[0.0, 1.0]), "strictly positive"),
        (lambda: em_prior(np.full((2, 2), 0.5), train_prior=[0.5, 0.6]), "sum to 1"),
        (lambda: em_prior(np.full((2, 2), 0.5), train_prior=[1 / 3] * 3), "3 entries for 2 classes"),
        (lambda: em_prior(np.full(4, 0.5), train_prior=[0.5, 0.5]), r"\(N, K\)"),
        (lambda: em_prior(np.full((2, 2), 0.5), train_prior=[0.5, 0.5], max_iter=0), "max_iter"),
        (lambda: prior_from_transition([0.5, 0.5], [[0.5, 0.4], [0, 1]]), "row-stochastic"),
        (lambda: prior_from_transition([0.5, 0.5], np.eye(3)), "3 classes"),
        (lambda: project_to_simplex(np.array([np.nan, 1.0])), "finite"),
        (lambda: pu_mixture_proportion([], [0.5]), "non-empty"),
        (lambda: pu_mixture_proportion([1.5], [0.5]), r"\[0, 1\]"),
        (lambda: pu_mixture_proportion([0.0], [0.5]), "label frequency"),
        (lambda: pu_dataset_prior(1.5, num_labelled=1, num_unlabelled=1), "pi_unlabelled"),
        (lambda: pu_dataset_prior(0.5, num_labelled=0, num_unlabelled=0), "counts"),
    ],
)
def test_prior_errors(call, message):
    with pytest.raises(ValueError, match=message):
        call()
