"""Images to and from disk: sample grids as PNG, sample sets as .npz (uint8 NHWC, the on-disk
convention, plus the class each image was conditioned on and a JSON meta record)."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from label_models.io import write_atomically

from wsl_diffusion.data.datasets import to_uint8


def image_grid(images: torch.Tensor, *, rows: int) -> np.ndarray:
    """(N, C, H, W) in [-1, 1] -> uint8 grid (rows*H, cols*W, C) with a 1-pixel gap."""
    n, c, h, w = images.shape
    cols = -(-n // rows)
    grid = np.zeros((rows * (h + 1) - 1, cols * (w + 1) - 1, c), dtype=np.uint8)
    imgs = ((images.clamp(-1, 1) + 1) * 127.5).round().byte().permute(0, 2, 3, 1).numpy()
    for idx in range(n):
        r, col = divmod(idx, cols)
        grid[r * (h + 1): r * (h + 1) + h, col * (w + 1): col * (w + 1) + w] = imgs[idx]
    return grid


def save_png(array_hwc: np.ndarray, path, *, upscale: int = 1) -> None:
    """Write a uint8 (H, W, C) array as PNG (C = 1 or 3), optionally enlarged by pixel repetition."""
    arr = array_hwc.repeat(upscale, 0).repeat(upscale, 1) if upscale > 1 else array_hwc
    img = Image.fromarray(arr[..., 0] if arr.shape[2] == 1 else arr)
    img.save(path)


def save_samples_npz(path, images: torch.Tensor, labels: torch.Tensor | np.ndarray, **meta) -> None:
    """Write samples atomically as .npz: `images` uint8 (N, H, W, C) (the on-disk convention),
    `labels` int64 (N,) (the class each image was conditioned on) and `meta_json` (a JSON string
    of `meta`: seed, solver, ...). images: float (N, C, H, W) in [-1, 1]."""
    arrays = {"images": to_uint8(images), "labels": np.asarray(labels, dtype=np.int64),
              "meta_json": np.array(json.dumps(meta, sort_keys=True))}
    if len(arrays["images"]) != len(arrays["labels"]):
        raise ValueError(f"{len(arrays['images'])} images but {len(arrays['labels'])} labels")
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    write_atomically(Path(path), lambda f: np.savez_compressed(f, **arrays))


def load_samples_npz(path) -> tuple[np.ndarray, np.ndarray, dict]:
    """(images uint8 (N, H, W, C), labels int64 (N,), meta dict) from `save_samples_npz`."""
    try:
        with np.load(path, allow_pickle=False) as data:
            return data["images"], data["labels"], json.loads(str(data["meta_json"])) if "meta_json" in data else {}
    except (OSError, ValueError, KeyError) as exc:
        raise ValueError(f"{path}: not a samples .npz ({type(exc).__name__}: {exc})") from None
