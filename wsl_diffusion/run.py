"""Atomic checkpoints: state_dicts + the run's config JSON, loaded with weights_only=True.

A checkpoint is written to a temporary file in the same folder, flushed and fsync'ed, then moved
over the old one with os.replace — a crash mid-write leaves the previous checkpoint intact.
"""
from __future__ import annotations

import json
from pathlib import Path

import torch

from label_models.io import write_atomically

CHECKPOINT_NAME = "checkpoint.pt"
CONFIG_NAME = "config.json"


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


def save_config(run_dir: Path, config: dict) -> None:
    atomic_write_text(Path(run_dir) / CONFIG_NAME, json.dumps(config, indent=2, sort_keys=True) + "\n")
