import json

import numpy as np
import pytest
import torch

from label_models.corruption import CorruptionSpec, corrupt
from wsl_diffusion.run import load_checkpoint
from wsl_diffusion.config import TrainConfig
from wsl_diffusion.posterior import PosteriorConfig
from wsl_diffusion.training.loop import TrainingDiverged, train, vanilla_targets


def tiny_config(**changes) -> TrainConfig:
    """A 6-step run on 200 images: refresh every 2 steps, checkpoint every 2 steps."""
    base = dict(model="tiny", batch_size=16, total_kimg=6 * 16 / 1000, table_refresh_kimg=2 * 16 / 1000,
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


@pytest.mark.parametrize("method,form", [("dmis", "em"), ("dmis", "wdsm"), ("vanilla", "em")])
def test_resume_after_crash_is_bit_exact(tmp_path, digits_small, method, form):
    """Crash after step 3 (last checkpoint at step 2), resume: same weights, EMA, table, optimizer."""
    train_data, _ = digits_small
    labels = partial_labels(train_data)
    cfg = tiny_config(method=method, gen_form=form)
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
    assert a["refreshes"] == b["refreshes"] == (2 if method == "dmis" else 0)
    if method == "dmis":
        assert not torch.allclose(a["table"], torch.full_like(a["table"], 0.1))  # the table was refreshed


def test_resume_refuses_changed_config(tmp_path, digits_small):
    train_data, _ = digits_small
    labels = partial_labels(train_data)
    cfg = tiny_config()
    train(cfg, tmp_path, train_data=train_data, labels=labels, progress=False, max_steps=2)
    with pytest.raises(ValueError, match="config differs"):
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
    with pytest.raises(TrainingDiverged, match="last good checkpoint"):
        train(bad, tmp_path / "bad", train_data=train_data, labels=labels, progress=False)
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
    saved = json.loads((tmp_path / "config.json").read_text())
    assert TrainConfig.from_dict(saved) == cfg
    assert (tmp_path / "samples.png").is_file() and (tmp_path / "labels.npz").is_file()
    lines = [json.loads(l) for l in (tmp_path / "stats.jsonl").read_text().splitlines()]
    assert any("loss_gen" in l for l in lines) and any("refresh" in l for l in lines)


def test_vanilla_partial_pick_is_a_uniform_candidate():
    rows = torch.tensor([[0.0, 1, 1, 0, 1]] * 30000)
    u = torch.rand(30000, generator=torch.Generator().manual_seed(0))
    picks = vanilla_targets("partial", rows, u).argmax(1)
    counts = torch.bincount(picks, minlength=5).float() / 30000
    assert counts[[0, 3]].sum() == 0
    torch.testing.assert_close(counts[[1, 2, 4]], torch.full((3,), 1 / 3), atol=0.015, rtol=0)
