"""A finished run's validation rows scored again, row by row, for paired comparisons of runs."""
from __future__ import annotations

from pathlib import Path

import torch

from wsl_diffusion.data.datasets import to_model_space
from wsl_diffusion.run import CHECKPOINT_NAME, load_checkpoint, load_run, run_label_likelihood
from wsl_diffusion.training.loop import score_validation, validation_split


def run_validation(run_dir: str | Path) -> dict:
    """The run's `validation_scores` with per-row values (row_log_lik, row_agreement), computed
    exactly as at the end of its training (same rows, same noise): the summary's numbers plus
    the rows. Raises ValueError for a run trained without a validation split."""
    run = load_run(run_dir)
    if run.config.validation == 0:
        raise ValueError(f"{run_dir} was trained without a validation split; train with --validation SHARE")
    ckpt = load_checkpoint(Path(run_dir) / CHECKPOINT_NAME)
    train, _ = run.splits()
    lik = torch.as_tensor(run_label_likelihood(ckpt, run.labels, run.config), dtype=torch.float32)
    return score_validation(run.net, run.posterior, temperature=run.temperature, log_prior=run.log_prior,
                            images=to_model_space(train.images), lik=lik, labels=run.labels,
                            validation=validation_split(run.config, run.labels, len(train)), seed=run.config.seed,
                            per_row=True)
