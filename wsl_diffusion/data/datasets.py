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


def load_dataset(
    name: str, *, subset: int | None = None, on_error: str = "raise"
) -> tuple[ArrayDataset, ArrayDataset]:
    """(train, test) splits of an embedded dataset (DATASET_NAMES) or of a path that
    `wsl_diffusion.data.sources.load_source` reads (image folder, .tar.gz of one, .npz, CIFAR-10 pickles).

    subset: keep at most this many images per class in each split (the first ones, in the split's
      fixed order); None keeps all.
    on_error: what an unreadable image file does: "raise" a ValueError or "skip" it (sources only).
    """
    from wsl_diffusion.data import sources

    if name == "digits":
        subset = sources.check_subset(subset)
        if on_error not in sources.ON_ERROR_CHOICES:
            raise ValueError(f"on_error must be one of {', '.join(sources.ON_ERROR_CHOICES)}; got {on_error!r}")
        train, test = load_digits_split()
        if subset is None:
            return train, test
        keep_train = sources.cap_per_class(train.targets, subset)
        keep_test = sources.cap_per_class(test.targets, subset)
        return (ArrayDataset(train.images[keep_train], train.targets[keep_train], train.class_names),
                ArrayDataset(test.images[keep_test], test.targets[keep_test], test.class_names))
    return sources.load_source(name, subset=subset, on_error=on_error)


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
