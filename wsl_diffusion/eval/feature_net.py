"""The evaluator classifier: the feature space for sample metrics, and the recipe for CAS/condensation.

Three jobs share one network and one training recipe (`ClassifierConfig`), so that their numbers
compare. The network comes from `model.classifier_nets.classifier_backbone(..., small="strided")`:
the small strided CNN below 32x32 (digits), a CIFAR-stem ResNet-18 from 32x32 on.

* the **evaluator** — trained ONCE on the clean training split of a dataset and cached on disk.
  Its penultimate layer (globally pooled conv features) is the feature space of Fréchet distance
  and density/coverage; its predictions give the "sample accuracy" of generated images;
* the **CAS** classifier — trained on generated samples, tested on the real test split;
* the **condensation** classifier — trained on IPC images per class, tested on the real test split.

Training is deterministic on CPU: weights are initialised from `config.seed` inside a forked RNG
(global state is left as it was) and every minibatch and augmentation draw comes from an explicit
`torch.Generator`.

Cache: ``$WSL_DIFFUSION_CACHE/evaluators/<key>.pt`` with ``WSL_DIFFUSION_CACHE`` defaulting to
``~/.cache/wsl-diffusion``. The key is ``<dataset>-<hash>``, the hash covering the training recipe
and the training images, so a changed recipe or split trains a new evaluator instead of silently
reusing a stale one. Files are written atomically and read with ``weights_only=True``.
"""
from __future__ import annotations

import hashlib
import json
import math
import os
import re
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from wsl_diffusion.model.classifier_nets import classifier_backbone
from wsl_diffusion.run import atomic_write_bytes
from wsl_diffusion.data.datasets import ArrayDataset, to_model_space
from wsl_diffusion.data.sources import load_dataset

CACHE_ENV = "WSL_DIFFUSION_CACHE"
# 2: images of 32x32 and larger get a ResNet-18 instead of the strided CNN. The format is part of
# the cache key, so evaluators cached by format 1 are retrained rather than loaded into a new net.
EVALUATOR_FORMAT = 2


@dataclass(frozen=True)
class ClassifierConfig:
    """Training recipe of the evaluator network (AdamW, cosine learning rate, random shifts).

    width: channels of the small CNN's first conv stage (later stages 2x, 4x); its feature
      dimension is 4*width. Unused from 32x32 on, where the ResNet-18 has fixed widths (512 features).
    epochs: passes over the training set; at least `min_steps` optimiser steps are taken, so that a
      classifier on a handful of images (IPC 1) still trains to convergence.
    shift: random translation by up to this many pixels (edge-replicated), 0 switches it off.
    hflip: random horizontal flips (off by default: digits are not mirror-symmetric).
    """

    width: int = 16
    epochs: int = 30
    min_steps: int = 300
    batch_size: int = 64
    lr: float = 3e-3
    weight_decay: float = 5e-4
    label_smoothing: float = 0.0
    shift: int = 1
    hflip: bool = False
    seed: int = 0

    def __post_init__(self) -> None:
        if self.width < 1 or self.batch_size < 1:
            raise ValueError("classifier width and batch_size must be >= 1")
        if self.epochs < 0 or self.min_steps < 0 or self.epochs + self.min_steps == 0:
            raise ValueError("classifier epochs/min_steps must be >= 0 and not both 0")
        if not self.lr > 0:
            raise ValueError("classifier lr must be > 0")

    def to_dict(self) -> dict:
        return asdict(self)

    def replace(self, **changes) -> "ClassifierConfig":
        return replace(self, **changes)


def _augment(x: torch.Tensor, config: ClassifierConfig, gen: torch.Generator) -> torch.Tensor:
    """Random integer shifts (edge-replicated border) and optional flips, drawn from `gen`."""
    b, _, h, w = x.shape
    if config.hflip:
        flip = torch.rand(b, generator=gen) < 0.5
        x = torch.where(flip.view(-1, 1, 1, 1).to(x.device), x.flip(3), x)
    s = config.shift
    if s > 0:
        padded = F.pad(x, (s, s, s, s), mode="replicate")
        dy = torch.randint(0, 2 * s + 1, (b,), generator=gen)
        dx = torch.randint(0, 2 * s + 1, (b,), generator=gen)
        rows = (dy[:, None] + torch.arange(h))[:, None, :, None].to(x.device)  # (B, 1, H, 1)
        cols = (dx[:, None] + torch.arange(w))[:, None, None, :].to(x.device)  # (B, 1, 1, W)
        bi = torch.arange(b, device=x.device).view(-1, 1, 1, 1)
        ci = torch.arange(x.shape[1], device=x.device).view(1, -1, 1, 1)
        x = padded[bi, ci, rows, cols]  # (B, C, H, W): each image cropped at its own offset
    return x


def train_classifier(images: torch.Tensor, labels: torch.Tensor | np.ndarray, *, num_classes: int,
                     config: ClassifierConfig = ClassifierConfig(), device="cpu") -> nn.Module:
    """Train a fresh `classifier_backbone(small="strided")` network on (images (N, C, H, W) in
    [-1, 1], labels (N,) int in [0, K)).

    Deterministic for a given config (seed) on CPU. Returns the network in eval mode, with
    `features`, `feature_dim` and `num_classes` (see `model.classifier_nets`).

    Not `bench.baselines_neural.train_conv_net`'s loop: this one streams minibatches across epoch
    boundaries with at least `min_steps` steps (IPC-1 condensation sets are a handful of images),
    augments, and uses AdamW with a per-step cosine; the baselines reshuffle per epoch and use Adam.
    Folding both into one loop would change the batch order, hence the digits numbers of one side.
    """
    labels = torch.as_tensor(np.asarray(labels), dtype=torch.long)
    if images.ndim != 4 or len(images) != len(labels):
        raise ValueError(f"need images (N, C, H, W) and N labels; got {tuple(images.shape)} and {len(labels)}")
    if len(labels) == 0:
        raise ValueError("cannot train a classifier on zero images")
    if labels.min() < 0 or labels.max() >= num_classes:
        raise ValueError(f"labels must be in [0, {num_classes}); got range [{int(labels.min())}, {int(labels.max())}]")
    n = images.shape[0]
    net = classifier_backbone(tuple(images.shape[1:]), num_classes, small="strided", width=config.width,
                              seed=config.seed)
    net.to(device).train()
    gen = torch.Generator().manual_seed(config.seed + 1)
    batch = min(config.batch_size, n)
    steps_per_epoch = math.ceil(n / batch)
    total = max(config.min_steps, config.epochs * steps_per_epoch)
    opt = torch.optim.AdamW(net.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 0.5 * (1 + math.cos(math.pi * s / total)))
    images = images.float()
    order = torch.randperm(n, generator=gen)
    pos = 0
    for _ in range(total):
        if pos + batch > n:  # reshuffle once the epoch is exhausted (the tail joins the next one)
            order = torch.cat([order[pos:], torch.randperm(n, generator=gen)])
            pos = 0
        idx = order[pos:pos + batch]
        pos += batch
        x = _augment(images[idx], config, gen).to(device)
        loss = F.cross_entropy(net(x), labels[idx].to(device), label_smoothing=config.label_smoothing)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
    return net.eval().requires_grad_(False)


@torch.no_grad()
def predict_logits(net: nn.Module, images: torch.Tensor, *, batch_size: int = 512) -> torch.Tensor:
    """Logits (N, K) of float images (N, C, H, W) in [-1, 1], on CPU."""
    device = next(net.parameters()).device
    return torch.cat([net(images[i:i + batch_size].float().to(device)).cpu()
                      for i in range(0, len(images), batch_size)]) if len(images) else torch.zeros(0, net.num_classes)


def accuracy(net: nn.Module, images: torch.Tensor, targets) -> float:
    """Fraction of images whose argmax logit equals its target (N,)."""
    pred = predict_logits(net, images).argmax(1)
    return float((pred == torch.as_tensor(np.asarray(targets))).float().mean())


# ----------------------------------------------------------------------------------------------
# The cached evaluator


@dataclass
class Evaluator:
    """A classifier trained on the clean training split of `dataset`; see the module docstring."""

    net: nn.Module  # from `train_classifier`: has features(), feature_dim, num_classes
    dataset: str
    config: ClassifierConfig
    class_names: tuple[str, ...]
    test_accuracy: float
    train_seconds: float
    path: Path | None = None

    @property
    def num_classes(self) -> int:
        return self.net.num_classes

    @property
    def feature_dim(self) -> int:
        return self.net.feature_dim

    @torch.no_grad()
    def features(self, images: torch.Tensor, *, batch_size: int = 512) -> torch.Tensor:
        """Penultimate-layer features (N, feature_dim) float64 of images (N, C, H, W) in [-1, 1]."""
        device = next(self.net.parameters()).device
        out = [self.net.features(images[i:i + batch_size].float().to(device)).cpu()
               for i in range(0, len(images), batch_size)]
        return torch.cat(out).double() if out else torch.zeros(0, self.feature_dim, dtype=torch.float64)

    def predict(self, images: torch.Tensor) -> torch.Tensor:
        """Predicted class (N,) int64 of images (N, C, H, W) in [-1, 1]."""
        return predict_logits(self.net, images).argmax(1)


def cache_root(cache_dir: str | os.PathLike | None = None) -> Path:
    """`cache_dir`, else $WSL_DIFFUSION_CACHE, else ~/.cache/wsl-diffusion."""
    if cache_dir is not None:
        return Path(cache_dir)
    env = os.environ.get(CACHE_ENV)
    return Path(env) if env else Path.home() / ".cache" / "wsl-diffusion"


def evaluator_key(dataset: str, train: ArrayDataset, config: ClassifierConfig) -> str:
    """'<dataset>-<12 hex>': a hash of the recipe and the training images and labels."""
    h = hashlib.sha256()
    h.update(json.dumps({"format": EVALUATOR_FORMAT, "config": config.to_dict()}, sort_keys=True).encode())
    h.update(str(train.images.shape).encode())
    h.update(np.ascontiguousarray(train.images).tobytes())
    h.update(np.ascontiguousarray(train.targets, dtype=np.int64).tobytes())
    # A dataset may be a path: keep a readable, file-name-safe tail of it.
    name = re.sub(r"[^A-Za-z0-9_.-]+", "_", Path(str(dataset).rstrip("/\\")).name) or "dataset"
    return f"{name}-{h.hexdigest()[:12]}"


def train_evaluator(train: ArrayDataset, test: ArrayDataset, *, dataset: str = "custom",
                    config: ClassifierConfig = ClassifierConfig(), device="cpu") -> Evaluator:
    """Train an evaluator on a clean (train, test) pair without touching the cache."""
    t0 = time.perf_counter()
    net = train_classifier(to_model_space(train.images), train.targets, num_classes=train.num_classes,
                           config=config, device=device)
    seconds = time.perf_counter() - t0
    acc = accuracy(net, to_model_space(test.images), test.targets)
    return Evaluator(net, dataset, config, tuple(train.class_names), acc, seconds)


def _save_evaluator(path: Path, ev: Evaluator, key: str, image_shape) -> None:
    state = {"format": EVALUATOR_FORMAT, "key": key, "dataset": ev.dataset, "config": json.dumps(ev.config.to_dict()),
             "image_shape": list(image_shape), "num_classes": ev.num_classes, "class_names": list(ev.class_names),
             "width": ev.config.width, "test_accuracy": ev.test_accuracy, "train_seconds": ev.train_seconds,
             "state_dict": ev.net.state_dict()}
    atomic_write_bytes(path, lambda f: torch.save(state, f))


def _load_evaluator(path: Path, key: str, device) -> Evaluator | None:
    """The cached evaluator, or None if the file is unreadable or was made for something else."""
    try:
        state = torch.load(path, map_location=device, weights_only=True)
        if state.get("format") != EVALUATOR_FORMAT or state.get("key") != key:
            return None
        config = ClassifierConfig(**json.loads(state["config"]))
        net = classifier_backbone(tuple(state["image_shape"]), int(state["num_classes"]), small="strided",
                                  width=config.width, seed=config.seed)
        net.load_state_dict(state["state_dict"])
    except Exception:  # a truncated/foreign file is not fatal: it is retrained and replaced
        return None
    return Evaluator(net.to(device).eval().requires_grad_(False), str(state["dataset"]), config,
                     tuple(state["class_names"]), float(state["test_accuracy"]), float(state["train_seconds"]), path)


def get_evaluator(dataset: str = "digits", *, config: ClassifierConfig = ClassifierConfig(),
                  cache_dir: str | os.PathLike | None = None, device="cpu", retrain: bool = False,
                  on_error: str = "raise", splits: tuple[ArrayDataset, ArrayDataset] | None = None) -> Evaluator:
    """The evaluator of a dataset (a name or path `load_dataset` reads): loaded from the cache, or
    trained on its full clean training split (and cached) on first use. `retrain` ignores and
    replaces a cached file; on_error: see `load_dataset`; splits: the dataset's full (train, test)
    splits if the caller has them loaded already (they are hashed into the cache key)."""
    train, test = splits if splits is not None else load_dataset(dataset, on_error=on_error)
    key = evaluator_key(dataset, train, config)
    path = cache_root(cache_dir) / "evaluators" / f"{key}.pt"
    if path.is_file() and not retrain:
        ev = _load_evaluator(path, key, device)
        if ev is not None:
            return ev
    ev = train_evaluator(train, test, dataset=dataset, config=config, device=device)
    _save_evaluator(path, ev, key, train.image_shape)
    ev.path = path
    return ev
