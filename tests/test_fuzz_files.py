"""Fuzzing every file format we read besides tar archives (those: tests/wsl_diffusion/data/test_tar.py):
label files (.npz, .csv), image files (dataset folders and `classify`), dataset .npz files and
checkpoints. Each example is a valid file with bytes flipped, cut or inserted (or free text for
CSV); reading it must give a clean ValueError (or FileNotFoundError) or a well-formed result,
never another exception and never a hang: every example runs under a wall-clock alarm.

A few hundred examples per format in the default suite; `-m slow` runs ten times as many.
"""
from __future__ import annotations

import io

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from time_limits import time_limit

from label_models.corruption import CorruptionSpec, corrupt
from label_models.io import load_labels, save_labels
from label_models.labels import ImpreciseLabels

EXAMPLE_SECONDS = 5.0
CLEAN_ERRORS = (ValueError, FileNotFoundError)


@st.composite
def mutations(draw, size: int):
    """A list of edits of a `size`-byte file: flip a byte, cut the tail, or insert bytes."""
    edits = []
    for _ in range(draw(st.integers(1, 4))):
        kind = draw(st.sampled_from(["flip", "cut", "insert"]))
        pos = draw(st.integers(0, max(size - 1, 0)))
        if kind == "flip":
            edits.append(("flip", pos, draw(st.integers(1, 255))))
        elif kind == "cut":
            edits.append(("cut", pos, 0))
        else:
            edits.append(("insert", pos, draw(st.binary(min_size=1, max_size=16))))
    return edits


def mutate(data: bytes, edits) -> bytes:
    out = bytearray(data)
    for kind, pos, arg in edits:
        pos = min(pos, max(len(out) - 1, 0))
        if kind == "flip" and out:
            out[pos] ^= arg
        elif kind == "cut":
            del out[pos:]
        elif kind == "insert":
            out[pos:pos] = arg
    return bytes(out)


@pytest.fixture(params=[1, pytest.param(10, marks=pytest.mark.slow)], ids=["default", "slow"])
def scale(request) -> int:
    """Examples multiplier: 1 in the default suite, 10 under `-m slow`."""
    return request.param


def fuzz_settings(examples: int):
    return settings(max_examples=examples, deadline=None, derandomize=True,
                    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])


def fuzz_file(valid: bytes, path, read, check, *, examples: int, seconds: float = EXAMPLE_SECONDS) -> None:
    """Write mutations of `valid` to `path`; read(path) must raise a clean error or return a
    result that passes check(result), within `seconds`."""
    @fuzz_settings(examples)
    @given(mutations(len(valid)))
    def run(edits):
        path.write_bytes(mutate(valid, edits))
        try:
            with time_limit(seconds):
                result = read(path)
        except CLEAN_ERRORS:
            return
        check(result)

    run()


def valid_label_bytes(tmp_path, suffix: str) -> bytes:
    labels = corrupt(np.arange(40) % 5, num_classes=5, spec=CorruptionSpec(supervision="partial", q=0.3, seed=0))
    path = tmp_path / f"valid{suffix}"
    save_labels(path, labels)
    return path.read_bytes()


def check_labels(labels) -> None:
    assert isinstance(labels, ImpreciseLabels)
    assert labels.matrix.shape == (labels.num_samples, 5)
    assert np.isfinite(labels.matrix).all()


def read_labels(path):
    return load_labels(path, num_classes=5)


# ---------------------------------------------------------------------------------------------
# Label files


@pytest.mark.parametrize("suffix", [".npz", ".csv"])
def test_mutated_label_files_load_or_fail_cleanly(scale, tmp_path, suffix):
    fuzz_file(valid_label_bytes(tmp_path, suffix), tmp_path / f"fuzzed{suffix}", read_labels, check_labels,
              examples=200 * scale)


CSV_TOKENS = st.sampled_from(["0", "1", "-1", "2.5", "nan", "inf", "1e999", "", " ", ",", "\n", "#", "# kind=partial",
                              "# num_classes=5", "# kind=noisy", "kind", "=", "\"", "'", "\t", "abc", "\x00", "é"])


def test_free_text_csv_label_files_load_or_fail_cleanly(scale, tmp_path):
    path = tmp_path / "text.csv"

    @fuzz_settings(200 * scale)
    @given(st.lists(CSV_TOKENS, max_size=60))
    def run(tokens):
        path.write_bytes("".join(tokens).encode("utf-8", "surrogatepass"))
        try:
            with time_limit(EXAMPLE_SECONDS):
                labels = read_labels(path)
        except CLEAN_ERRORS:
            return
        check_labels(labels)

    run()


# ---------------------------------------------------------------------------------------------
# Images and dataset files


def _png_bytes(seed: int, mode: str = "L") -> bytes:
    from PIL import Image

    arr = np.random.default_rng(seed).integers(0, 256, (8, 8) if mode == "L" else (8, 8, 3), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(arr, mode=mode).save(buf, format="PNG")
    return buf.getvalue()


def _jpeg_bytes(seed: int) -> bytes:
    from PIL import Image

    arr = np.random.default_rng(seed).integers(0, 256, (8, 8, 3), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="JPEG")
    return buf.getvalue()


@pytest.mark.parametrize("fmt", ["png", "jpeg"])
def test_mutated_images_in_a_dataset_folder_load_or_fail_cleanly(scale, tmp_path, fmt):
    """A folder dataset (train/test x two classes) whose first image is fuzzed."""
    from wsl_diffusion.data.sources import load_source

    valid = _png_bytes(0, "RGB") if fmt == "png" else _jpeg_bytes(0)
    root = tmp_path / "data"
    for split in ("train", "test"):
        for cls in ("a", "b"):
            (root / split / cls).mkdir(parents=True)
            (root / split / cls / f"x.{fmt}").write_bytes(valid)

    def check(splits):
        train, test = splits
        assert train.images.dtype == np.uint8 and train.images.ndim == 4 and len(train.images) == 2
        assert train.images.shape[1:] == test.images.shape[1:]

    fuzz_file(valid, root / "train" / "a" / f"x.{fmt}", lambda _: load_source(str(root)), check,
              examples=150 * scale)


def test_mutated_images_in_classify_are_read_or_refused_cleanly(scale, tmp_path):
    from cli.classify import read_image

    def check(result):
        arr, _ = result
        assert arr.shape == (8, 8, 1) and arr.dtype == np.uint8

    fuzz_file(_png_bytes(1), tmp_path / "x.png", lambda path: read_image(path, (1, 8, 8)), check,
              examples=150 * scale)


def test_mutated_dataset_npz_files_load_or_fail_cleanly(scale, tmp_path):
    from wsl_diffusion.data.sources import load_source

    rng = np.random.default_rng(0)
    buf = io.BytesIO()
    np.savez_compressed(buf, x_train=rng.integers(0, 256, (20, 8, 8), dtype=np.uint8), y_train=np.arange(20) % 2,
                        x_test=rng.integers(0, 256, (10, 8, 8), dtype=np.uint8), y_test=np.arange(10) % 2)
    def check(splits):
        train, _ = splits
        assert train.images.dtype == np.uint8 and len(train.images) == len(train.targets)

    fuzz_file(buf.getvalue(), tmp_path / "data.npz", lambda path: load_source(str(path)), check,
              examples=150 * scale)


# ---------------------------------------------------------------------------------------------
# Checkpoints


def test_mutated_checkpoints_load_or_fail_cleanly(scale, tiny_run, tmp_path):
    """torch.load(weights_only=True) of a damaged file, then the model built from it: a clean
    error or a model; never a pickle crash, a KeyError or a size-mismatch traceback."""
    from wsl_diffusion.run import CHECKPOINT_NAME, build_model_from, checkpoint_config, load_checkpoint

    def read(path):
        ckpt = load_checkpoint(path)
        return build_model_from(ckpt, checkpoint_config(ckpt, path), path, weights="ema")

    def check(net):
        assert isinstance(net, torch.nn.Module)

    fuzz_file((tiny_run / CHECKPOINT_NAME).read_bytes(), tmp_path / CHECKPOINT_NAME, read, check,
              examples=100 * scale, seconds=20.0)
