"""find-issues: the labels a DMIS table doubts, ranked; flipped labels must come first."""
import json

import numpy as np
import pytest
import torch
from sklearn.metrics import roc_auc_score

from label_models.corruption import CorruptionSpec, corrupt
from wsl_diffusion.config import TrainConfig
from wsl_diffusion.eval.label_issues import find_label_issues, rank_label_issues
from wsl_diffusion.posterior import PosteriorConfig
from wsl_diffusion.training.loop import initial_log_prior, initial_transition, label_tensors, new_state, refresh_table


def test_flipped_labels_rank_above_clean_ones(gaussian_denoiser):
    """The E-step table of an exact class-conditional model, with 40% symmetric flips: the
    ranking's AUC for "this label is wrong" is near 1, and most flagged labels are flips whose
    suggested label is the true one."""
    g = torch.Generator().manual_seed(0)
    y = torch.arange(4).repeat_interleave(100)
    images = gaussian_denoiser.means[y] + gaussian_denoiser.s * torch.randn((len(y), 1, 4, 4), generator=g)
    labels = corrupt(y.numpy(), num_classes=4, spec=CorruptionSpec(supervision="noisy", rate=0.4, seed=0))
    cfg = TrainConfig(posterior=PosteriorConfig(schedule="interval", sigma_lo=0.1, sigma_hi=1.0, num_sigmas=3))
    transition = initial_transition(labels, cfg)
    state = new_state(cfg, images.shape[1:], 4, initial_log_prior(labels), len(images), "cpu", transition=transition)
    state.ema = gaussian_denoiser
    tensors = label_tensors(labels, assumed_noise_rate=cfg.assumed_noise_rate, transition=transition)
    refresh_table(state, cfg, images, tensors, labels)
    issues = rank_label_issues(state.table.double().numpy(), tensors["lik"].double().numpy(), labels.observed,
                               ("a", "b", "c", "d"))
    wrong = (labels.observed != labels.true_labels)[issues.index]
    assert roc_auc_score(wrong, issues.score) > 0.9
    assert wrong[issues.flagged].mean() > 0.9
    assert (issues.suggested == labels.true_labels[issues.index])[issues.flagged].mean() > 0.9
    assert (np.diff(issues.score) <= 0).all()  # most doubtful first


def test_runs_without_observed_labels_or_a_table_are_refused(tiny_run):
    with pytest.raises(ValueError, match="needs observed labels"):
        find_label_issues(tiny_run)  # the shared tiny run has partial labels


def test_find_issues_cli_writes_the_ranking_and_a_picture(tmp_path, digits_small, capsys):
    from cli.main import main
    from wsl_diffusion.training.loop import train

    train_data, _ = digits_small
    labels = corrupt(train_data.targets, num_classes=10, spec=CorruptionSpec(supervision="noisy", rate=0.3, seed=0))
    cfg = TrainConfig(model="tiny", batch_size=32, total_kimg=4 * 32 / 1000, table_refresh_kimg=2 * 32 / 1000,
                      samples_per_class=0, supervision={"supervision": "noisy", "rate": 0.3},
                      posterior=PosteriorConfig(schedule="interval", sigma_lo=0.4, sigma_hi=5.0, num_sigmas=2))
    run_dir = tmp_path / "run"
    train(cfg, run_dir, train_data=train_data, labels=labels, progress=False)
    assert main(["find-issues", str(run_dir), "--top", "9", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    rows = (run_dir / "label_issues.csv").read_text().splitlines()
    assert len(rows) == 1 + labels.num_samples and out["labelled"] == labels.num_samples
    assert len(out["top"]) == 9 and (run_dir / "label_issues.png").is_file()
