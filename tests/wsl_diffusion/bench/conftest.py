"""Fixtures of the benchmark tests: a small slice of digits."""
from __future__ import annotations

import pytest

from wsl_diffusion.data.datasets import ArrayDataset, load_digits_split


@pytest.fixture(scope="module")
def small_data():
    """200 training and 60 test images of digits."""
    train, test = load_digits_split()
    return (ArrayDataset(train.images[:200], train.targets[:200], train.class_names),
            ArrayDataset(test.images[:60], test.targets[:60], test.class_names))
