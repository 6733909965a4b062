"""Evaluation of the diffusion posterior: accuracy, NLL, ECE, network evaluations and throughput."""
from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import torch

from wsl_diffusion.posterior import INFERENCE_DRAWS, PosteriorConfig, diffusion_posterior, fit_temperature


def expected_calibration_error(probs: torch.Tensor, targets: torch.Tensor, *, bins: int = 15) -> float:
    """ECE with equal-width confidence bins: sum_b (n_b / N) |accuracy_b - confidence_b|."""
    conf, pred = probs.max(dim=1)
    correct = (pred == targets).float()
    edges = torch.linspace(0, 1, bins + 1)
    ece = torch.zeros(())
    for lo, hi in zip(edges[:-1], edges[1:]):
        m = (conf > lo) & (conf <= hi)
        if m.any():
            ece += m.float().mean() * (correct[m].mean() - conf[m].mean()).abs()
    return float(ece)


@dataclass
class PosteriorEvaluation:
    accuracy: float
    nll: float
    ece: float
    nfe_per_image: int
    images_per_second: float
    temperature: float

    def to_dict(self) -> dict:
        return dict(self.__dict__)


@torch.no_grad()
def posterior_outputs(net, images: torch.Tensor, cfg: PosteriorConfig, *, log_prior: torch.Tensor | None,
                      seed: int = 0, batch_size: int = 256):
    """Errors (N, K) and probs (N, K) of a whole split, with wall time; fixed noise seed."""
    gen = torch.Generator().manual_seed(seed)
    errors, probs = [], []
    nfe = 0
    t0 = time.perf_counter()
    for start in range(0, len(images), batch_size):
        res = diffusion_posterior(net, images[start:start + batch_size], cfg, generator=gen, log_prior=log_prior)
        errors.append(res.errors.cpu())
        probs.append(res.probs.cpu())
        nfe = res.nfe_per_image
    seconds = time.perf_counter() - t0
    return torch.cat(errors), torch.cat(probs), nfe, seconds


def evaluate_posterior(net, images: torch.Tensor, targets: np.ndarray, cfg: PosteriorConfig, *,
                       log_prior: torch.Tensor | None = None, seed: int = 0) -> PosteriorEvaluation:
    """Test metrics of the diffusion classifier with the given schedule and temperature."""
    _, probs, nfe, seconds = posterior_outputs(net, images, cfg, log_prior=log_prior, seed=seed)
    t = torch.as_tensor(targets)
    p_true = probs.gather(1, t[:, None]).squeeze(1).clamp_min(1e-12)
    return PosteriorEvaluation(
        accuracy=float((probs.argmax(1) == t).float().mean()),
        nll=float(-p_true.log().mean()),
        ece=expected_calibration_error(probs, t),
        nfe_per_image=nfe,
        images_per_second=len(images) / seconds,
        temperature=cfg.temperature,
    )


def standard_schedules(train_posterior: PosteriorConfig, *, reference_sigmas: int = 100) -> dict[str, PosteriorConfig]:
    """The schedules `wsl-diff evaluate` compares: a dense reference grid, Chen et al.'s uniform
    spacing, the paper's median-centred interval, its single-median limit, the run's own interval,
    that interval with adaptive class pruning (1 level for all classes, the rest for the top 2),
    and that interval with `INFERENCE_DRAWS` noise draws per level."""
    n = train_posterior.num_sigmas
    own = train_posterior.replace(keep_classes=None, temperature=1.0)
    return {
        f"grid-{reference_sigmas}": PosteriorConfig(schedule="grid", num_sigmas=reference_sigmas),
        f"uniform-{n}": PosteriorConfig(schedule="uniform", num_sigmas=n),
        f"interval-delta6.4-{n}": PosteriorConfig(schedule="interval", delta=6.4, num_sigmas=n),
        "median-1": PosteriorConfig(schedule="median", num_sigmas=1),
        f"run-interval-{n}": own,
        f"run-interval-{n}-keep2": own.replace(keep_classes=2, prune_sigmas=1),
        f"run-interval-{n}-draws{INFERENCE_DRAWS}": own.replace(draws=INFERENCE_DRAWS),
    }


def cross_fitted_probs(errors: torch.Tensor, targets: torch.Tensor, *, log_prior: torch.Tensor | None,
                       seed: int = 0) -> tuple[torch.Tensor, list[float]]:
    """Calibrated probabilities without touching the evaluated labels: split the images in two
    folds, fit tau on one fold (NLL of its labels) and apply it to the other, and vice versa."""
    n, k = errors.shape
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    folds = [perm[: n // 2], perm[n // 2:]]
    onehot = torch.nn.functional.one_hot(targets, k).float()
    probs = torch.empty(n, k)
    taus = []
    lp = None if log_prior is None else log_prior.cpu()
    for fit_idx, apply_idx in ((folds[0], folds[1]), (folds[1], folds[0])):
        tau = fit_temperature(errors[fit_idx], onehot[fit_idx], log_prior=lp)
        taus.append(tau)
        logits = -errors[apply_idx] / tau + (0 if lp is None else lp)
        probs[apply_idx] = torch.softmax(logits.masked_fill(~torch.isfinite(errors[apply_idx]), -float("inf")), dim=1)
    return probs, taus


def metrics_of(probs: torch.Tensor, targets: torch.Tensor) -> dict:
    p_true = probs.gather(1, targets[:, None]).squeeze(1).clamp_min(1e-12)
    return {"accuracy": float((probs.argmax(1) == targets).float().mean()),
            "nll": float(-p_true.log().mean()), "ece": expected_calibration_error(probs, targets)}


def evaluate_schedules(net, images: torch.Tensor, targets: np.ndarray, schedules: dict[str, PosteriorConfig], *,
                       log_prior: torch.Tensor | None = None, temperature: float | None = 1.0, seed: int = 0,
                       on_result=None) -> list[dict]:
    """Accuracy / NLL / ECE (at the given temperature and cross-fitted), NFE, images/s and peak
    GPU memory (None on the CPU) per schedule. temperature None: each schedule's own."""
    t = torch.as_tensor(targets)
    on_gpu = images.device.type == "cuda"
    rows = []
    for name, cfg in schedules.items():
        if temperature is not None:
            cfg = cfg.replace(temperature=temperature)
        if on_gpu:
            torch.cuda.reset_peak_memory_stats(images.device)
        errors, probs, nfe, seconds = posterior_outputs(net, images, cfg, log_prior=log_prior, seed=seed)
        peak = torch.cuda.max_memory_allocated(images.device) / 2**20 if on_gpu else None
        calibrated, taus = cross_fitted_probs(errors, t, log_prior=log_prior, seed=seed)
        row = {"schedule": name, "nfe_per_image": nfe, "images_per_second": len(images) / seconds,
               "ms_per_image": 1000 * seconds / len(images), "peak_gpu_mib": peak,
               "temperature": cfg.temperature, **metrics_of(probs, t),
               "calibrated": {**metrics_of(calibrated, t), "temperatures": taus}}
        rows.append(row)
        if on_result is not None:
            on_result(row)
    return rows
