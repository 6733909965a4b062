"""A run directory: what `train` writes, and how everything else reads it back.

    RUN/config.json     the TrainConfig (JSON)              RUN/labels.npz     the imprecise labels
    RUN/checkpoint.pt   state_dicts + config (atomic)       RUN/stats.jsonl    losses, table refreshes
    RUN/summary.json    the last call's summary             RUN/samples.png    one row per class
    RUN/curves.png      losses and E-step table over kimg
    RUN/posterior_budgets.json   the schedules fitted for `budget=` (for one checkpoint step)

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
from label_models.likelihood import label_likelihood

from wsl_diffusion.config import TrainConfig
from wsl_diffusion.posterior import PosteriorConfig
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
CURVES_NAME = "curves.png"
LOCK_NAME = ".lock"
BUDGETS_NAME = "posterior_budgets.json"


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


# What every checkpoint `train` writes holds; a file without them is not one of ours.
CHECKPOINT_KEYS = ("config", "net", "ema", "image_shape", "num_classes", "nimg", "step")


def load_checkpoint(path: Path, *, map_location="cpu") -> dict:
    """A checkpoint written by `save_checkpoint` (weights_only, so a foreign pickle runs no code).
    ValueError, naming the file, for anything else: truncated, foreign, or missing its parts."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no checkpoint at {path}: is this a run directory made by `wsl-diff train`?")
    try:
        ckpt = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:  # a truncated or foreign file: say which and why, in one line
        raise ValueError(f"cannot read checkpoint {path}: {type(exc).__name__}: {exc}") from None
    missing = [k for k in CHECKPOINT_KEYS if k not in ckpt] if isinstance(ckpt, dict) else list(CHECKPOINT_KEYS)
    if missing:
        raise ValueError(f"{path} is not a `wsl-diff train` checkpoint (it lacks {', '.join(missing)}); "
                         "point to a run directory made by `wsl-diff train`")
    return ckpt


def checkpoint_config(ckpt: dict, path: Path) -> TrainConfig:
    """The TrainConfig stored in a checkpoint; ValueError naming `path` if it is unreadable."""
    try:
        return TrainConfig.from_dict(json.loads(ckpt["config"]))
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{path}: the config stored in the checkpoint is unreadable ({exc})") from None


def check_run_dir(run_dir: Path, *, resume: bool) -> None:
    """Fail early, in one line, when `run_dir` cannot take this call: a new run where one exists,
    or a resume where there is no checkpoint. `train` checks again under its lock."""
    ckpt = Path(run_dir) / CHECKPOINT_NAME
    if resume and not ckpt.is_file():
        raise ValueError(f"{run_dir} has no {CHECKPOINT_NAME} to resume from; start the run without `resume`")
    if not resume and ckpt.exists():
        raise ValueError(f"{run_dir} already holds a run; use `resume` to continue it or choose another `run_dir`")


def clean_after_crash(run_dir: Path, *, step: int, refreshes: int) -> None:
    """Before a resume: remove temporary checkpoint files a killed write left behind, and cut
    stats.jsonl back to what the checkpoint knows (log records up to its step, table refreshes
    up to its count), so the resumed run does not log the lost steps twice."""
    run_dir = Path(run_dir)
    for tmp in run_dir.glob(f".{CHECKPOINT_NAME}.*.tmp"):
        tmp.unlink(missing_ok=True)
    stats = run_dir / STATS_NAME
    if not stats.is_file():
        return
    kept = []
    for line in stats.read_text().splitlines():
        try:
            record = json.loads(line)
        except ValueError:  # a line cut by the kill
            continue
        if not isinstance(record, dict):
            continue
        if "refresh" in record and record["refresh"] > refreshes:
            continue
        if "step" in record and record["step"] > step:
            continue
        kept.append(line)
    atomic_write_text(stats, "".join(line + "\n" for line in kept))


def save_config(run_dir: Path, config: TrainConfig) -> None:
    atomic_write_text(Path(run_dir) / CONFIG_NAME, json.dumps(config.to_dict(), indent=2, sort_keys=True) + "\n")


def load_config(run_dir: Path) -> TrainConfig:
    """The TrainConfig saved in a run directory (ValueError if there is none)."""
    path = Path(run_dir) / CONFIG_NAME
    if not path.is_file():
        raise ValueError(f"{run_dir} has no {CONFIG_NAME}; is it a run directory made by `wsl-diff train`?")
    try:
        return TrainConfig.from_dict(json.loads(path.read_text()))
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{path} is not a readable run config ({exc}); restore it or start a new run") from None


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


def build_model_from(ckpt: dict, config: TrainConfig, path: Path, *, weights: str) -> EDMDenoiser:
    """The denoiser a checkpoint describes with its `weights` ("net" or "ema") loaded; ValueError
    naming `path` when they do not fit (another preset, class count or image size)."""
    try:
        net = build_denoiser(config, [int(v) for v in ckpt["image_shape"]], int(ckpt["num_classes"]))
        net.load_state_dict(ckpt[weights])
    except (TypeError, ValueError, RuntimeError, KeyError, AttributeError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ValueError(f"{path}: the weights do not fit the model its config describes ({first}); "
                         "the checkpoint is damaged or from another version") from None
    return net


def load_model(run_dir: Path, *, device="cpu", use_ema: bool = True) -> tuple[EDMDenoiser, dict, TrainConfig]:
    """A trained denoiser (EMA weights by default, eval mode, no gradients), its checkpoint dict
    (log_prior, temperature, class_names, ...) and its config."""
    path = Path(run_dir) / CHECKPOINT_NAME
    ckpt = load_checkpoint(path, map_location=device)
    config = checkpoint_config(ckpt, path)
    net = build_model_from(ckpt, config, path, weights="ema" if use_ema else "net")
    if not all(bool(torch.isfinite(t).all()) for t in net.state_dict().values() if t.is_floating_point()):
        raise ValueError(f"{path}: the model's weights hold NaN or inf (the run diverged); "
                         "resume from an earlier checkpoint or train again with a lower --lr")
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
    estimated from those labels; posterior: the schedule it ended with (fitted, or its config's);
    class_names: one per class of the label space.
    """

    run_dir: Path
    net: EDMDenoiser
    config: TrainConfig
    labels: ImpreciseLabels
    log_prior: torch.Tensor
    temperature: float
    class_names: tuple[str, ...]
    posterior: PosteriorConfig

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
                      class_names=tuple(ckpt.get("class_names", ())) or tuple(str(i) for i in range(net.num_classes)),
                      posterior=run_posterior(ckpt, config))


def run_label_likelihood(ckpt: dict, labels: ImpreciseLabels, config: TrainConfig) -> np.ndarray:
    """(N, K) p(z_n | y) of a run's labels under the T its checkpoint ended with (noisy labels;
    the assumed symmetric T when it stores none) and the class prior it used (PU labels)."""
    t = ckpt.get("transition")
    prior = ckpt["log_prior"].double().exp().numpy()
    return label_likelihood(labels, assumed_noise_rate=config.assumed_noise_rate,
                            transition_matrix=None if t is None or not t.numel() else t.double().numpy(),
                            class_prior=prior / prior.sum())


def shared_label_likelihood(labels: ImpreciseLabels, config: TrainConfig) -> np.ndarray | None:
    """(N, K) p(z_n | y) under the label model's own symmetric T at `assumed_noise_rate`, for noisy
    labels; None for the other kinds (their likelihood has no fitted T). Two runs of the same labels
    and assumed rate share it, so validation scores under it compare their models, not their T:
    a run's own estimated T can absorb a confusion its model makes and score a consistently wrong
    model as a tie (docs/choosing-defaults.md)."""
    if labels.kind != "noisy":
        return None
    return label_likelihood(labels, assumed_noise_rate=config.assumed_noise_rate)


def run_posterior(ckpt: dict, config: TrainConfig) -> PosteriorConfig:
    """The schedule a run's table used last: the fitted one its checkpoint stores, or (older runs,
    `posterior_fit="fixed"`) the config's. Its temperature is the config's; the fitted tau is
    the checkpoint's `temperature`."""
    return PosteriorConfig(**ckpt["posterior"]) if "posterior" in ckpt else config.posterior


def stored_budget_schedules(run_dir: Path, *, step: int, base: PosteriorConfig) -> dict[int, PosteriorConfig]:
    """{budget: schedule} fitted for `budget=` on this run at checkpoint `step` from the schedule
    `base` (`store_budget_schedule`); empty when none was stored, when the run has trained on since
    (its model is another) or when they were fitted from another base schedule."""
    path = Path(run_dir) / BUDGETS_NAME
    try:
        stored = json.loads(path.read_text())
        if stored.get("step") != step or stored.get("base") != base.to_dict():
            return {}
        return {int(b): PosteriorConfig(**entry["posterior"]) for b, entry in stored["budgets"].items()}
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return {}  # none yet, unreadable or from another version: fit again (and overwrite it)


def store_budget_schedule(run_dir: Path, *, step: int, base: PosteriorConfig, budget: int, posterior: PosteriorConfig,
                          info: dict) -> bool:
    """Add the schedule fitted for `budget` at checkpoint `step` from `base` to
    RUN/posterior_budgets.json (atomically); False when the run directory cannot be written (the fit
    is then only kept in memory)."""
    path = Path(run_dir) / BUDGETS_NAME
    try:
        stored = json.loads(path.read_text()) if path.is_file() else {}
    except (OSError, ValueError):
        stored = {}
    if (not isinstance(stored, dict) or stored.get("step") != step or stored.get("base") != base.to_dict()
            or not isinstance(stored.get("budgets"), dict)):
        stored = {"step": step, "base": base.to_dict(), "budgets": {}}
    stored["budgets"][str(budget)] = {"posterior": posterior.to_dict(), "fit": info}
    try:
        atomic_write_text(path, json.dumps(stored, indent=1, sort_keys=True))
    except OSError:
        return False
    return True
