"""The validation split (`TrainConfig.validation`): which training rows it holds out, how a model
is scored on their imprecise labels (at the end of training, and again from a run directory, row
by row, for paired comparisons of runs)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from wsl_diffusion.config import TrainConfig
from wsl_diffusion.data.datasets import to_model_space
from label_models.transition import estimate_transition_em, symmetric_transition
from label_models.agreement import first_stage_labels, pinned_validation_rows
from label_models.likelihood import label_likelihood
from wsl_diffusion.posterior import PosteriorConfig, diffusion_posterior, fit_temperature, log_posterior, validation_scores
from wsl_diffusion.run import CHECKPOINT_NAME, load_checkpoint, load_run, run_label_likelihood, shared_label_likelihood


def validation_split(config: TrainConfig, labels, n_train: int) -> torch.Tensor:
    """The validation rows (`config.validation`), sorted: the same share of the labelled and of
    the unlabelled rows, so a semi-supervised or PU run keeps its labelled share on both sides.
    Which rows are drawn does not depend on what their labels say. A fixed draw from the run's
    seed, so a resumed run and every variant trained with the same seed hold out the same images.
    A second stage's label file (`wsl-diff refine`) pins its first stage's rows, which it then
    holds out, so the two stages are scored on the same images."""
    if config.validation == 0:
        return torch.zeros(0, dtype=torch.long)
    pinned = pinned_validation_rows(labels)
    if pinned is not None and len(pinned):
        return torch.as_tensor(pinned)
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


def scoring_labels(labels, lik: torch.Tensor, config: TrainConfig):
    """(labels, lik (N, K) like `lik`, shared_lik or None) that a run's validation rows are
    scored against: its own labels and likelihood, or, for a second stage (`wsl-diff refine`), its
    first stage's noisy labels under the first stage's T, so that both stages' models are scored
    against the same labels. shared_lik: `run.shared_label_likelihood` of those labels."""
    first = first_stage_labels(labels)
    if first is None:
        return labels, lik, shared_label_likelihood(labels, config)
    noisy, transition = first
    own = label_likelihood(noisy, assumed_noise_rate=config.assumed_noise_rate, transition_matrix=transition)
    return noisy, torch.as_tensor(own, dtype=lik.dtype, device=lik.device), shared_label_likelihood(noisy, config)


HELDOUT_T_FOLDS = 5  # folds of the validation rows for the held-out-T score
HELDOUT_T_ROUNDS = 5  # alternations of tau and T when fitting them on the other folds


def fit_tau_and_transition(errors: torch.Tensor, observed: np.ndarray, *, log_prior: torch.Tensor,
                           init: np.ndarray, smoothing: float = 1.0) -> tuple[float, np.ndarray]:
    """(tau, T) that jointly explain noisy labels `observed` (N,) through a model's class errors
    (N, K) on rows it never trained on: tau by `fit_temperature` under the current T, then T by
    Dawid-Skene EM (`estimate_transition_em`) under the posterior at that tau, HELDOUT_T_ROUNDS
    times from `init`. Neither the run's estimated T nor an assumed one survives: T is whatever
    linear map best turns this model's posterior into the labels."""
    t = np.asarray(init, dtype=np.float64)
    tau = float("nan")
    for _ in range(HELDOUT_T_ROUNDS):
        lik = torch.as_tensor(t[:, observed].T)  # (N, K): p(z_n | y)
        tau = fit_temperature(errors, lik, log_prior=log_prior)
        p = log_posterior(errors.double().cpu(), temperature=tau, log_prior=log_prior.double().cpu()).exp()
        t = estimate_transition_em(p.numpy(), observed, init=t, smoothing=smoothing)
    return tau, t


def heldout_transition_scores(errors: torch.Tensor, observed: np.ndarray, *, log_prior: torch.Tensor, seed: int,
                              assumed_noise_rate: float, folds: int = HELDOUT_T_FOLDS) -> dict:
    """A validation score for noisy labels that no T decides: the log-likelihood of each held-out
    row's label z_n under the model's posterior and a (tau, T) fitted on the OTHER folds of the
    validation rows (`fit_tau_and_transition`), cross-fitted over `folds`.

    Why: under the run's own T a model can hide a confusion in T; under one symmetric T shared by
    every run, a model that has absorbed a structured flip (a 5 labelled 6 predicted as 6) beats one
    that classifies the 5 right, so that score leans against removing structured noise. Here each
    model gets the T that suits it, fitted on rows neither it nor its T trained on; for
    class-conditional noise p(z | x) = sum_y T[y, z] p(y | x) is the same for any factorisation, so
    the score ranks how well a model predicts the labels, not how its run split model from T.
    What it cannot see is which factorisation is right: a model whose classes are permuted gets a
    permuted T and the same score. `dominant_rows` counts the rows of T (fitted on all the rows)
    whose largest entry is their diagonal, the condition that names classes (labels are right more
    often than any one wrong class); a permuted or confused model loses rows there.

    errors: (N, K) class errors of the validation rows, every class scored; observed: (N,) their
    noisy labels. Folds are a fixed draw from `seed`, so two runs with the same seed share them.
    Returns row_log_lik_heldout_t (N,), log_lik_heldout_t (mean), dominant_rows and
    transition_heldout (K, K, fitted on all N rows)."""
    z = np.asarray(observed, dtype=np.int64)
    n, k = errors.shape
    if folds < 2 or n < 2 * folds:
        raise ValueError(f"the held-out-T score needs at least {2 * folds} validation rows for {folds} folds; got {n}")
    init = symmetric_transition(k, assumed_noise_rate)
    fold = np.empty(n, dtype=np.int64)
    fold[torch.randperm(n, generator=torch.Generator().manual_seed(seed * 1_000_003 + 271_829)).numpy()] = np.arange(n) % folds
    rows = np.empty(n)
    lp = log_prior.double().cpu()
    e = errors.double().cpu()
    for f in range(folds):
        test, rest = np.flatnonzero(fold == f), np.flatnonzero(fold != f)
        tau, t = fit_tau_and_transition(e[rest], z[rest], log_prior=lp, init=init)
        p = log_posterior(e[test], temperature=tau, log_prior=lp).exp().numpy()
        rows[test] = np.log(np.clip((p * t[:, z[test]].T).sum(axis=1), 1e-300, None))
    _, t_all = fit_tau_and_transition(e, z, log_prior=lp, init=init)
    return {"row_log_lik_heldout_t": rows.tolist(), "log_lik_heldout_t": float(rows.mean()),
            "dominant_rows": int((t_all.argmax(axis=1) == np.arange(k)).sum()), "transition_heldout": t_all.tolist()}


@torch.no_grad()
def score_validation(net, posterior: PosteriorConfig, *, temperature: float, log_prior: torch.Tensor,
                     images: torch.Tensor, lik: torch.Tensor, labels, validation: torch.Tensor, seed: int,
                     per_row: bool = False, chunk: int = 512, shared_lik: np.ndarray | None = None,
                     heldout_t: float | None = None) -> dict:
    """`validation_scores` of a model on the validation rows, every class scored on the run's
    own levels (no class pruning: a pruned class would score a label as impossible). Seeded by
    the run's seed, so scoring a finished run again gives the same numbers.

    shared_lik: (N, K) a likelihood that does not depend on the run (`run.shared_label_likelihood`:
    noisy labels under the label model's symmetric T); its scores are added with the suffix
    `_shared` (log_lik_shared, agreement_shared, and per row row_log_lik_shared, ...). With
    `heldout_t` (noisy labels, the assumed noise rate its T starts from, and at least
    2 * HELDOUT_T_FOLDS rows), the scores of `heldout_transition_scores` are added too (the per-row
    values only with per_row)."""
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
    if heldout_t is not None and labels.kind == "noisy" and len(val) >= 2 * HELDOUT_T_FOLDS:
        held = heldout_transition_scores(errors, np.asarray(labels.observed)[val.cpu().numpy()], log_prior=log_prior,
                                         seed=seed, assumed_noise_rate=heldout_t)
        if not per_row:
            held.pop("row_log_lik_heldout_t")
        out.update(held)
    return out


def run_validation(run_dir: str | Path) -> dict:
    """The run's `validation_scores` with per-row values (row_log_lik, row_agreement, and for noisy
    labels the same under the shared T, row_log_lik_shared, ...), computed exactly as at the end
    of its training (same rows, same noise): the summary's numbers plus the rows; for noisy labels
    also the held-out-T score (`heldout_transition_scores`), which runs trained before it lack in
    their summary. Raises
    ValueError for a run trained without a validation split."""
    run = load_run(run_dir)
    if run.config.validation == 0:
        raise ValueError(f"{run_dir} was trained without a validation split; train with --validation SHARE")
    ckpt = load_checkpoint(Path(run_dir) / CHECKPOINT_NAME)
    train, _ = run.splits()
    lik = torch.as_tensor(run_label_likelihood(ckpt, run.labels, run.config), dtype=torch.float32)
    labels, lik, shared_lik = scoring_labels(run.labels, lik, run.config)
    return score_validation(run.net, run.posterior, temperature=run.temperature, log_prior=run.log_prior,
                            images=to_model_space(train.images), lik=lik, labels=labels,
                            validation=validation_split(run.config, run.labels, len(train)), seed=run.config.seed,
                            per_row=True, shared_lik=shared_lik, heldout_t=run.config.assumed_noise_rate)
