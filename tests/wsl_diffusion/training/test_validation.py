"""The validation split (`TrainConfig.validation`): held-out rows that nothing trains on or fits
to, scored on their imprecise labels so that settings can be chosen without the test split."""
import dataclasses

import numpy as np
import torch

from label_models.corruption import CorruptionSpec, corrupt
from label_models.likelihood import label_likelihood
from label_models.transition import symmetric_transition
from wsl_diffusion.config import TrainConfig
from wsl_diffusion.eval.validation import run_validation, validation_split
from wsl_diffusion.posterior import PosteriorConfig, validation_scores
from wsl_diffusion.run import load_checkpoint
from wsl_diffusion.training.losses import restrict_posterior
from wsl_diffusion.training.loop import (holdout_split, initial_transition, label_tensors, labelled_pools, new_state,
                                         refresh_table, run_log_prior, train)


def relabel(labels, rows, shift=1):
    """The same label set with the noisy labels of `rows` moved to another class."""
    observed = np.array(labels.observed)
    observed[rows] = (observed[rows] + shift) % labels.num_classes
    return dataclasses.replace(labels, observed=observed, matrix=np.eye(labels.num_classes)[observed])


def test_the_split_keeps_the_labelled_share_is_disjoint_from_the_holdout_and_fixed():
    y = np.repeat(np.arange(10), 50)
    semi = corrupt(y, num_classes=10, spec=CorruptionSpec(supervision="semi", labelled_fraction=0.2, seed=0))
    cfg = TrainConfig(validation=0.2, holdout=0.1)
    val = validation_split(cfg, semi, len(y))
    labelled = np.asarray(semi.is_labelled)
    assert labelled[val].sum() == round(0.2 * labelled.sum())  # 100 labelled, 400 unlabelled
    assert (~labelled[val]).sum() == round(0.2 * (~labelled).sum())
    assert torch.equal(validation_split(cfg, semi, len(y)), val)  # the same rows on resume
    noisy = corrupt(y, num_classes=10, spec=CorruptionSpec(supervision="noisy", rate=0.4, seed=0))
    val = validation_split(cfg, noisy, len(y))
    rows, held = holdout_split(cfg, "noisy", len(y), val)
    assert len(held) == 50 and not set(held.tolist()) & set(val.tolist())
    assert sorted(rows.tolist() + held.tolist() + val.tolist()) == list(range(len(y)))
    assert validation_split(cfg.replace(validation=0.0), noisy, len(y)).numel() == 0
    # the semi-supervised over-sampler draws only from the training rows
    train_rows = holdout_split(cfg.replace(holdout=0.0), "semi", len(y), validation_split(cfg, semi, len(y)))[0]
    pools = labelled_pools(semi, TrainConfig(labelled_share=0.5), train_rows)
    assert set(torch.cat(pools).tolist()) == set(train_rows.tolist())


def test_the_e_step_reads_no_validation_label(gaussian_denoiser):
    """Changing the validation rows' labels changes nothing the refresh fits (tau, T, prior, the
    table of the other rows), but does change them when the rows are not declared: the check
    can fail."""
    g = torch.Generator().manual_seed(0)
    y = torch.arange(4).repeat_interleave(100)
    images = gaussian_denoiser.means[y] + 0.3 * torch.randn((len(y), 1, 4, 4), generator=g)
    labels = corrupt(y.numpy(), num_classes=4, spec=CorruptionSpec(supervision="noisy", rate=0.4, seed=0))
    cfg = TrainConfig(validation=0.25, posterior=PosteriorConfig(schedule="interval", sigma_lo=0.1, sigma_hi=1.0,
                                                                  num_sigmas=3))
    val = validation_split(cfg, labels, len(y))
    fit = torch.ones(len(y), dtype=torch.bool)
    fit[val] = False

    def refresh(lab, validation):
        transition = initial_transition(lab, cfg)
        log_prior = run_log_prior(lab, cfg, transition, val if validation is not None else val[:0])
        state = new_state(cfg, images.shape[1:], 4, log_prior, len(y), "cpu", transition=transition,
                          first_refresh_kimg=8.0)
        state.ema = gaussian_denoiser
        tensors = label_tensors(lab, assumed_noise_rate=cfg.assumed_noise_rate, transition=transition)
        info = refresh_table(state, cfg, images, tensors, lab, validation=validation)
        return state, info

    a, info = refresh(labels, val)
    b, _ = refresh(relabel(labels, val.numpy()), val)
    assert a.temperature == b.temperature and torch.equal(a.transition, b.transition)
    assert torch.equal(a.table[fit], b.table[fit]) and torch.equal(a.log_prior, b.log_prior)
    assert info["validation_agreement"] > 0.5  # the exact model agrees with 60%-correct labels
    c, _ = refresh(labels, None)
    d, _ = refresh(relabel(labels, val.numpy()), None)
    assert not torch.equal(c.transition, d.transition)


def test_validation_rows_never_train(tmp_path, digits_small):
    """A short DMIS run with noisy labels: the validation rows' labels can be anything, the
    weights come out the same; the summary scores those rows."""
    train_data, _ = digits_small
    labels = corrupt(train_data.targets, num_classes=10, spec=CorruptionSpec(supervision="noisy", rate=0.4, seed=0))
    cfg = TrainConfig(model="tiny", batch_size=16, total_kimg=6 * 16 / 1000, table_refresh_kimg=2 * 16 / 1000,
                      table_refresh_max_kimg=None, checkpoint_every_kimg=1, samples_per_class=0, validation=0.2,
                      posterior=PosteriorConfig(schedule="interval", sigma_lo=0.4, sigma_hi=5.0, num_sigmas=2),
                      supervision={"supervision": "noisy"})
    val = validation_split(cfg, labels, len(train_data)).numpy()
    a = train(cfg, tmp_path / "a", train_data=train_data, labels=labels, progress=False)
    train(cfg, tmp_path / "b", train_data=train_data, labels=relabel(labels, val, shift=3), progress=False)
    wa, wb = load_checkpoint(tmp_path / "a" / "checkpoint.pt"), load_checkpoint(tmp_path / "b" / "checkpoint.pt")
    for name in wa["net"]:
        assert torch.equal(wa["net"][name], wb["net"][name]), name
    assert a["validation"]["rows"] == len(val) == 40
    assert 0 <= a["validation"]["agreement"] <= 1 and a["validation"]["log_lik"] <= 0
    again = run_validation(tmp_path / "a")  # scored again from the run directory: the same numbers, by row
    assert {k: again[k] for k in a["validation"]} == a["validation"]
    assert len(again["row_log_lik"]) == 40 and np.isclose(np.mean(again["row_log_lik"]), again["log_lik"])
    # noisy labels are also scored under the shared T, and its agreement is argmax == z
    assert a["validation"]["log_lik_shared"] <= 0
    assert len(again["row_log_lik_shared"]) == 40
    assert np.isclose(np.mean(again["row_agreement_shared"]), again["agreement_shared"])


def test_the_shared_score_sees_a_confusion_that_the_runs_own_t_absorbs():
    """Model B calls every 0 a 1 and every 1 a 0. A run of B that estimated T well for its own
    posterior (T with rows 0 and 1 swapped) explains the noisy labels exactly as well as model A,
    right everywhere, does under the true T: under each run's own T the two tie. Under the shared
    T (the label model's symmetric one, `shared_label_likelihood`) B loses on every swapped row
    whose noisy label is right."""
    from wsl_diffusion.run import shared_label_likelihood

    y = np.repeat(np.arange(4), 50)
    labels = corrupt(y, num_classes=4, spec=CorruptionSpec(supervision="noisy", rate=0.3, seed=2))
    t = labels.transition_matrix
    swap = np.array([1, 0, 2, 3])
    lik_a = torch.as_tensor(t[:, labels.observed].T)
    lik_b = torch.as_tensor(t[swap][:, labels.observed].T)  # B's own T: B's class c is the true class swap[c]
    onehot = lambda c: torch.nn.functional.one_hot(torch.as_tensor(c), 4).bool()  # noqa: E731
    err_a, err_b = torch.where(onehot(y), 0.0, 5.0), torch.where(onehot(swap[y]), 0.0, 5.0)
    prior = torch.full((4,), -np.log(4))
    own_a = validation_scores(err_a, lik_a, temperature=1.0, log_prior=prior)
    own_b = validation_scores(err_b, lik_b, temperature=1.0, log_prior=prior)
    assert np.isclose(own_a["log_lik"], own_b["log_lik"]) and own_a["agreement"] == own_b["agreement"]
    shared = torch.as_tensor(shared_label_likelihood(labels, TrainConfig()))
    sh_a = validation_scores(err_a, shared, temperature=1.0, log_prior=prior)
    sh_b = validation_scores(err_b, shared, temperature=1.0, log_prior=prior)
    assert sh_a["agreement"] == (labels.observed == y).mean()  # agreement under the shared T: argmax == z
    assert sh_b["agreement"] == (labels.observed == swap[y]).mean()
    assert sh_a["log_lik"] > sh_b["log_lik"] + 0.1


def test_scores_of_a_perfect_posterior_have_known_values():
    """A posterior certain of the true class: agreement is the share of noisy labels equal to
    it, and the run-tau log-likelihood is the mean log T[y, z]; unlabelled rows are left out."""
    y = np.repeat(np.arange(4), 50)
    labels = corrupt(y, num_classes=4, spec=CorruptionSpec(supervision="noisy", rate=0.3, seed=1))
    t = np.full((4, 4), 0.1) + 0.6 * np.eye(4)
    lik = torch.as_tensor(t[:, labels.observed].T)
    lik = torch.cat([lik, torch.ones(7, 4)])  # unlabelled rows: flat
    errors = torch.where(torch.nn.functional.one_hot(torch.as_tensor(np.r_[y, np.zeros(7, int)]), 4).bool(),
                         0.0, 200.0)
    s = validation_scores(errors, lik, temperature=1.0, log_prior=torch.full((4,), -np.log(4)))
    assert s["rows"] == 200
    assert s["agreement"] == (labels.observed == y).mean()
    assert np.isclose(s["log_lik_run"], np.log(t[y, labels.observed]).mean())
    assert s["log_lik"] >= s["log_lik_run"] - 1e-9  # tau fitted on the rows can only do better


def test_pu_likelihood_is_the_labelling_rate_not_the_mask():
    """PU rows are trained and scored under SCAR, not under the mask. The E-step of a model that
    knows nothing but the prior gives an unlabelled image exactly the positive share of the
    unlabelled images (the mask would give it the share over all images). Under the mask, calling
    every image positive explains the labelled positives perfectly (log-likelihood 0, the best
    possible); under SCAR the unlabelled negatives expose it: the true posterior scores higher."""
    y = np.repeat(np.arange(10), 40)
    labels = corrupt(y, num_classes=10, spec=CorruptionSpec(supervision="pu", labelled_fraction=0.3, seed=0,
                                                              positive_classes=(0, 2, 4, 6, 8)))
    truth = np.isin(y, (0, 2, 4, 6, 8)).astype(int)
    assert np.array_equal(label_likelihood(labels, assumed_noise_rate=0.2), labels.matrix)  # no prior: the mask
    lik = torch.as_tensor(label_likelihood(labels, assumed_noise_rate=0.2, class_prior=labels.class_prior))
    c = labels.is_labelled.sum() / (labels.class_prior[1] * len(y))
    assert np.allclose(lik[labels.is_labelled].numpy(), [0, c]) and np.allclose(lik[~labels.is_labelled].numpy(),
                                                                                [1, 1 - c])
    unlabelled = ~labels.is_labelled
    prior_only = torch.as_tensor(labels.class_prior).expand(len(y), 2)
    estep = restrict_posterior(prior_only, lik)
    assert np.isclose(float(estep[unlabelled, 1].mean()), truth[unlabelled].mean())
    prior = torch.log(torch.tensor(labels.class_prior))

    def score(classes, lik):
        errors = torch.where(torch.nn.functional.one_hot(torch.as_tensor(classes), 2).bool(), 0.0, 200.0)
        return validation_scores(errors, lik, temperature=1.0, log_prior=prior)["log_lik_run"]

    mask = torch.as_tensor(labels.matrix, dtype=torch.float64)
    assert score(np.ones_like(truth), mask) >= score(truth, mask)  # the mask cannot tell them apart
    assert score(truth, lik) > score(np.ones_like(truth), lik) + 0.1


def _structured_noise_models(n=1500, k=4, seed=0):
    """Rows whose clean posterior p_A(y | x) is exact by construction (y is drawn from it) and noisy
    labels z ~ T[y] with two structured flips (0 -> 1 and 2 -> 3, each w.p. 0.4). Model A is that
    posterior; model B has absorbed the flips: p_B = p_A T, the labels' own posterior, as a network
    trained on them without a noise model would learn. Both give every label the same probability,
    A through the true T and B through the identity. Returns (errors_A, errors_B, z, T)."""
    rng = np.random.default_rng(seed)
    t = np.eye(k)
    t[0, :2], t[2, 2:] = [0.6, 0.4], [0.6, 0.4]
    logits = 2.5 * np.eye(k)[rng.integers(0, k, n)] + rng.normal(size=(n, k))
    p_a = np.exp(logits - logits.max(1, keepdims=True))
    p_a /= p_a.sum(1, keepdims=True)
    y = np.array([rng.choice(k, p=p) for p in p_a])
    z = np.array([rng.choice(k, p=t[c]) for c in y])
    return torch.as_tensor(-np.log(p_a)), torch.as_tensor(-np.log(p_a @ t)), z, t


def test_the_heldout_t_score_does_not_lean_against_removing_structured_noise():
    """Under the shared symmetric T, model B (flips absorbed) beats model A (flips removed, the
    true clean posterior) by many standard errors, though both predict every label equally well:
    the bias the held-out-T score exists to remove. Under T fitted on the other folds of the
    held-out rows the two tie, and A's fitted T finds the flips."""
    from wsl_diffusion.eval.validation import heldout_transition_scores

    err_a, err_b, z, t = _structured_noise_models()
    prior = torch.full((4,), -np.log(4))
    shared = torch.as_tensor(symmetric_transition(4, 0.2)[:, z].T)
    d_shared = (np.array(validation_scores(err_b, shared, temperature=1.0, log_prior=prior, per_row=True)["row_log_lik"])
                - np.array(validation_scores(err_a, shared, temperature=1.0, log_prior=prior, per_row=True)["row_log_lik"]))
    se = d_shared.std(ddof=1) / np.sqrt(len(d_shared))
    assert d_shared.mean() > 5 * se  # the shared T prefers the model that kept the flips
    a = heldout_transition_scores(err_a, z, log_prior=prior, seed=0, assumed_noise_rate=0.2)
    b = heldout_transition_scores(err_b, z, log_prior=prior, seed=0, assumed_noise_rate=0.2)
    d = np.array(b["row_log_lik_heldout_t"]) - np.array(a["row_log_lik_heldout_t"])
    assert abs(d.mean()) < 2 * d.std(ddof=1) / np.sqrt(len(d))
    assert abs(d.mean()) < 0.1 * d_shared.mean()
    assert np.abs(np.array(a["transition_heldout"]) - t).max() < 0.1  # A's T: the flips
    flips = np.array(b["transition_heldout"])[[0, 2], [1, 3]]
    assert (flips < 0.15).all()  # B's T: hardly any flip left to explain
    assert a["dominant_rows"] == b["dominant_rows"] == 4


def test_dominant_rows_name_a_model_whose_classes_are_swapped():
    """The held-out-T score cannot tell a model from the same model with two classes swapped (a
    swapped T fits it as well); the fitted T's rows whose largest entry is not the diagonal can:
    the swapped model loses exactly the two swapped rows."""
    from wsl_diffusion.eval.validation import heldout_transition_scores

    err_a, _, z, _ = _structured_noise_models(seed=1)
    prior = torch.full((4,), -np.log(4))
    swapped = err_a[:, [1, 0, 2, 3]]
    a = heldout_transition_scores(err_a, z, log_prior=prior, seed=0, assumed_noise_rate=0.2)
    c = heldout_transition_scores(swapped, z, log_prior=prior, seed=0, assumed_noise_rate=0.2)
    assert abs(a["log_lik_heldout_t"] - c["log_lik_heldout_t"]) < 0.02
    assert a["dominant_rows"] == 4 and c["dominant_rows"] == 2
