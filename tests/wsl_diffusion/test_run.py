"""A run directory read back: config, model, labels, aligned splits; execution is not identity."""
import json

import numpy as np
import pytest
import torch

from label_models import CorruptionSpec, ImpreciseLabels, corrupt
from label_models.io import load_labels
from wsl_diffusion.config import Execution, TrainConfig
from wsl_diffusion.run import (CONFIG_NAME, LABELS_NAME, aligned_splits, load_checkpoint, load_config, load_model,
                               load_run, make_labels)
from wsl_diffusion.training.loop import train


def test_aligned_splits_accept_a_verified_prefix_and_refuse_a_mismatch(tiny_run, digits_small):
    _, _, config = load_model(tiny_run)
    labels = load_labels(tiny_run / LABELS_NAME)
    train_split, test = aligned_splits(config, labels)  # the fixture trained on a verified prefix
    assert np.array_equal(train_split.images, digits_small[0].images) and len(test) == 450
    shuffled = ImpreciseLabels(matrix=labels.matrix, kind="partial", true_labels=labels.true_labels[::-1].copy())
    with pytest.raises(ValueError, match="cannot align"):
        aligned_splits(config, shuffled)


def test_load_run_gives_what_training_saved(tiny_run):
    run = load_run(tiny_run)
    ckpt = load_checkpoint(tiny_run / "checkpoint.pt")
    assert run.config == load_config(tiny_run) and run.labels.kind == "partial"
    assert torch.equal(run.log_prior, ckpt["log_prior"]) and run.temperature == ckpt["temperature"]
    assert not any(p.requires_grad for p in run.net.parameters()) and not run.net.training
    for name, value in run.net.state_dict().items():
        assert torch.equal(value, ckpt["ema"][name])  # the EMA weights, not the raw ones
    test, targets = run.test_split()
    assert len(test) == len(targets) == 450


def test_make_labels_reproduces_the_corruption_of_the_config(digits_small):
    train_split, _ = digits_small
    spec = CorruptionSpec(supervision="noisy", rate=0.4, seed=3)
    config = TrainConfig(supervision=spec.to_dict())
    a = make_labels(config, train_split)
    b = corrupt(train_split.targets, num_classes=10, spec=spec)
    assert np.array_equal(a.observed, b.observed)
    with pytest.raises(ValueError, match="`labels_file` or `supervision`"):
        make_labels(TrainConfig(), train_split)


def test_execution_settings_are_not_saved_and_may_change_on_resume(tmp_path, digits_small):
    train_split, _ = digits_small
    labels = corrupt(train_split.targets, num_classes=10, spec=CorruptionSpec(supervision="partial", q=0.3))
    cfg = TrainConfig(model="tiny", batch_size=32, total_kimg=4 * 32 / 1000, samples_per_class=0,
                      table_refresh_kimg=2 * 32 / 1000, checkpoint_every_kimg=2 * 32 / 1000)
    train(cfg, tmp_path, train_data=train_split, labels=labels, progress=False, max_steps=3)
    saved = json.loads((tmp_path / CONFIG_NAME).read_text())
    assert not {"device", "precision", "channels_last", "compile"} & set(saved)
    train(cfg, tmp_path, train_data=train_split, labels=labels, progress=False, resume=True,
          execution=Execution(device="cpu", channels_last=True))
    assert load_checkpoint(tmp_path / "checkpoint.pt")["step"] == 4


def test_configs_saved_with_execution_settings_still_load():
    legacy = {**TrainConfig().to_dict(), "device": "cuda", "precision": "bf16", "channels_last": True,
              "compile": False}
    assert TrainConfig.from_dict(legacy) == TrainConfig()
    with pytest.raises(ValueError, match="unknown keys"):
        TrainConfig.from_dict({**TrainConfig().to_dict(), "not_a_field": 1})
    # saved before the noisy-label prior went through T: resumed with the prior it trained with
    before_prior = {k: v for k, v in TrainConfig().to_dict().items() if k != "noisy_prior"}
    assert TrainConfig.from_dict(before_prior) == TrainConfig(noisy_prior="observed")
    # and before the T M-step had a choice: resumed with Dawid-Skene EM, whatever the default becomes
    before_mstep = {k: v for k, v in TrainConfig(transition_mstep="posterior").to_dict().items()
                    if k != "transition_mstep"}
    assert TrainConfig.from_dict(before_mstep).transition_mstep == "em"
    with pytest.raises(ValueError, match="transition_mstep"):
        TrainConfig(transition_mstep="twice")
    with pytest.raises(ValueError, match="`precision`"):
        Execution(precision="fp8")


@pytest.mark.parametrize("changes,needle", [
    ({"lr": float("nan")}, "`lr` must be finite"),
    ({"lambda_cls": float("inf")}, "`lambda_cls` must be finite"),
    ({"total_kimg": "12"}, "`total_kimg` must be a number"),
    ({"subset": True}, "`subset` must be a number"),
    ({"ema_halflife_kimg": -1.0}, "ema_halflife_kimg"),
    ({"samples_per_class": -1}, "samples_per_class"),
])
def test_configs_reject_non_finite_and_out_of_range_numbers(changes, needle):
    with pytest.raises(ValueError, match=needle):
        TrainConfig(**changes)


def test_every_named_choice_rejects_a_name_outside_it_and_names_the_field():
    from wsl_diffusion.config import CHOICE_FIELDS

    for name, choices in CHOICE_FIELDS.items():
        assert getattr(TrainConfig(), name) in choices  # the default is one of the choices
        with pytest.raises(ValueError, match=f"unknown `{name}` 'bogus'; choose one of {choices[0]}"):
            TrainConfig(**{name: "bogus"})


def test_posterior_config_rejects_nan():
    from wsl_diffusion.posterior import PosteriorConfig

    with pytest.raises(ValueError, match="`temperature` must be finite"):
        PosteriorConfig(temperature=float("nan"))


@pytest.mark.parametrize("device,needle", [("bogus", "unknown `device`"), ("cuda:99", "cuda")])
def test_execution_rejects_devices_that_are_not_there(device, needle):
    if device.startswith("cuda") and torch.cuda.device_count() > 99:
        pytest.skip("a machine with 100 GPUs")
    with pytest.raises(ValueError, match=needle):
        Execution(device=device)
