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
    targets: (N,) int64 true class indices in [0, K) (named apart from an imprecise label set).
    class_names: K names, index = class id.
    """

    images: np.ndarray
    targets: np.ndarray
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
        return len(self.targets)


def load_digits_split() -> tuple[ArrayDataset, ArrayDataset]:
    """Return the fixed (train, test) split of sklearn digits as uint8 NHWC arrays.

    Digits pixels are integers 0..16; they are rescaled to 0..255 so that every dataset shares the
    uint8 convention (16 -> 255 exactly).
    """
    # Imported here: scikit-learn's import costs ~1 s and only the digits dataset needs it.
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
    import torch  # here: the dataset layer stays torch-free for `wsl-diff corrupt`

    x = torch.from_numpy(np.ascontiguousarray(images_uint8)).float()
    return (x / 127.5 - 1.0).permute(0, 3, 1, 2).contiguous()


def to_uint8(images) -> np.ndarray:
    """float tensor (N, C, H, W) in [-1, 1] -> uint8 (N, H, W, C), clipped."""
    import torch  # here: the dataset layer stays torch-free for `wsl-diff corrupt`

    x = ((images.detach().float().cpu() + 1.0) * 127.5).round().clamp(0, 255)
    return x.permute(0, 2, 3, 1).to(torch.uint8).numpy()


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


def check_subset(subset: int | None) -> int | None:
    """Validate a per-class cap: None or an integer >= 1."""
    if subset is None:
        return None
    if isinstance(subset, bool) or not isinstance(subset, (int, np.integer)) or subset < 1:
        raise ValueError(f"subset must be a whole number of images per class >= 1; got {subset!r}")
    return int(subset)


def cap_per_class(labels: np.ndarray, subset: int | None) -> np.ndarray:
    """Indices of the first `subset` samples of every class, in their original order."""
    labels = np.asarray(labels)
    if subset is None:
        return np.arange(len(labels))
    keep = np.zeros(len(labels), dtype=bool)
    for c in np.unique(labels):
        keep[np.flatnonzero(labels == c)[:subset]] = True
    return np.flatnonzero(keep)
