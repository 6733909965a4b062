"""A run directory: what `train` writes, and how everything else reads it back.

    RUN/config.json     the TrainConfig (JSON)              RUN/labels.npz     the imprecise labels
    RUN/checkpoint.pt   state_dicts + config (atomic)       RUN/stats.jsonl    losses, table refreshes
    RUN/summary.json    the last call's summary             RUN/samples.png    one row per class

Checkpoints are written to a temporary file in the same folder, flushed and fsync'ed, then moved
over the old one with os.replace, so a crash mid-write leaves the previous checkpoint intact; they
are loaded with weights_only=True. Inference (classifier, evaluation, sampling, condensation)
reads runs through this module only, never through the training loop.
"""
from __future__ import annotations

import contextlib
import fcntl
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from label_models.corruption import CorruptionSpec, corrupt
from label_models.io import load_labels, write_atomically
from label_models.labels import ImpreciseLabels

from wsl_diffusion.config import TrainConfig
from wsl_diffusion.data.datasets import ArrayDataset, flat_features, targets_in_label_space
from wsl_diffusion.data.sources import dataset_tag, load_dataset
from wsl_diffusion.model.network import network_preset
from wsl_diffusion.model.precond import EDMDenoiser

CHECKPOINT_NAME = "checkpoint.pt"
CONFIG_NAME = "config.json"
LABELS_NAME = "labels.npz"
STATS_NAME = "stats.jsonl"
SUMMARY_NAME = "summary.json"
SAMPLES_NAME = "samples.png"
LOCK_NAME = ".lock"


# ----------------------------------------------------------------------------------------------
# Atomic files


def atomic_write_bytes(path: Path, write) -> None:
    """Call write(file_object) on a temp file next to `path`, then atomically rename it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomically(path, write)


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, lambda f: f.write(text.encode()))


def save_checkpoint(path: Path, state: dict) -> None:
    """`state` holds tensors, state_dicts, numbers and strings only (weights_only-loadable)."""
    atomic_write_bytes(path, lambda f: torch.save(state, f))


def load_checkpoint(path: Path, *, map_location="cpu") -> dict:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no checkpoint at {path}: is this a run directory made by `wsl-diff train`?")
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:  # a truncated or foreign file: say which and why, in one line
        raise ValueError(f"cannot read checkpoint {path}: {type(exc).__name__}: {exc}") from None


def save_config(run_dir: Path, config: TrainConfig) -> None:
    atomic_write_text(Path(run_dir) / CONFIG_NAME, json.dumps(config.to_dict(), indent=2, sort_keys=True) + "\n")


def load_config(run_dir: Path) -> TrainConfig:
    """The TrainConfig saved in a run directory (ValueError if there is none)."""
    path = Path(run_dir) / CONFIG_NAME
    if not path.is_file():
        raise ValueError(f"{run_dir} has no {CONFIG_NAME}; is it a run directory made by `wsl-diff train`?")
    return TrainConfig.from_dict(json.loads(path.read_text()))


@contextlib.contextmanager
def run_lock(run_dir: Path) -> Iterator[None]:
    """Hold an exclusive lock on a run directory (POSIX `fcntl.flock` on RUN/.lock) while the
    block runs: one training process per directory. The lock file records the holder's PID; the
    lock itself dies with the process, so a killed trainer never leaves the directory locked.
    ValueError, naming the holder, if another process holds it."""
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    with open(run_dir / LOCK_NAME, "a+") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            f.seek(0)
            holder = f.read().strip() or "unknown"
            raise ValueError(f"{run_dir} is in use by another training process (PID {holder}); "
                             "wait for it to finish or choose another `run_dir`") from None
        f.seek(0)
        f.truncate()
        f.write(f"{os.getpid()}\n")
        f.flush()
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


# ----------------------------------------------------------------------------------------------
# The model of a run


def build_denoiser(config: TrainConfig, image_shape, num_classes: int) -> EDMDenoiser:
    """A fresh (randomly initialised) denoiser of the run's model preset."""
    return EDMDenoiser(image_shape=tuple(image_shape), num_classes=num_classes,
                       config=network_preset(config.model), sigma_data=config.sigma_data)


def load_model(run_dir: Path, *, device="cpu", use_ema: bool = True) -> tuple[EDMDenoiser, dict, TrainConfig]:
    """A trained denoiser (EMA weights by default, eval mode, no gradients), its checkpoint dict
    (log_prior, temperature, class_names, ...) and its config."""
    ckpt = load_checkpoint(Path(run_dir) / CHECKPOINT_NAME, map_location=device)
    config = TrainConfig.from_dict(json.loads(ckpt["config"]))
    net = build_denoiser(config, ckpt["image_shape"], ckpt["num_classes"])
    net.load_state_dict(ckpt["ema" if use_ema else "net"])
    return net.to(device).eval().requires_grad_(False), ckpt, config


# ----------------------------------------------------------------------------------------------
# The labels and data of a run


def make_labels(config: TrainConfig, train: ArrayDataset) -> ImpreciseLabels:
    """The imprecise labels a config trains on: its label file, or its corruption of the true
    training labels (`config.supervision`), checked against the training split."""
    if config.labels_file:
        labels = load_labels(config.labels_file, num_classes=train.num_classes)
        if labels.kind != "pu":
            labels.validate_against(len(train), train.num_classes)
        elif labels.num_samples != len(train):
            raise ValueError(f"label file {config.labels_file} has {labels.num_samples} rows, "
                             f"the {config.dataset} training split {len(train)}")
        return labels
    if config.supervision is None:
        raise ValueError("the config names no labels: give `labels_file` or `supervision`")
    spec = CorruptionSpec.from_dict(config.supervision)
    return corrupt(train.targets, num_classes=train.num_classes, spec=spec, features=flat_features(train),
                   dataset_name=dataset_tag(config.dataset, train.class_names))


def aligned_splits(config: TrainConfig, labels: ImpreciseLabels) -> tuple[ArrayDataset, ArrayDataset]:
    """The (train, test) splits a run was trained on, the training split aligned to `labels`.

    A label set with fewer rows than the split is accepted only when its recorded true labels
    match the first rows of the split exactly (a run trained on a prefix of the split, as the
    test fixtures do); anything else is a mismatch and raises ValueError.
    """
    train, test = load_dataset(config.dataset, subset=config.subset, on_error=config.on_bad_image)
    n = labels.num_samples
    if n == len(train):
        return train, test
    if n < len(train) and labels.true_labels is not None:
        prefix = train.targets[:n]
        if (np.array_equal(labels.true_labels, prefix)
                or np.array_equal(labels.true_labels, targets_in_label_space(labels, prefix))):
            return ArrayDataset(train.images[:n], train.targets[:n], train.class_names), test
    raise ValueError(f"the run's {LABELS_NAME} has {n} rows but the {config.dataset} training split has "
                     f"{len(train)} images; cannot align labels with images")


@dataclass
class TrainedRun:
    """A finished (or checkpointed) run, read back for inference.

    net: the EMA denoiser in eval mode; config: its TrainConfig; labels: the imprecise labels it
    was trained on; log_prior (K,) and temperature: the class prior and posterior temperature it
    estimated from those labels; class_names: one per class of the label space.
    """

    run_dir: Path
    net: EDMDenoiser
    config: TrainConfig
    labels: ImpreciseLabels
    log_prior: torch.Tensor
    temperature: float
    class_names: tuple[str, ...]

    def splits(self) -> tuple[ArrayDataset, ArrayDataset]:
        """(train aligned with `labels`, test) as the run saw them."""
        return aligned_splits(self.config, self.labels)

    def test_split(self) -> tuple[ArrayDataset, np.ndarray]:
        """The run's test split and its targets in the label space (binary for PU runs)."""
        _, test = load_dataset(self.config.dataset, subset=self.config.subset, on_error=self.config.on_bad_image)
        return test, targets_in_label_space(self.labels, test.targets)


def load_run(run_dir: str | Path, *, device="cpu") -> TrainedRun:
    """Read a run directory: the EMA model, its config, labels, prior and temperature."""
    run_dir = Path(run_dir)
    net, ckpt, config = load_model(run_dir, device=device)
    return TrainedRun(run_dir=run_dir, net=net, config=config, labels=load_labels(run_dir / LABELS_NAME),
                      log_prior=ckpt["log_prior"], temperature=float(ckpt["temperature"]),
                      class_names=tuple(ckpt.get("class_names", ())) or tuple(str(i) for i in range(net.num_classes)))
