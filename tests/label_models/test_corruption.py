"""Corruption generators reproduce their noise model: property tests at N = 100k.

Statistical checks use tolerances of ~5 binomial standard errors (or the issue's fixed 0.01 / 0.02
where those are wider than 6 SE), so a correct generator fails with probability < 1e-5 per example.
"""
from __future__ import annotations

import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from label_models.corruption import (
    CIFAR10_ASYM_MAP,
    DIGITS_ASYM_MAP,
    CorruptionSpec,
    asymmetric_noise,
    corrupt,
    instance_noise,
    labelled_count,
    partial_labels,
    positive_unlabelled,
    semi_supervised,
    symmetric_noise,
)
from label_models.transition import asymmetric_transition, empirical_transition, symmetric_transition

N = 100_000
FAST = settings(max_examples=10, deadline=None)
seeds = st.integers(min_value=0, max_value=2**32 - 1)


def true_labels(seed: int, n: int, k: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, k, size=n)


def within_sampling_error(emp: np.ndarray, model: np.ndarray, counts: np.ndarray, z: float = 5.0) -> bool:
    """Each cell of a row-normalised count matrix is within z binomial SEs of the model, plus a
    slack of 4 events per row for rare cells, where the normal approximation does not hold."""
    n = np.maximum(counts, 1)[:, None]
    se = np.sqrt(model * (1 - model) / n)
    return bool(np.all(np.abs(emp - model) <= z * se + 4.0 / n))


@FAST
@given(seed=seeds, k=st.integers(2, 20), rate=st.floats(0.0, 0.95))
def test_symmetric_noise_rate_and_uniform_off_diagonal(seed, k, rate):
    y = true_labels(seed, N, k)
    lab = symmetric_noise(y, num_classes=k, rate=rate, rng=np.random.default_rng(seed + 1))
    realised = np.mean(lab.observed != y)
    # A flip that could redraw the true class would give rate * (K - 1) / K: visible at K = 2.
    assert abs(realised - rate) < 0.01
    emp = empirical_transition(y, lab.observed, k)
    assert within_sampling_error(emp, symmetric_transition(k, rate), np.bincount(y, minlength=k))
    np.testing.assert_allclose(lab.transition_matrix, symmetric_transition(k, rate))
    assert lab.kind == "noisy" and np.array_equal(lab.true_labels, y)
    assert np.array_equal(lab.matrix.argmax(axis=1), lab.observed)


def test_symmetric_noise_never_keeps_a_flipped_label():
    y = true_labels(0, N, 2)
    lab = symmetric_noise(y, num_classes=2, rate=0.999, rng=np.random.default_rng(1))
    assert np.mean(lab.observed != y) > 0.99


pair_maps = st.sampled_from([dict(DIGITS_ASYM_MAP), dict(CIFAR10_ASYM_MAP), {0: 1, 1: 0}, {3: 9, 4: 3}])


@FAST
@given(seed=seeds, rate=st.floats(0.0, 0.95), class_map=pair_maps)
def test_asymmetric_noise_reproduces_its_transition_matrix(seed, rate, class_map):
    k = 10
    y = true_labels(seed, N, k)
    lab = asymmetric_noise(y, num_classes=k, rate=rate, class_map=class_map, rng=np.random.default_rng(seed + 1))
    model = asymmetric_transition(k, rate, class_map)
    np.testing.assert_allclose(lab.transition_matrix, model)
    emp = empirical_transition(y, lab.observed, k)
    assert np.all(emp[model == 0] == 0)  # structural zeros are exact: no other flips ever happen
    assert np.abs(emp - model).max() < 0.025  # ~5 SE at 10k samples per class
    assert within_sampling_error(emp, model, np.bincount(y, minlength=k))
    mapped = np.isin(y, list(class_map))
    assert abs(np.mean(lab.observed[mapped] != y[mapped]) - rate) < 0.01


@FAST
@given(seed=seeds, k=st.integers(2, 10), rate=st.floats(0.0, 0.9))
def test_instance_noise_mean_rate_and_class_level_transition(seed, k, rate):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, k, size=N)
    features = rng.standard_normal((N, 8)) + y[:, None]  # class-dependent features, like images
    lab = instance_noise(y, features, num_classes=k, rate=rate, rng=np.random.default_rng(seed + 1))
    assert abs(np.mean(lab.observed != y) - rate) < 0.02
    emp = empirical_transition(y, lab.observed, k)
    assert within_sampling_error(emp, lab.transition_matrix, np.bincount(y, minlength=k))
    assert abs((1 - np.diag(lab.transition_matrix)) @ np.bincount(y, minlength=k) / N - rate) < 0.02


def test_instance_noise_depends_on_the_instance():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 5, size=20_000)
    x = rng.standard_normal((20_000, 6))
    a = instance_noise(y, x, num_classes=5, rate=0.4, rng=np.random.default_rng(3))
    flipped = a.observed != y
    # Flip targets are not uniform: within a class the wrong labels concentrate on some classes.
    t = a.transition_matrix
    off = t[~np.eye(5, dtype=bool)].reshape(5, 4)
    assert np.all(off.std(axis=1) > 1e-3)
    assert 0.35 < flipped.mean() < 0.45


@FAST
@given(seed=seeds, k=st.integers(2, 15), q=st.floats(0.0, 1.0))
def test_uniform_partial_labels_contain_the_truth(seed, k, q):
    y = true_labels(seed, N, k)
    lab = partial_labels(y, num_classes=k, q=q, rng=np.random.default_rng(seed + 1))
    assert lab.kind == "partial" and lab.observed is None
    assert np.all(lab.matrix[np.arange(N), y] == 1)
    wrong = (lab.matrix.sum(axis=1) - 1).mean() / (k - 1)
    assert abs(wrong - q) <= 5 * np.sqrt(q * (1 - q) / (N * (k - 1))) + 1e-9


@FAST
@given(seed=seeds, k=st.integers(4, 12))
def test_class_dependent_partial_labels_use_circulant_offsets(seed, k):
    y = true_labels(seed, N, k)
    lab = partial_labels(y, num_classes=k, q=0.99, rng=np.random.default_rng(seed + 1), class_dependent=True)
    assert np.all(lab.matrix[np.arange(N), y] == 1)
    offset_of_column = (np.arange(k)[None, :] - y[:, None]) % k  # (N, K) offset of each class
    inside = lab.matrix == 1
    assert not np.any(inside & (offset_of_column > 3))  # no candidates beyond offset +3
    for offset, prob in zip((1, 2, 3), (0.7, 0.5, 0.3)):
        freq = inside[offset_of_column == offset].mean()
        assert abs(freq - prob) < 5 * np.sqrt(prob * (1 - prob) / N)


def test_class_dependent_partial_needs_four_classes():
    with pytest.raises(ValueError, match="at least 4 classes"):
        partial_labels(np.array([0, 1, 2]), num_classes=3, q=0.3, rng=np.random.default_rng(0), class_dependent=True)


@FAST
@given(seed=seeds, k=st.integers(2, 12), f=st.floats(0.001, 1.0), n=st.integers(50, 5000))
def test_semi_supervised_labels_exactly_round_f_n_per_class(seed, k, f, n):
    y = true_labels(seed, n, k)
    lab = semi_supervised(y, num_classes=k, labelled_fraction=f, rng=np.random.default_rng(seed + 1))
    counts = np.bincount(y, minlength=k)
    expected = [0 if c == 0 else min(c, max(1, int(np.floor(f * c + 0.5)))) for c in counts]
    assert np.bincount(y[lab.is_labelled], minlength=k).tolist() == expected
    labelled = lab.is_labelled
    assert np.array_equal(lab.observed[labelled], y[labelled])  # labelled rows are the true label
    assert np.all(lab.matrix[~labelled] == 1) and np.all(lab.observed[~labelled] == -1)


@FAST
@given(
    seed=seeds,
    positives=st.lists(st.integers(0, 9), min_size=1, max_size=9, unique=True),
    f=st.floats(0.001, 1.0),
)
def test_positive_unlabelled_labels_exactly_round_f_positives(seed, positives, f):
    y = true_labels(seed, 5000, 10)
    lab = positive_unlabelled(y, positive_classes=positives, labelled_fraction=f, rng=np.random.default_rng(seed))
    binary = np.isin(y, positives).astype(int)
    n_pos = int(binary.sum())
    assert lab.kind == "pu" and lab.num_classes == 2
    assert np.array_equal(lab.true_labels, binary)
    labelled = lab.is_labelled
    assert labelled.sum() == max(1, int(np.floor(f * n_pos + 0.5)))
    assert np.all(binary[labelled] == 1)  # only positives are ever labelled
    assert np.all(lab.matrix[labelled] == [0, 1]) and np.all(lab.observed[labelled] == 1)
    assert np.all(lab.matrix[~labelled] == 1) and np.all(lab.observed[~labelled] == -1)
    np.testing.assert_allclose(lab.class_prior, [1 - n_pos / 5000, n_pos / 5000])
    assert lab.meta["positive_classes"] == sorted(positives)


def test_labelled_count_rounds_half_up_with_one_per_class():
    assert labelled_count(np.array([0, 1, 10, 15, 100]), 0.1).tolist() == [0, 1, 1, 2, 10]
    assert labelled_count(np.array([5]), 1.0).tolist() == [5]


@pytest.mark.parametrize("supervision", ["clean", "noisy", "partial", "semi", "pu"])
def test_corrupt_is_deterministic_in_the_seed(supervision):
    y = true_labels(0, 2000, 10)
    a = corrupt(y, num_classes=10, spec=CorruptionSpec(supervision, seed=3))
    b = corrupt(y, num_classes=10, spec=CorruptionSpec(supervision, seed=3))
    c = corrupt(y, num_classes=10, spec=CorruptionSpec(supervision, seed=4))
    assert np.array_equal(a.matrix, b.matrix)
    assert supervision == "clean" or not np.array_equal(a.matrix, c.matrix)
    assert a.meta["spec"] == CorruptionSpec(supervision, seed=3).to_dict() and a.meta["dataset"] == "digits"
    assert np.array_equal(a.true_labels, y if supervision != "pu" else np.isin(y, [0, 2, 4, 6, 8]))


def test_corrupt_dispatches_noise_models():
    y = true_labels(1, 3000, 10)
    clean = corrupt(y, num_classes=10, spec=CorruptionSpec("clean"))
    assert clean.kind == "clean" and np.array_equal(clean.transition_matrix, np.eye(10))
    asym = corrupt(y, num_classes=10, spec=CorruptionSpec("noisy", noise="asym", rate=0.3), dataset_name="digits")
    np.testing.assert_allclose(asym.transition_matrix, asymmetric_transition(10, 0.3, DIGITS_ASYM_MAP))
    cifar = corrupt(
        y, num_classes=10, spec=CorruptionSpec("noisy", noise="asym", rate=0.3, class_map="cifar10"), dataset_name="x"
    )
    np.testing.assert_allclose(cifar.transition_matrix, asymmetric_transition(10, 0.3, CIFAR10_ASYM_MAP))
    x = np.random.default_rng(0).standard_normal((3000, 4))
    inst = corrupt(y, num_classes=10, spec=CorruptionSpec("noisy", noise="instance"), features=x)
    assert inst.meta["noise"] == "instance"


def test_corrupt_errors():
    y = true_labels(0, 100, 10)
    with pytest.raises(ValueError, match="needs per-sample features"):
        corrupt(y, num_classes=10, spec=CorruptionSpec("noisy", noise="instance"))
    with pytest.raises(ValueError, match="no built-in asymmetric class map for dataset 'mnist'"):
        corrupt(y, num_classes=10, spec=CorruptionSpec("noisy", noise="asym"), dataset_name="mnist")
    with pytest.raises(ValueError, match="outside the 5 classes"):
        corrupt(y % 5, num_classes=5, spec=CorruptionSpec("noisy", noise="asym"))
    with pytest.raises(ValueError, match="must be class indices in"):
        corrupt(y, num_classes=10, spec=CorruptionSpec("pu", positive_classes=(1, 10)))
    with pytest.raises(ValueError, match="CorruptionSpec"):
        corrupt(y, num_classes=10, spec={"supervision": "clean"})  # type: ignore[arg-type]


GENERATOR_ERRORS = [
    (lambda: symmetric_noise(np.array([0.5, 1.0]), num_classes=2, rate=0.1, rng=np.random.default_rng()), "integer"),
    (lambda: symmetric_noise(np.zeros((2, 2), int), num_classes=2, rate=0.1, rng=np.random.default_rng()), "1-D"),
    (lambda: symmetric_noise(np.array([0, 3]), num_classes=3, rate=0.1, rng=np.random.default_rng()), "outside"),
    (lambda: symmetric_noise(np.array([0, 1]), num_classes=1, rate=0.1, rng=np.random.default_rng()), ">= 2"),
    (lambda: symmetric_noise(np.array([0, 1]), num_classes=2, rate=1.0, rng=np.random.default_rng()), r"\[0, 1\)"),
    (lambda: symmetric_noise(np.array([0, 1]), num_classes=2, rate=0.1, rng=0), "numpy.random.Generator"),
    (lambda: asymmetric_noise(np.array([0, 1]), num_classes=2, rate=0.1, class_map={0: 0},
                              rng=np.random.default_rng()), "to itself"),
    (lambda: instance_noise(np.array([0, 1]), np.zeros((3, 2)), num_classes=2, rate=0.1,
                            rng=np.random.default_rng()), "features must be"),
    (lambda: instance_noise(np.array([0, 1]), np.full((2, 2), np.nan), num_classes=2, rate=0.1,
                            rng=np.random.default_rng()), "NaN"),
    (lambda: partial_labels(np.array([0, 1]), num_classes=2, q=-0.1, rng=np.random.default_rng()), "q must be"),
    (lambda: semi_supervised(np.array([0, 1]), num_classes=2, labelled_fraction=0.0,
                             rng=np.random.default_rng()), r"labelled_fraction must be in \(0, 1\]"),
    (lambda: positive_unlabelled(np.array([0, 1]), positive_classes=[], labelled_fraction=0.5,
                                 rng=np.random.default_rng()), "empty"),
    (lambda: positive_unlabelled(np.array([0, 1]), positive_classes=[3], labelled_fraction=0.5,
                                 rng=np.random.default_rng()), "no sample belongs"),
    (lambda: positive_unlabelled(np.array([0, 0]), positive_classes=[0], labelled_fraction=0.5,
                                 rng=np.random.default_rng()), "needs some negatives"),
    (lambda: positive_unlabelled(np.array([0, 1]), positive_classes=[0.5], labelled_fraction=0.5,
                                 rng=np.random.default_rng()), "sequence of class indices"),
]


@pytest.mark.parametrize("call, message", GENERATOR_ERRORS, ids=[m for _, m in GENERATOR_ERRORS])
def test_generator_input_errors(call, message):
    with pytest.raises(ValueError, match=message):
        call()


SPEC_ERRORS = [
    (dict(supervision="weak"), "unknown supervision 'weak'"),
    (dict(supervision="noisy", noise="pair"), "unknown noise model 'pair'"),
    (dict(supervision="noisy", rate=1.0), r"rate must be in \[0, 1\)"),
    (dict(supervision="noisy", rate=float("nan")), "rate must be"),
    (dict(supervision="noisy", rate="0.4"), "rate must be a number"),
    (dict(supervision="partial", q=1.5), r"q must be in \[0, 1\]"),
    (dict(supervision="semi", labelled_fraction=0.0), "labelled_fraction"),
    (dict(supervision="pu", positive_classes=()), "empty"),
    (dict(supervision="pu", positive_classes=(1, 1)), "duplicates"),
    (dict(supervision="pu", positive_classes=(-1,)), "class indices"),
    (dict(supervision="pu", positive_classes="0,2"), "sequence of ints"),
    (dict(supervision="clean", seed=-1), "seed"),
    (dict(supervision="clean", class_dependent="yes"), "class_dependent"),
    (dict(supervision="noisy", class_map="imagenet"), "unknown class map"),
]


@pytest.mark.parametrize("kwargs, message", SPEC_ERRORS, ids=[m for _, m in SPEC_ERRORS])
def test_spec_validation(kwargs, message):
    with pytest.raises(ValueError, match=message):
        CorruptionSpec(**kwargs)


def test_spec_round_trips_through_json():
    spec = CorruptionSpec("pu", positive_classes=[1, 3], seed=7)  # type: ignore[arg-type]
    assert spec.positive_classes == (1, 3)
    d = json.loads(json.dumps(spec.to_dict()))
    assert CorruptionSpec.from_dict(d) == spec
    with pytest.raises(ValueError, match="unknown CorruptionSpec fields"):
        CorruptionSpec.from_dict({**d, "ratee": 0.1})
