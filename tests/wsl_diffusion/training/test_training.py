import json

import numpy as np
import pytest
import torch

from label_models.corruption import CorruptionSpec, corrupt
from label_models.labels import ImpreciseLabels
from label_models.transition import empirical_transition, transition_m_step
from wsl_diffusion.config import TrainConfig
from wsl_diffusion.posterior import INFERENCE_DRAWS, PosteriorConfig
from wsl_diffusion.run import load_checkpoint
from wsl_diffusion.data.datasets import to_model_space
from wsl_diffusion.training.loop import (TrainingDiverged, draw_batch, estep_restricts, initial_log_prior,
                                         initial_transition, label_tensors, new_state, refresh_table, step_loss, train,
                                         vanilla_targets)


def tiny_config(**changes) -> TrainConfig:
    """A 6-step run on 200 images: refresh every 2 steps (a fixed interval), checkpoint every 2 steps."""
    base = dict(model="tiny", batch_size=16, total_kimg=6 * 16 / 1000, table_refresh_kimg=2 * 16 / 1000,
                table_refresh_max_kimg=None,
                checkpoint_every_kimg=2 * 16 / 1000, log_every_kimg=16 / 1000, samples_per_class=0,
                posterior=PosteriorConfig(schedule="interval", sigma_lo=0.4, sigma_hi=5.0, num_sigmas=2),
                lr=2e-3, ema_halflife_kimg=0.05, supervision={"supervision": "partial"})
    base.update(changes)
    return TrainConfig(**base)


def partial_labels(data, seed=0):
    return corrupt(data.targets, num_classes=10, spec=CorruptionSpec(supervision="partial", q=0.3, seed=seed))


def weights_of(run_dir):
    ckpt = load_checkpoint(run_dir / "checkpoint.pt")
    return ckpt


def assert_same_run(dir_a, dir_b, *keys):
    """The two runs' checkpoints hold the same weights, EMA weights and `keys`, bit for bit."""
    a, b = weights_of(dir_a), weights_of(dir_b)
    for key in ("net", "ema"):
        for name in a[key]:
            assert torch.equal(a[key][name], b[key][name])
    for key in keys:
        assert torch.equal(a[key], b[key]), key


@pytest.mark.parametrize("method,form,fit", [("dmis", "em", "fixed"), ("dmis", "wdsm", "fixed"), ("vanilla", "em", "fixed"),
                                             ("dmis", "em", "refit")])
def test_resume_after_crash_is_bit_exact(tmp_path, digits_small, method, form, fit):
    """Crash after step 3 (last checkpoint at step 2), resume: same weights, EMA, table, optimizer
    and posterior schedule (refit at the refreshes before and after the crash)."""
    train_data, _ = digits_small
    labels = partial_labels(train_data)
    cfg = tiny_config(method=method, gen_form=form, posterior_fit=fit)
    train(cfg, tmp_path / "a", train_data=train_data, labels=labels, progress=False)
    with pytest.raises(ValueError, match="already holds a run"):
        train(cfg, tmp_path / "a", train_data=train_data, labels=labels, progress=False)

    train(cfg, tmp_path / "b", train_data=train_data, labels=labels, progress=False, max_steps=3)
    assert load_checkpoint(tmp_path / "b" / "checkpoint.pt")["step"] == 2  # step 3 was lost
    train(cfg, tmp_path / "b", train_data=train_data, labels=labels, progress=False, resume=True)

    a, b = weights_of(tmp_path / "a"), weights_of(tmp_path / "b")
    assert a["step"] == b["step"] == 6
    for key in ("net", "ema"):
        for name in a[key]:
            assert torch.equal(a[key][name], b[key][name]), f"{key}.{name} differs after resume"
    assert torch.equal(a["table"], b["table"])
    assert a["posterior"] == b["posterior"] and a["table_settled"] == b["table_settled"]
    assert a["refreshes"] == b["refreshes"] == (2 if method == "dmis" else 0)
    if method == "dmis":
        assert not torch.allclose(a["table"], torch.full_like(a["table"], 0.1))  # the table was refreshed


def test_resume_refuses_changed_config(tmp_path, digits_small):
    train_data, _ = digits_small
    labels = partial_labels(train_data)
    cfg = tiny_config()
    train(cfg, tmp_path, train_data=train_data, labels=labels, progress=False, max_steps=2)
    with pytest.raises(ValueError, match="differ from the run saved"):
        train(cfg.replace(lr=1e-2), tmp_path, train_data=train_data, labels=labels, progress=False, resume=True)
    # extending the run is allowed
    train(cfg.replace(total_kimg=cfg.total_kimg * 2), tmp_path, train_data=train_data, labels=labels,
          progress=False, resume=True)
    assert load_checkpoint(tmp_path / "checkpoint.pt")["step"] == 12


def test_non_finite_loss_stops_and_keeps_last_good_checkpoint(tmp_path, digits_small):
    train_data, _ = digits_small
    labels = partial_labels(train_data)
    good = tiny_config()
    train(good, tmp_path, train_data=train_data, labels=labels, progress=False, max_steps=2)
    before = load_checkpoint(tmp_path / "checkpoint.pt")
    # an absurd learning rate without clipping drives the weights to inf within a few steps
    bad = good.replace(lr=1e30, grad_clip=0.0, total_kimg=40 * 16 / 1000, checkpoint_every_kimg=1.0)
    with pytest.raises(TrainingDiverged) as diverged:
        train(bad, tmp_path / "bad", train_data=train_data, labels=labels, progress=False)
    # the message says a checkpoint was kept exactly when one exists
    assert ("checkpoint in" in str(diverged.value)) == (tmp_path / "bad" / "checkpoint.pt").exists()
    assert not (tmp_path / "bad" / "checkpoint.pt").exists() or all(
        torch.isfinite(v).all() for v in load_checkpoint(tmp_path / "bad" / "checkpoint.pt")["net"].values())
    after = load_checkpoint(tmp_path / "checkpoint.pt")
    assert after["step"] == before["step"]


def test_run_directory_contents(tmp_path, digits_small):
    train_data, test_data = digits_small
    labels = partial_labels(train_data)
    cfg = tiny_config(samples_per_class=1)
    summary = train(cfg, tmp_path, train_data=train_data, labels=labels, test_data=test_data,
                    test_targets=test_data.targets, progress=False)
    assert summary["finished"] and 0.0 <= summary["test_accuracy_ema"] <= 1.0
    # the test split is classified with INFERENCE_DRAWS draws per level; the table's one draw beside it
    assert summary["test_posterior"] == {**summary["posterior"], "temperature": summary["temperature"],
                                         "draws": INFERENCE_DRAWS}
    assert 0.0 <= summary["test_accuracy_ema_one_draw"] <= 1.0
    saved = json.loads((tmp_path / "config.json").read_text())
    assert TrainConfig.from_dict(saved) == cfg
    assert (tmp_path / "samples.png").is_file() and (tmp_path / "labels.npz").is_file()
    assert (tmp_path / "curves.png").is_file()  # losses and the E-step table over kimg
    lines = [json.loads(l) for l in (tmp_path / "stats.jsonl").read_text().splitlines()]
    assert any("loss_gen" in l for l in lines) and any("refresh" in l for l in lines)


def test_vanilla_partial_pick_is_a_uniform_candidate():
    rows = torch.tensor([[0.0, 1, 1, 0, 1]] * 30000)
    u = torch.rand(30000, generator=torch.Generator().manual_seed(0))
    picks = vanilla_targets("partial", rows, u).argmax(1)
    counts = torch.bincount(picks, minlength=5).float() / 30000
    assert counts[[0, 3]].sum() == 0
    torch.testing.assert_close(counts[[1, 2, 4]], torch.full((3,), 1 / 3), atol=0.015, rtol=0)


def refresh_state(denoiser, labels, cfg, images):
    """A training state whose EMA model is `denoiser` (the loop's refresh reads only state.ema)."""
    transition = initial_transition(labels, cfg)
    state = new_state(cfg, images.shape[1:], labels.num_classes, initial_log_prior(labels), len(images), "cpu",
                      transition=transition, first_refresh_kimg=cfg.refresh_kimg(labels.kind))
    state.ema = denoiser
    tensors = label_tensors(labels, assumed_noise_rate=cfg.assumed_noise_rate, transition=transition)
    return state, tensors


def gaussian_classes(gaussian_denoiser, n_per_class=60, seed=0):
    """Images drawn from the analytic denoiser's class Gaussians, with their classes."""
    g = torch.Generator().manual_seed(seed)
    y = torch.arange(gaussian_denoiser.num_classes).repeat_interleave(n_per_class)
    x = gaussian_denoiser.means[y] + gaussian_denoiser.s * torch.randn((len(y), *gaussian_denoiser.image_shape),
                                                                       generator=g)
    return x, y.numpy()


def test_refresh_interval_doubles_once_the_table_stops_moving(gaussian_denoiser):
    """A fixed model gives the same table at every refresh: after the first, nothing moves, so
    the interval doubles each time up to the maximum, and the next refresh is scheduled by it."""
    images, y = gaussian_classes(gaussian_denoiser)
    labels = corrupt(y, num_classes=4, spec=CorruptionSpec(supervision="partial", q=0.3, seed=0))
    cfg = TrainConfig(table_refresh_kimg=1.0, table_refresh_max_kimg=4.0,
                      posterior=PosteriorConfig(schedule="interval", sigma_lo=0.1, sigma_hi=1.0, num_sigmas=3))
    state, tensors = refresh_state(gaussian_denoiser, labels, cfg, images)
    intervals, moved = [], []
    for _ in range(4):
        info = refresh_table(state, cfg, images, tensors, labels)
        intervals.append(state.refresh_interval_kimg)
        moved.append(info["labels_moved"])
    assert moved[0] > cfg.table_settle and moved[1:] == [0.0, 0.0, 0.0]
    assert intervals == [1.0, 2.0, 4.0, 4.0]
    assert state.next_refresh_nimg == 1000 * (1 + 1 + 2 + 4 + 4)


def test_the_settle_floor_is_what_two_noise_draws_of_one_model_disagree_on(gaussian_denoiser):
    """`mc_floor` draws the table's posterior twice on a sample of 512 rows and counts the labels
    that differ: within binomial error of what two other independent draws disagree on over all
    rows, for two class overlaps (the wider one moves several percent by noise alone)."""
    from wsl_diffusion.posterior import diffusion_posterior, log_posterior
    from wsl_diffusion.training.loop import mc_floor, restrict_posterior

    cfg = TrainConfig(posterior=PosteriorConfig(schedule="interval", sigma_lo=0.05, sigma_hi=1.0, num_sigmas=4))
    for denoiser in (gaussian_denoiser, type(gaussian_denoiser)(gaussian_denoiser.means, s=0.8)):
        images, y = gaussian_classes(denoiser, n_per_class=250)
        labels = noisy_gaussian_labels(y)
        state, tensors = refresh_state(denoiser, labels, cfg, images)
        refresh_table(state, cfg, images, tensors, labels)  # tau fitted to the model
        fit = torch.ones(len(images), dtype=torch.bool)
        floor = mc_floor(state, images, tensors["lik"], fit, None, torch.Generator().manual_seed(1), 512)
        tables = [restrict_posterior(log_posterior(diffusion_posterior(denoiser, images, state.posterior,
                                                                       generator=torch.Generator().manual_seed(s)).errors,
                                                   temperature=state.temperature, log_prior=state.log_prior).exp(),
                                     tensors["lik"]).argmax(1) for s in (2, 3)]
        reference = float((tables[0] != tables[1]).float().mean())
        se = np.sqrt(reference * (1 - reference) * (1 / 512 + 1 / len(images)))
        assert reference > 0.01 and abs(floor - reference) < 4 * se, (floor, reference)


def test_with_the_settle_floor_a_table_that_moves_only_by_noise_counts_as_settled(gaussian_denoiser):
    """With `table_settle` 0 a fixed model's table, which moves no label after the first refresh,
    never counts as settled (nothing moves fewer than 0); against the floor, which is 0 for this
    model, it settles at the second refresh, and the floor is logged."""
    images, y = gaussian_classes(gaussian_denoiser)
    labels = corrupt(y, num_classes=4, spec=CorruptionSpec(supervision="partial", q=0.3, seed=0))
    settled = {}
    for floor in (False, True):
        cfg = TrainConfig(table_settle=0.0, table_settle_floor=floor,
                          posterior=PosteriorConfig(schedule="interval", sigma_lo=0.1, sigma_hi=1.0, num_sigmas=3))
        state, tensors = refresh_state(gaussian_denoiser, labels, cfg, images)
        infos = [refresh_table(state, cfg, images, tensors, labels) for _ in range(3)]
        settled[floor] = [i["table_settled"] for i in infos]
        floors = [i.get("table_mc_floor") for i in infos]
        if floor:
            assert floors[1:] == [0.0, 0.0] and floors[0] < infos[0]["labels_moved"]
        else:
            assert floors == [None] * 3
    assert settled == {False: [False, False, False], True: [False, True, True]}


def test_the_t_estimate_recovers_the_noise_from_an_informative_model(gaussian_denoiser):
    """With an exact class-conditional model the E-step posteriors are near one-hot, and the
    M-step turns them into the noise process: the estimate lands near the true asymmetric T,
    starting from the symmetric guess, without ever reading the stored T."""
    images, y = gaussian_classes(gaussian_denoiser, n_per_class=400)
    true_t = np.array([[0.6, 0.4, 0, 0], [0, 1, 0, 0], [0, 0, 0.7, 0.3], [0, 0, 0, 1.0]])
    z = np.array([np.random.default_rng(i).choice(4, p=true_t[c]) for i, c in enumerate(y)])
    labels = ImpreciseLabels(matrix=np.eye(4, dtype=np.float32)[z], kind="noisy", observed=z)
    cfg = TrainConfig(posterior=PosteriorConfig(schedule="interval", sigma_lo=0.05, sigma_hi=1.0, num_sigmas=4),
                      transition_smoothing=0.0)
    state, tensors = refresh_state(gaussian_denoiser, labels, cfg, images)
    realised = empirical_transition(y, z, 4)  # what a perfect table would give (sampling noise aside)
    start = np.abs(state.transition.numpy() - realised).max()
    for _ in range(3):
        info = refresh_table(state, cfg, images, tensors, labels)
    err = np.abs(state.transition.numpy() - realised)
    assert err.max() < 0.03 < start, (err.max(), start)
    assert "transition_error_max" not in info  # the label set stores no T: nothing to compare with
    # the noise rate the estimate implies (its prior through T, label-free) is the share of wrong labels
    assert abs(info["estimated_noise_rate"] - (z != y).mean()) < 0.03
    np.testing.assert_allclose(tensors["lik"].numpy(), state.transition.numpy()[:, z].T.astype(np.float32), rtol=1e-6)



def test_the_posterior_m_step_counts_the_settled_table_once_and_recovers_the_noise(gaussian_denoiser):
    """`transition_mstep="posterior"` keeps EM until the table has settled (a young posterior is
    too flat to count), then sets T to one count of the table's posterior against the labels. On
    an exact model that count is the realised noise process, and the T goes into the labels'
    likelihood exactly as EM's does."""
    images, y = gaussian_classes(gaussian_denoiser, n_per_class=400)
    true_t = np.array([[0.6, 0.4, 0, 0], [0, 1, 0, 0], [0, 0, 0.7, 0.3], [0, 0, 0, 1.0]])
    z = np.array([np.random.default_rng(i).choice(4, p=true_t[c]) for i, c in enumerate(y)])
    labels = ImpreciseLabels(matrix=np.eye(4, dtype=np.float32)[z], kind="noisy", observed=z)
    cfg = TrainConfig(transition_mstep="posterior", transition_smoothing=0.0, table_unmix=False,
                      posterior=PosteriorConfig(schedule="interval", sigma_lo=0.05, sigma_hi=1.0, num_sigmas=4))
    state, tensors = refresh_state(gaussian_denoiser, labels, cfg, images)
    infos = []
    for _ in range(4):
        settled_before = state.table_settled
        infos.append(refresh_table(state, cfg, images, tensors, labels))
        assert infos[-1]["transition_from_posterior"] == settled_before
    assert [i["transition_from_posterior"] for i in infos] == [False, False, True, True]
    np.testing.assert_allclose(state.transition.numpy(), transition_m_step(state.table.double().numpy(), z,
                                                                           smoothing=0.0), atol=1e-12)
    assert np.abs(state.transition.numpy() - empirical_transition(y, z, 4)).max() < 0.03
    np.testing.assert_allclose(tensors["lik"].numpy(), state.transition.numpy()[:, z].T.astype(np.float32), rtol=1e-6)


def test_the_noisy_prior_follows_the_estimated_t_to_the_clean_class_frequencies(gaussian_denoiser):
    """Asymmetric noise moves labels into classes 1 and 3 (observed frequencies 0.15, 0.35, 0.175,
    0.325 of four equal classes). With `noisy_prior` "transition" the prior is re-solved through
    each estimated T and lands on the clean frequencies; "observed" keeps the noisy ones, which
    would tell the E-step and the classifier that classes 0 and 2 are rare."""
    images, y = gaussian_classes(gaussian_denoiser, n_per_class=400)
    true_t = np.array([[0.6, 0.4, 0, 0], [0, 1, 0, 0], [0, 0, 0.7, 0.3], [0, 0, 0, 1.0]])
    z = np.array([np.random.default_rng(i).choice(4, p=true_t[c]) for i, c in enumerate(y)])
    labels = ImpreciseLabels(matrix=np.eye(4, dtype=np.float32)[z], kind="noisy", observed=z)
    observed = np.bincount(z, minlength=4) / len(z)
    priors = {}
    for mode in ("transition", "observed"):
        cfg = TrainConfig(noisy_prior=mode, transition_smoothing=0.0, table_unmix=False,
                          posterior=PosteriorConfig(schedule="interval", sigma_lo=0.05, sigma_hi=1.0, num_sigmas=4))
        state, tensors = refresh_state(gaussian_denoiser, labels, cfg, images)
        for _ in range(3):
            refresh_table(state, cfg, images, tensors, labels)
        priors[mode] = state.log_prior.exp().numpy()
    np.testing.assert_allclose(priors["transition"], np.full(4, 0.25), atol=0.03)
    np.testing.assert_allclose(priors["observed"], observed, atol=1e-4)
    assert abs(observed - 0.25).max() > 0.09  # the noise's own bias, which the estimate removes


def test_unmixing_waits_for_a_settled_table_then_leaves_a_model_of_the_clean_classes_as_it_was(gaussian_denoiser):
    """`table_unmix` treats the network as a model of the labels it was trained on, which it is
    only once EM has reached its fixed point: the first refresh (from the flat table) moves labels,
    so it and the one after it do not unmix; the second moves none, so the third does. When that
    network already models the clean classes (the exact denoiser), its anchors are one-hot, the
    transition it inverts is near the identity, and the table's labels and T come out as without it."""
    images, y = gaussian_classes(gaussian_denoiser, n_per_class=150)
    true_t = np.array([[0.6, 0.4, 0, 0], [0, 1, 0, 0], [0, 0, 0.6, 0.4], [0, 0, 0, 1.0]])
    z = np.array([np.random.default_rng(i).choice(4, p=true_t[c]) for i, c in enumerate(y)])
    labels = ImpreciseLabels(matrix=np.eye(4, dtype=np.float32)[z], kind="noisy", observed=z)
    out = {}
    for unmix in (False, True):
        cfg = TrainConfig(table_unmix=unmix,
                          posterior=PosteriorConfig(schedule="interval", sigma_lo=0.05, sigma_hi=1.0, num_sigmas=4))
        state, tensors = refresh_state(gaussian_denoiser, labels, cfg, images)
        infos = [refresh_table(state, cfg, images, tensors, labels) for _ in range(3)]
        out[unmix] = ((state.table * tensors["lik"]).argmax(dim=1).numpy(), state.transition.clone(), infos[-1])
        assert [i["table_settled"] for i in infos] == [False, True, True]
        assert ["unmix_offdiag" in i for i in infos] == [False, False, unmix]
    assert out[True][2]["unmix_offdiag"] < 0.05
    assert (out[True][0] == out[False][0]).mean() > 0.98  # the labels the generator trains on
    assert (out[True][0] == y).mean() >= (out[False][0] == y).mean() > (z == y).mean()
    torch.testing.assert_close(out[True][1], out[False][1], atol=0.03, rtol=0)


def test_without_table_restrict_settled_the_settled_table_is_the_models_own_posterior(gaussian_denoiser):
    """`table_restrict_settled=False` drops p(z | y) from the E-step once the table has settled,
    and not before: every refresh up to the one that settles restricts as the default does, the
    ones after it leave the labels the generator trains on at the model's argmax whatever z says.
    With a fixed model nothing moves by the switch itself (a refresh compares its two tables
    restricted the same way)."""
    images, y = gaussian_classes(gaussian_denoiser, n_per_class=150)
    labels = noisy_gaussian_labels(y)
    cfg = TrainConfig(table_unmix=False, table_restrict_settled=False,
                      posterior=PosteriorConfig(schedule="interval", sigma_lo=0.05, sigma_hi=1.0, num_sigmas=4))
    state, tensors = refresh_state(gaussian_denoiser, labels, cfg, images)
    restricted, infos = [], []
    for _ in range(6):
        restricted.append(estep_restricts(cfg, state, "noisy"))
        infos.append(refresh_table(state, cfg, images, tensors, labels))
    settled = [i["table_settled"] for i in infos]
    assert False in settled and settled[-1]  # EM moved labels before it settled (T is re-estimated too)
    assert restricted == [True] * (settled.index(True) + 1) + [False] * (len(settled) - settled.index(True) - 1)
    assert infos[-1]["labels_moved"] == 0.0
    assert not estep_restricts(cfg, state, "noisy")
    moved_off_z = (state.table.argmax(1).numpy() != labels.observed).mean()
    assert moved_off_z > 0.2  # the model's own labels: z is not pulled back in (labels are 40% noisy)
    # the default keeps restricting, and the other kinds are never affected
    assert estep_restricts(cfg.replace(table_restrict_settled=True), state, "noisy")
    assert estep_restricts(cfg, state, "partial")


def test_disputed_rows_train_exactly_as_unconditional_rows_and_only_those(digits_small):
    """`disputed_uncond`: a row whose table label (restricted argmax) is not the model's own best
    class (unrestricted argmax) gets the loss of an unconditional row (no class input, no
    classification term); an agreeing row is untouched. So the option's loss on a batch equals the
    default's loss on the same batch with exactly the disputed rows dropped, and before the first
    table (whose flat prior names no class) it equals the default's loss as it is."""
    train_data, _ = digits_small
    labels = corrupt(train_data.targets, num_classes=10, spec=CorruptionSpec(supervision="noisy", rate=0.4, seed=0))
    images = to_model_space(train_data.images)
    tensors = dict(images=images, labels=labels, **label_tensors(labels, assumed_noise_rate=0.2))
    post = PosteriorConfig(schedule="interval", sigma_lo=0.4, sigma_hi=5.0, num_sigmas=2)
    base = TrainConfig(model="tiny", batch_size=32, posterior=post, label_dropout=0.0, lambda_cls=1.0)
    cfg = base.replace(disputed_uncond=True)
    state = new_state(base, images.shape[1:], 10, initial_log_prior(labels), len(images), "cpu")
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():  # fresh blocks start as the identity, which would hide the class input
        for p in state.net.parameters():
            p.add_(0.05 * torch.randn(p.shape, generator=g))
    batch = draw_batch(base, state, len(images), tuple(images.shape[1:]), 10)
    batch["sigma"] = torch.full_like(batch["sigma"], 1.0)  # inside the interval: the classification term is on

    def loss(config, drop=None):
        b = dict(batch, drop=batch["drop"] if drop is None else drop)
        with torch.no_grad():
            return step_loss(config, state, state.net, b, **tensors)

    torch.testing.assert_close(loss(cfg)[0], loss(base)[0], rtol=0, atol=0)  # no table yet: nothing disputed
    # A table whose best class is z + 1 (0.5) on even rows and z (0.6) on odd ones; p(z | y) = 0.8 / 0.022
    # keeps z as the table label everywhere, so exactly the even rows are disputed.
    z = torch.tensor(np.asarray(labels.observed))
    table = torch.full((len(z), 10), 0.4 / 8)
    rows = torch.arange(len(z))
    table[rows, z], table[rows, (z + 1) % 10] = 0.1, 0.5
    odd = rows % 2 == 1
    table[odd, z[odd]], table[odd, (z[odd] + 1) % 10] = 0.5, 0.1
    state.table, state.refreshes = table, 1
    disputed = batch["idx"] % 2 == 0
    assert 0 < int(disputed.sum()) < len(disputed)
    got, stats = loss(cfg)
    torch.testing.assert_close(got, loss(base, drop=disputed)[0], rtol=1e-6, atol=0)
    assert not torch.allclose(got, loss(base)[0])  # the option does change the loss
    assert stats["disputed"] == pytest.approx(float(disputed.float().mean()))
    assert "disputed" not in loss(base)[1]  # logged only with the option on


def test_training_never_reads_true_labels_or_the_stored_t_unless_asked(tmp_path, digits_small):
    """Two label sets with the same observed labels: one carries (wrong) true labels and a
    (wrong) stored T, the other neither. Default training must not tell them apart."""
    train_data, _ = digits_small
    honest = corrupt(train_data.targets, num_classes=10, spec=CorruptionSpec(supervision="noisy", rate=0.4, seed=0))
    bare = ImpreciseLabels(matrix=honest.matrix, kind="noisy", observed=honest.observed)
    poisoned = ImpreciseLabels(matrix=honest.matrix, kind="noisy", observed=honest.observed,
                               true_labels=np.roll(honest.true_labels, 7), transition_matrix=np.eye(10))
    cfg = tiny_config(supervision={"supervision": "noisy"})
    for name, labels in (("bare", bare), ("poisoned", poisoned)):
        train(cfg, tmp_path / name, train_data=train_data, labels=labels, progress=False)
    assert_same_run(tmp_path / "bare", tmp_path / "poisoned", "table", "transition")
    with pytest.raises(ValueError, match="stores no transition matrix"):
        train(cfg.replace(transition="oracle"), tmp_path / "oracle", train_data=train_data, labels=bare,
              progress=False)


def test_pu_training_never_reads_the_stored_class_prior_unless_asked(tmp_path, digits_small):
    """PU labels with the same labelled rows: one carries (wrong) true labels and a (wrong)
    stored class prior, the other neither. By default both runs estimate the prior from the
    images and are identical; "oracle" reads the stored prior and refuses a file without one; a
    given share is used as it is."""
    train_data, _ = digits_small
    honest = corrupt(train_data.targets, num_classes=10,
                     spec=CorruptionSpec(supervision="pu", positive_classes=(0, 2, 4, 6, 8), labelled_fraction=0.5,
                                         seed=0))
    bare = ImpreciseLabels(matrix=honest.matrix, kind="pu", observed=honest.observed)
    poisoned = ImpreciseLabels(matrix=honest.matrix, kind="pu", observed=honest.observed,
                               true_labels=1 - honest.true_labels, class_prior=np.array([0.95, 0.05]))
    cfg = tiny_config(supervision={"supervision": "pu"})
    for name, labels, config in (("bare", bare, cfg), ("poisoned", poisoned, cfg),
                                 ("oracle", poisoned, cfg.replace(pu_prior="oracle")),
                                 ("given", bare, cfg.replace(pu_prior=0.3))):
        train(config, tmp_path / name, train_data=train_data, labels=labels, progress=False)
    assert_same_run(tmp_path / "bare", tmp_path / "poisoned", "table", "log_prior")
    estimated = float(weights_of(tmp_path / "bare")["log_prior"].exp()[1])
    assert abs(estimated - honest.class_prior[1]) < 0.1  # 200 images: a rough estimate, but not the stored 0.05
    assert torch.allclose(weights_of(tmp_path / "oracle")["log_prior"].exp(), torch.tensor([0.95, 0.05]))
    assert torch.allclose(weights_of(tmp_path / "given")["log_prior"].exp(), torch.tensor([0.7, 0.3]))
    with pytest.raises(ValueError, match="stores no class prior"):
        train(cfg.replace(pu_prior="oracle"), tmp_path / "refused", train_data=train_data, labels=bare,
              progress=False)


def test_a_second_trainer_on_the_same_directory_is_refused(tmp_path, digits_small):
    """One run per directory: while another process holds the run's lock, train() refuses with
    the holder's PID and touches nothing; once it is gone, the directory is free again."""
    import subprocess
    import sys

    train_data, _ = digits_small
    labels = partial_labels(train_data)
    holder = subprocess.Popen(
        [sys.executable, "-c",
         "import sys, time; from wsl_diffusion.run import run_lock\n"
         "with run_lock(sys.argv[1]):\n    print('locked', flush=True); time.sleep(60)", str(tmp_path)],
        stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(ValueError, match=rf"in use by another training process \(PID {holder.pid}\)"):
            train(tiny_config(), tmp_path, train_data=train_data, labels=labels, progress=False)
        assert not (tmp_path / "checkpoint.pt").exists() and not (tmp_path / "config.json").exists()
    finally:
        holder.kill()
        holder.wait()
    train(tiny_config(), tmp_path, train_data=train_data, labels=labels, progress=False)  # the lock died with it
    assert load_checkpoint(tmp_path / "checkpoint.pt")["step"] == 6


def noisy_gaussian_labels(y, rate=0.4, seed=0):
    return corrupt(y, num_classes=4, spec=CorruptionSpec(supervision="noisy", rate=rate, seed=seed))


def test_the_safeguard_keeps_every_label_while_the_model_is_uninformative(gaussian_denoiser):
    """An untrained network explains the held-out noisy labels no better than the prior: the
    test does not trust it, the table is the prior, so the restricted table picks exactly the
    observed labels, and T stays where it started."""
    from wsl_diffusion.run import build_denoiser
    from wsl_diffusion.training.loop import holdout_split

    images, y = gaussian_classes(gaussian_denoiser, n_per_class=100)
    labels = noisy_gaussian_labels(y)
    cfg = TrainConfig(model="tiny", holdout=0.25,
                      posterior=PosteriorConfig(schedule="interval", sigma_lo=0.1, sigma_hi=1.0, num_sigmas=3))
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        untrained = build_denoiser(cfg, images.shape[1:], 4).eval()
    state, tensors = refresh_state(untrained, labels, cfg, images)
    t0 = state.transition.clone()
    _, held = holdout_split(cfg, "noisy", len(images))
    info = refresh_table(state, cfg, images, tensors, labels, held=held)
    assert info["model_trusted"] is False
    kept = (state.table * tensors["lik"]).argmax(dim=1).numpy()
    assert (kept == labels.observed).all()
    assert torch.equal(state.transition, t0)


def test_the_safeguard_trusts_a_model_that_classifies(gaussian_denoiser):
    """The exact class-conditional model explains the held-out labels far better than the prior:
    trusted, and the table moves labels towards the truth (more true classes than the labels)."""
    from wsl_diffusion.training.loop import holdout_split

    images, y = gaussian_classes(gaussian_denoiser, n_per_class=100)
    labels = noisy_gaussian_labels(y)
    cfg = TrainConfig(holdout=0.25, posterior=PosteriorConfig(schedule="interval", sigma_lo=0.1, sigma_hi=1.0,
                                                               num_sigmas=3))
    state, tensors = refresh_state(gaussian_denoiser, labels, cfg, images)
    _, held = holdout_split(cfg, "noisy", len(images))
    info = refresh_table(state, cfg, images, tensors, labels, held=held)
    assert info["model_trusted"] is True and info["heldout_gain"] > 2 * info["heldout_gain_stderr"]
    table_labels = (state.table * tensors["lik"]).argmax(dim=1).numpy()
    assert (table_labels == y).mean() > (labels.observed == y).mean() + 0.2


def test_held_out_rows_are_never_drawn_into_a_batch():
    from wsl_diffusion.training.loop import draw_indices, holdout_split

    cfg = TrainConfig(holdout=0.2)
    rows, held = holdout_split(cfg, "noisy", 500)
    assert len(held) == 100 and len(set(rows.tolist()) | set(held.tolist())) == 500
    drawn = draw_indices(20000, 500, torch.Generator().manual_seed(0), rows=rows)
    assert not set(drawn.tolist()) & set(held.tolist())
    assert holdout_split(cfg, "partial", 500)[1].numel() == 0  # only noisy labels hold rows out
    assert torch.equal(holdout_split(cfg, "noisy", 500)[1], held)  # the same rows on resume


def test_resume_after_a_crash_logs_every_step_once_and_removes_stale_temporaries(tmp_path, digits_small):
    """Crash after step 5 (last checkpoint at step 4) with a half-written checkpoint left behind:
    the resume removes the temporary file and cuts stats.jsonl back to step 4, so each step and
    each refresh appears exactly once when the run is done."""
    train_data, _ = digits_small
    labels = partial_labels(train_data)
    cfg = tiny_config()
    train(cfg, tmp_path, train_data=train_data, labels=labels, progress=False, max_steps=5)
    stale = tmp_path / ".checkpoint.pt.abc123.tmp"
    stale.write_bytes(b"half a checkpoint")
    train(cfg, tmp_path, train_data=train_data, labels=labels, progress=False, resume=True)
    assert not stale.exists()
    records = [json.loads(line) for line in (tmp_path / "stats.jsonl").read_text().splitlines()]
    steps = [r["step"] for r in records if "step" in r]
    refreshes = [r["refresh"] for r in records if "refresh" in r]
    assert steps == list(range(1, 7))
    assert refreshes == list(range(1, len(refreshes) + 1))


def test_a_coarse_table_gives_pruned_classes_their_all_class_posterior(gaussian_denoiser):
    """table_pruned="coarse": rows sum to 1, no class is exactly 0, and within the kept classes
    the ratios are the fine posterior's (pruning only decides where the fine levels look)."""
    images, y = gaussian_classes(gaussian_denoiser, n_per_class=30)
    labels = noisy_gaussian_labels(y)
    # high noise levels only: the classes overlap there, so no probability underflows to 0
    post = PosteriorConfig(schedule="interval", sigma_lo=2.0, sigma_hi=4.0, num_sigmas=3, keep_classes=2,
                           prune_sigmas=1)
    tables = {}
    for mode in ("zero", "coarse"):
        cfg = TrainConfig(posterior=post, table_pruned=mode, transition="assumed", calibrate_table=False)
        state, tensors = refresh_state(gaussian_denoiser, labels, cfg, images)
        refresh_table(state, cfg, images, tensors, labels)
        tables[mode] = state.table
    zero, coarse = tables["zero"], tables["coarse"]
    kept = zero > 0
    assert (kept.sum(dim=1) == 2).all()
    torch.testing.assert_close(coarse.sum(dim=1), torch.ones(len(coarse)))
    assert (coarse > 0).all()
    ratio = (coarse * kept) / (coarse * kept).sum(dim=1, keepdim=True)
    torch.testing.assert_close(ratio, zero, atol=1e-5, rtol=1e-4)
