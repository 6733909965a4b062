"""Datasets as arrays: images uint8 NHWC on disk / float NCHW in [-1, 1] inside.

The embedded default is scikit-learn's digits (1797 grey 8x8 images, 10 classes) with a fixed
stratified 75/25 train/test split (seed 0), so every run and every number in this project refers
to the same split.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

DIGITS_SPLIT_SEED = 0
DIGITS_TEST_FRACTION = 0.25


@dataclass(frozen=True)
class ArrayDataset:
    """A labelled image split.

    images: (N, H, W, C) uint8, the on-disk convention.
    labels: (N,) int64 true class indices in [0, K).
    class_names: K names, index = class id.
    """

    images: np.ndarray
    labels: np.ndarray
    class_names: tuple[str, ...]

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def image_shape(self) -> tuple[int, int, int]:
        """(C, H, W) as the network sees it."""
        n, h, w, c = self.images.shape
        return (c, h, w)

    def __len__(self) -> int:
        return len(self.labels)


def load_digits_split() -> tuple[ArrayDataset, ArrayDataset]:
    """Return the fixed (train, test) split of sklearn digits as uint8 NHWC arrays.

    Digits pixels are integers 0..16; they are rescaled to 0..255 so that every dataset shares the
    uint8 convention (16 -> 255 exactly).
    """
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    bunch = load_digits()
    images = np.round(bunch.images * (255.0 / 16.0)).astype(np.uint8)[..., None]  # (N, 8, 8, 1)
    labels = bunch.target.astype(np.int64)
    idx_train, idx_test = train_test_split(
        np.arange(len(labels)),
        test_size=DIGITS_TEST_FRACTION,
        stratify=labels,
        random_state=DIGITS_SPLIT_SEED,
    )
    names = tuple(str(i) for i in range(10))
    return (
        ArrayDataset(images[idx_train], labels[idx_train], names),
        ArrayDataset(images[idx_test], labels[idx_test], names),
    )


def to_model_space(images_uint8: np.ndarray):
    """uint8 (N, H, W, C) -> float32 torch tensor (N, C, H, W) in [-1, 1]."""
    import torch

    x = torch.from_numpy(np.ascontiguousarray(images_uint8)).float()
    return (x / 127.5 - 1.0).permute(0, 3, 1, 2).contiguous()


def to_uint8(images) -> np.ndarray:
    """float tensor (N, C, H, W) in [-1, 1] -> uint8 (N, H, W, C), clipped."""
    import torch

    x = ((images.detach().float().cpu() + 1.0) * 127.5).round().clamp(0, 255)
    return x.permute(0, 2, 3, 1).to(torch.uint8).numpy()


DATASET_NAMES = ("digits",)


def load_dataset(name: str) -> tuple[ArrayDataset, ArrayDataset]:
    """(train, test) splits of a named dataset."""
    if name == "digits":
        return load_digits_split()
    raise ValueError(f"unknown dataset {name!r}; choose one of {', '.join(DATASET_NAMES)}")


def flat_features(data: ArrayDataset) -> np.ndarray:
    """(N, H*W*C) float pixels in [0, 1]: features for instance-dependent noise and sklearn baselines."""
    return data.images.reshape(len(data), -1).astype(np.float64) / 255.0


def targets_in_label_space(labels, true_labels: np.ndarray) -> np.ndarray:
    """Map true dataset classes into the class space of an imprecise label set.

    Identity except for positive-unlabelled labels, which are binary (1 = one of the positive
    classes recorded in the label set's meta, 0 = the rest).
    """
    if labels.kind == "pu":
        positives = labels.meta.get("positive_classes")
        if positives is None:
            raise ValueError("PU label set lacks meta['positive_classes']; cannot map test labels to it")
        return np.isin(true_labels, np.asarray(positives)).astype(np.int64)
    return np.asarray(true_labels, dtype=np.int64)
