"""wsl-diffusion: class-conditional diffusion models trained from imprecise labels (DMIS), used as
generators and as Bayes classifiers through their own diffusion posterior.

The public API (everything else is reachable through the sub-packages):

    from wsl_diffusion import TrainConfig, train, DiffusionClassifier, diffusion_posterior, PosteriorConfig

Layers, each importing only those below it (tests/test_layers.py checks this):

    label_models  (separate package) imprecise labels, corruption, T and prior estimators, label files
    data/         datasets (digits, folders, tarballs, .npz, CIFAR pickles) and image files
    model/        the EDM-preconditioned U-Net denoiser; classifier networks for the baselines/evaluator
    posterior.py, sampling.py   the diffusion classifier and the EDM samplers
    config.py     TrainConfig (what a run is) and Execution (how it runs)
    run.py        a run directory: its files, checkpoints, model, labels and splits
    classifier.py, eval/   inference and measurement on trained runs
    training/     the DMIS / vanilla training loop, its losses and DDP
    bench/        the benchmark: settings, baselines, runner, store, report, demo

Names are resolved on first use (PEP 562), so importing the package, e.g. for the dataset layer
in `wsl-diff corrupt`, does not import torch.
"""
from __future__ import annotations

import importlib

_PUBLIC = {
    "TrainConfig": "wsl_diffusion.config",
    "Execution": "wsl_diffusion.config",
    "train": "wsl_diffusion.training.loop",
    "DiffusionClassifier": "wsl_diffusion.classifier",
    "DMISClassifier": "wsl_diffusion.estimator",
    "diffusion_posterior": "wsl_diffusion.posterior",
    "PosteriorConfig": "wsl_diffusion.posterior",
    "load_run": "wsl_diffusion.run",
}

__all__ = sorted(_PUBLIC)


def __getattr__(name: str):
    if name not in _PUBLIC:
        raise AttributeError(f"module 'wsl_diffusion' has no attribute {name!r}")
    return getattr(importlib.import_module(_PUBLIC[name]), name)


def __dir__() -> list[str]:
    return __all__
