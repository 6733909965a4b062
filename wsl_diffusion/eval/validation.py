"""The validation split (`TrainConfig.validation`): which training rows it holds out, how a model
is scored on their imprecise labels (at the end of training, and again from a run directory, row
by row, for paired comparisons of runs)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from wsl_diffusion.config import TrainConfig
from wsl_diffusion.data.datasets import to_model_space
from wsl_diffusion.posterior import PosteriorConfig, diffusion_posterior, validation_scores
from wsl_diffusion.run import CHECKPOINT_NAME, load_checkpoint, load_run, run_label_likelihood, shared_label_likelihood


def validation_split(config: TrainConfig, labels, n_train: int) -> torch.Tensor:
    """The validation rows (`config.validation`), sorted: the same share of the labelled and of
    the unlabelled rows, so a semi-supervised or PU run keeps its labelled share on both sides.
    Which rows are drawn does not depend on what their labels say. A fixed draw from the run's
    seed, so a resumed run and every variant trained with the same seed hold out the same images."""
    if config.validation == 0:
        return torch.zeros(0, dtype=torch.long)
    labelled = np.asarray(labels.is_labelled, dtype=bool)
    g = torch.Generator().manual_seed(config.seed * 1_000_003 + 611_953)
    picked = []
    for stratum in (labelled, ~labelled):
        members = torch.as_tensor(np.flatnonzero(stratum))
        take = round(config.validation * len(members))
        picked.append(members[torch.randperm(len(members), generator=g)[:take]])
    return torch.cat(picked).sort().values


def label_rows(n_train: int, validation: torch.Tensor | None) -> torch.Tensor:
    """(n_train,) bool: True for the rows whose labels the run may read (all but `validation`)."""
    mask = torch.ones(n_train, dtype=torch.bool)
    if validation is not None and len(validation):
        mask[validation.cpu()] = False
    return mask


@torch.no_grad()
def score_validation(net, posterior: PosteriorConfig, *, temperature: float, log_prior: torch.Tensor,
                     images: torch.Tensor, lik: torch.Tensor, labels, validation: torch.Tensor, seed: int,
                     per_row: bool = False, chunk: int = 512, shared_lik: np.ndarray | None = None) -> dict:
    """`validation_scores` of a model on the validation rows, every class scored on the run's
    own levels (no class pruning: a pruned class would score a label as impossible). Seeded by
    the run's seed, so scoring a finished run again gives the same numbers.

    shared_lik: (N, K) a likelihood that does not depend on the run (`run.shared_label_likelihood`:
    noisy labels under the label model's symmetric T); its scores are added with the suffix
    `_shared` (log_lik_shared, agreement_shared, and per row row_log_lik_shared, ...)."""
    cfg = posterior.replace(keep_classes=None)
    gen = torch.Generator().manual_seed(seed * 1_000_003 + 424_243)
    val = validation.to(images.device)
    errors = torch.cat([diffusion_posterior(net, images[val[i:i + chunk]], cfg, generator=gen).errors
                        for i in range(0, len(val), chunk)])
    out = validation_scores(errors, lik[val], temperature=temperature, log_prior=log_prior, per_row=per_row)
    if shared_lik is not None:
        shared_lik = torch.as_tensor(shared_lik, dtype=lik.dtype, device=lik.device)
        shared = validation_scores(errors, shared_lik[val], temperature=temperature,
                                   log_prior=log_prior, per_row=per_row)
        out.update({f"{k}_shared": v for k, v in shared.items() if k != "rows"})
    return out


def run_validation(run_dir: str | Path) -> dict:
    """The run's `validation_scores` with per-row values (row_log_lik, row_agreement, and for noisy
    labels the same under the shared T, row_log_lik_shared, ...), computed exactly as at the end
    of its training (same rows, same noise): the summary's numbers plus the rows. Raises
    ValueError for a run trained without a validation split."""
    run = load_run(run_dir)
    if run.config.validation == 0:
        raise ValueError(f"{run_dir} was trained without a validation split; train with --validation SHARE")
    ckpt = load_checkpoint(Path(run_dir) / CHECKPOINT_NAME)
    train, _ = run.splits()
    lik = torch.as_tensor(run_label_likelihood(ckpt, run.labels, run.config), dtype=torch.float32)
    return score_validation(run.net, run.posterior, temperature=run.temperature, log_prior=run.log_prior,
                            images=to_model_space(train.images), lik=lik, labels=run.labels,
                            validation=validation_split(run.config, run.labels, len(train)), seed=run.config.seed,
                            per_row=True, shared_lik=shared_label_likelihood(run.labels, run.config))
