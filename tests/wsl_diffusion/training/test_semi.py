"""Semi-supervised training: the labelled over-sampler and the cold start of unlabelled images."""
import numpy as np
import pytest
import torch

from label_models.corruption import CorruptionSpec, corrupt
from wsl_diffusion.config import TrainConfig
from wsl_diffusion.data.datasets import to_model_space
from wsl_diffusion.posterior import PosteriorConfig
from wsl_diffusion.training.loop import (draw_batch, draw_indices, initial_log_prior, label_tensors, labelled_pools,
                                    new_state, step_loss)


def semi_labels(targets, fraction, seed=0):
    return corrupt(targets, num_classes=10, spec=CorruptionSpec(supervision="semi", labelled_fraction=fraction,
                                                                 seed=seed))


def test_labelled_share_of_batches_matches_the_setting():
    targets = np.repeat(np.arange(10), 100)
    labels = semi_labels(targets, 0.1)
    labelled = np.asarray(labels.is_labelled, dtype=bool)
    pools = labelled_pools(labels, TrainConfig(labelled_share=0.5))
    assert pools is not None and set(pools[0].tolist()) == set(np.flatnonzero(labelled).tolist())

    g = torch.Generator().manual_seed(0)
    n_draws = 400 * 128
    idx = torch.cat([draw_indices(128, len(targets), g, share=0.5, pools=pools) for _ in range(400)]).numpy()
    share = labelled[idx].mean()
    assert abs(share - 0.5) < 4 * np.sqrt(0.25 / n_draws)  # binomial, 4 sigma
    # within the labelled pool every example is equally likely: counts ~ Poisson(mean)
    counts = np.bincount(idx[labelled[idx]], minlength=len(targets))[labelled]
    assert abs(counts.mean() - n_draws * 0.5 / labelled.sum()) < 1e-9 + 4 * np.sqrt(counts.mean() / len(counts))
    assert counts.min() > 0


@pytest.mark.parametrize("share,fraction,kind", [(0.0, 0.1, "semi"), (0.5, 0.6, "semi"), (0.5, 0.1, "noisy")])
def test_uniform_draws_when_oversampling_does_not_apply(share, fraction, kind):
    targets = np.repeat(np.arange(10), 20)
    labels = (semi_labels(targets, fraction) if kind == "semi"
              else corrupt(targets, num_classes=10, spec=CorruptionSpec(supervision="noisy", rate=0.2)))
    assert labelled_pools(labels, TrainConfig(labelled_share=share)) is None


def test_first_refresh_interval_defaults_to_8_kimg_and_honours_an_explicit_value():
    assert TrainConfig().refresh_kimg("semi") == TrainConfig().refresh_kimg("noisy") == 8.0
    assert TrainConfig(table_refresh_kimg=16.0).refresh_kimg("semi") == 16.0
    with pytest.raises(ValueError, match="`labelled_share`"):
        TrainConfig(labelled_share=1.0)


def test_unlabelled_images_train_unconditionally_before_the_first_table(digits_small):
    """Before any refresh the table is flat, so DMIS must not pick arbitrary classes for unlabelled
    images: its loss on them equals the vanilla (unconditional) loss on the same batch."""
    train_data, _ = digits_small
    labels = semi_labels(train_data.targets, 0.1)
    images = to_model_space(train_data.images)
    tensors = dict(images=images, labels=labels, **label_tensors(labels, assumed_noise_rate=0.2))
    post = PosteriorConfig(schedule="interval", sigma_lo=0.4, sigma_hi=5.0, num_sigmas=2)
    cfgs = {m: TrainConfig(model="tiny", batch_size=32, method=m, posterior=post, label_dropout=0.0,
                           lambda_cls=0.0)
            for m in ("dmis", "vanilla")}
    states = {m: new_state(cfg, images.shape[1:], 10, initial_log_prior(labels), len(images), "cpu")
              for m, cfg in cfgs.items()}
    # Fresh blocks start as the identity, which would hide the class input; perturb the weights so
    # the class vector matters, as in a trained net, and give both methods the same ones.
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for p in states["dmis"].net.parameters():
            p.add_(0.05 * torch.randn(p.shape, generator=g))
    states["vanilla"].net.load_state_dict(states["dmis"].net.state_dict())
    batch = draw_batch(cfgs["dmis"], states["dmis"], len(images), tuple(images.shape[1:]), 10)
    unlabelled = np.flatnonzero(~np.asarray(labels.is_labelled, dtype=bool))
    batch["idx"] = torch.as_tensor(unlabelled[:32])
    with torch.no_grad():
        losses = {m: step_loss(cfgs[m], states[m], states[m].net, batch, **tensors)[0] for m in cfgs}
    assert torch.allclose(losses["dmis"], losses["vanilla"], rtol=1e-5)

    # after a refresh the same images are trained on their (now informative) posterior classes
    states["dmis"].refreshes = 1
    states["dmis"].table = torch.eye(10)[torch.as_tensor(train_data.targets)]
    with torch.no_grad():
        conditional = step_loss(cfgs["dmis"], states["dmis"], states["dmis"].net, batch, **tensors)[0]
    assert not torch.allclose(conditional, losses["vanilla"], rtol=1e-5)
