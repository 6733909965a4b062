import numpy as np

from label_models import CorruptionSpec, ImpreciseLabels, corrupt
from label_models.likelihood import initial_log_prior, label_likelihood, pick_candidates
from label_models.transition import symmetric_transition


def test_label_likelihood_noisy_uses_transition_columns():
    y = np.array([0, 1, 2, 2, 1, 0] * 50)
    labels = corrupt(y, num_classes=3, spec=CorruptionSpec(supervision="noisy", rate=0.3, seed=1))
    lik = label_likelihood(labels, assumed_noise_rate=0.2, transition_matrix=labels.transition_matrix)
    np.testing.assert_allclose(lik, labels.transition_matrix[:, labels.observed].T)


def test_label_likelihood_never_reads_the_stored_t():
    """The T a synthetic label file stores is the true one: an oracle that only an explicit
    argument may bring in. Without one, symmetric noise at the assumed rate is used."""
    y = np.array([0, 1, 2, 2, 1, 0] * 50)
    stored = corrupt(y, num_classes=3, spec=CorruptionSpec(supervision="noisy", rate=0.3, seed=1))
    given = symmetric_transition(3, 0.1)
    np.testing.assert_allclose(label_likelihood(stored, assumed_noise_rate=0.2, transition_matrix=given),
                               given[:, stored.observed].T)
    bare = ImpreciseLabels(matrix=stored.matrix, kind="noisy", observed=stored.observed)
    np.testing.assert_allclose(label_likelihood(bare, assumed_noise_rate=0.2),
                               symmetric_transition(3, 0.2)[:, stored.observed].T)
    np.testing.assert_allclose(label_likelihood(stored, assumed_noise_rate=0.2),
                               symmetric_transition(3, 0.2)[:, stored.observed].T)


def test_label_likelihood_of_masks_is_the_mask():
    rows = np.array([[0, 1, 1], [1, 1, 1], [1, 0, 0]], dtype=np.float32)
    np.testing.assert_array_equal(label_likelihood(ImpreciseLabels(matrix=rows, kind="partial"),
                                                   assumed_noise_rate=0.2), rows)


def test_initial_prior_is_a_log_distribution_from_the_labelled_counts():
    rows = np.eye(3, dtype=np.float32)[[0, 0, 0, 1]]
    rows = np.vstack([rows, np.ones((2, 3), dtype=np.float32)])  # two unlabelled rows
    log_pi = initial_log_prior(ImpreciseLabels(matrix=rows, kind="semi"))
    pi = np.exp(log_pi)
    # add-one smoothed labelled counts (3, 1, 0) -> (4, 2, 1) / 7: every class stays possible
    np.testing.assert_allclose(pi, np.array([4, 2, 1]) / 7)


def test_pick_candidates_is_uniform_over_the_set():
    mask = np.zeros((6000, 5), dtype=bool)
    mask[:, [1, 3, 4]] = True
    picks = pick_candidates(mask, np.random.default_rng(0).random(len(mask)))
    counts = np.bincount(picks, minlength=5) / len(picks)
    assert counts[[0, 2]].sum() == 0
    np.testing.assert_allclose(counts[[1, 3, 4]], 1 / 3, atol=0.03)


def test_pick_candidates_follows_u_through_the_set_in_class_order():
    mask = np.array([[0, 1, 0, 1, 1]] * 4, dtype=np.float32)
    u = np.array([0.0, 0.34, 0.67, 0.999999], dtype=np.float32)
    assert pick_candidates(mask, u).tolist() == [1, 3, 4, 4]
