"""Dataset sources: image folders, tarballs of them, .npz arrays and CIFAR-10 pickles all load into
the same (train, test) ArrayDataset convention, with one-line errors for bad inputs."""
from __future__ import annotations

import pickle
import tarfile
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from wsl_diffusion.data.datasets import ArrayDataset
from wsl_diffusion.data.sources import load_dataset
from wsl_diffusion.data.sources import CIFAR10_CLASS_NAMES, dataset_tag, load_source, split_positions

torch.set_num_threads(1)

CIFAR_TARBALL = Path(__file__).resolve().parents[3].parent / "shared" / "data" / "cifar10-jpeg.tar.gz"


def grey(value: int, size=(6, 5)) -> np.ndarray:
    """A (H, W) grey image whose pixels encode `value` (and position, so transposes show)."""
    h, w = size
    return ((np.arange(h * w).reshape(h, w) + 7 * value) % 256).astype(np.uint8)


def colour(value: int, size=(6, 5)) -> np.ndarray:
    g = grey(value, size)
    return np.stack([g, 255 - g, np.full_like(g, value % 256)], axis=-1)  # (H, W, 3)


def write_folder(root: Path, counts: dict[str, dict[str, int]], *, make=grey, suffix=".png") -> dict:
    """root/<split>/<class>/<i>.png with image make(id); returns {(split, class): [arrays]}."""
    written, uid = {}, 0
    for split, classes in counts.items():
        for cls, n in classes.items():
            (root / split / cls).mkdir(parents=True, exist_ok=True)
            for i in range(n):
                arr = make(uid)
                Image.fromarray(arr).save(root / split / cls / f"{i:03d}{suffix}")
                written.setdefault((split, cls), []).append(arr)
                uid += 1
    return written


def expected_arrays(written: dict, split: str, names: tuple[str, ...]) -> np.ndarray:
    arrays = [a for cls in names for a in written[(split, cls)]]
    return np.stack([a[..., None] if a.ndim == 2 else a for a in arrays])


TWO_SPLITS = {"train": {"dog": 3, "cat": 4, "ant": 2}, "test": {"dog": 1, "cat": 2, "ant": 1}}


def test_grey_png_folder_keeps_pixels_order_and_class_names(tmp_path):
    written = write_folder(tmp_path, TWO_SPLITS)
    train, test = load_source(str(tmp_path))
    assert isinstance(train, ArrayDataset)
    assert train.class_names == test.class_names == ("ant", "cat", "dog")  # sorted folder names
    assert train.images.dtype == np.uint8 and train.images.shape == (9, 6, 5, 1) and test.images.shape == (4, 6, 5, 1)
    assert train.targets.dtype == np.int64 and train.targets.tolist() == [0, 0, 1, 1, 1, 1, 2, 2, 2]
    np.testing.assert_array_equal(train.images, expected_arrays(written, "train", train.class_names))
    np.testing.assert_array_equal(test.images, expected_arrays(written, "test", test.class_names))
    assert train.notes == () and train.skipped == ()


def test_jpeg_rgb_folder_gives_three_channels(tmp_path):
    write_folder(tmp_path, TWO_SPLITS, make=colour, suffix=".jpg")
    train, test = load_source(str(tmp_path))
    assert train.images.shape == (9, 6, 5, 3) and test.image_shape == (3, 6, 5)


def test_grey_and_colour_mixed_become_rgb(tmp_path):
    write_folder(tmp_path, {"train": {"a": 2, "b": 2}})
    Image.fromarray(colour(1)).save(tmp_path / "train" / "b" / "zzz.png")
    Image.fromarray(colour(2)).convert("P").save(tmp_path / "train" / "a" / "p.png")  # palette
    Image.fromarray(colour(3)).convert("RGBA").save(tmp_path / "train" / "a" / "rgba.png")
    train, test = load_source(str(tmp_path))
    assert train.images.shape[-1] == test.images.shape[-1] == 3
    images = np.concatenate([train.images, test.images])
    labels = np.concatenate([train.targets, test.targets])
    # The grey images come back with three equal channels.
    greys = [im for im in images if (im[..., 0] == im[..., 1]).all() and (im[..., 1] == im[..., 2]).all()]
    assert len(greys) == 4 and len(images) == 7 and np.bincount(labels).tolist() == [4, 3]


def test_missing_test_folder_makes_a_fixed_stratified_80_20_split(tmp_path):
    write_folder(tmp_path, {"train": {"a": 10, "b": 5, "c": 2}})
    train, test = load_source(str(tmp_path))
    assert np.bincount(train.targets).tolist() == [8, 4, 1] and np.bincount(test.targets).tolist() == [2, 1, 1]
    assert "no test split" in train.notes[0] and "80/20" in train.notes[0]
    # Disjoint and together the whole folder: no image in both splits.
    rows = {im.tobytes() for im in np.concatenate([train.images, test.images])}
    assert len(rows) == 17
    again_train, again_test = load_source(str(tmp_path))
    np.testing.assert_array_equal(train.images, again_train.images)
    np.testing.assert_array_equal(test.images, again_test.images)
    tr, te = split_positions(10, 0)
    assert len(te) == 2 and sorted([*tr, *te]) == list(range(10))


def test_subset_keeps_the_first_files_of_each_class(tmp_path):
    written = write_folder(tmp_path, TWO_SPLITS)
    train, test = load_source(str(tmp_path), subset=2)
    assert np.bincount(train.targets).tolist() == [2, 2, 2] and np.bincount(test.targets).tolist() == [1, 2, 1]
    np.testing.assert_array_equal(train.images[2, ..., 0], written[("train", "cat")][0])  # cat/000.png
    np.testing.assert_array_equal(train.images[3, ..., 0], written[("train", "cat")][1])


def make_tar(folder: Path, out: Path, *, top: str | None, fmt=tarfile.PAX_FORMAT) -> Path:
    with tarfile.open(out, "w:gz" if out.name.endswith("gz") else "w", format=fmt) as tar:
        for split in sorted(p for p in folder.iterdir() if p.is_dir()):
            tar.add(split, arcname=f"{top}/{split.name}" if top else split.name)
    return out


@pytest.mark.parametrize("top, fmt, name", [(None, tarfile.PAX_FORMAT, "d.tar.gz"),
                                            ("mydata", tarfile.GNU_FORMAT, "d.tgz"),
                                            ("x" * 120, tarfile.USTAR_FORMAT, "d.tar")])
def test_tarball_reads_like_the_folder(tmp_path, top, fmt, name):
    folder = tmp_path / "folder"
    write_folder(folder, TWO_SPLITS)
    if fmt == tarfile.GNU_FORMAT:  # a name over 100 characters needs a GNU long-name record
        long_name = "n" * 150 + ".png"
        Image.fromarray(grey(99)).save(folder / "train" / "dog" / long_name)
    if fmt == tarfile.PAX_FORMAT:  # a non-ASCII name is stored in a pax 'path' record
        Image.fromarray(grey(98)).save(folder / "train" / "dog" / "\u00e9t\u00e9.png")
    archive = make_tar(folder, tmp_path / name, top=top, fmt=fmt)
    train, test = load_source(str(archive))
    ref_train, ref_test = load_source(str(folder))
    assert train.class_names == ref_train.class_names
    np.testing.assert_array_equal(train.images, ref_train.images)
    np.testing.assert_array_equal(train.targets, ref_train.targets)
    np.testing.assert_array_equal(test.images, ref_test.images)
    sub_train, _ = load_source(str(archive), subset=1)
    np.testing.assert_array_equal(sub_train.images, load_source(str(folder), subset=1)[0].images)


def test_tarball_without_test_split_and_with_subset(tmp_path):
    folder = tmp_path / "folder"
    write_folder(folder, {"train": {"a": 10, "b": 10}})
    archive = make_tar(folder, tmp_path / "d.tar.gz", top="top")
    train, test = load_source(str(archive), subset=3)
    ref_train, ref_test = load_source(str(folder), subset=3)
    np.testing.assert_array_equal(train.images, ref_train.images)
    np.testing.assert_array_equal(test.images, ref_test.images)
    assert np.bincount(train.targets).tolist() == [3, 3] and np.bincount(test.targets).tolist() == [2, 2]
    assert train.notes


def test_tarball_errors(tmp_path):
    folder = tmp_path / "folder"
    write_folder(folder, {"train": {"a": 2}})
    (folder / "train" / "empty").mkdir()
    with pytest.raises(ValueError, match=r"train/empty/ has no \.png/\.jpg/\.jpeg images"):
        load_source(str(make_tar(folder, tmp_path / "e.tar.gz", top=None)))
    (tmp_path / "junk.tar.gz").write_bytes(b"\x1f\x8b not really gzip")
    with pytest.raises(ValueError, match="cannot read archive"):
        load_source(str(tmp_path / "junk.tar.gz"))
    (tmp_path / "plain.tar").write_bytes(b"hello" * 200)
    with pytest.raises(ValueError, match="not a tar archive"):
        load_source(str(tmp_path / "plain.tar"))


def test_npz_with_and_without_test_arrays(tmp_path):
    images = np.stack([grey(i, (4, 4)) for i in range(20)])  # (N, H, W): grey
    labels = np.repeat(np.arange(2), 10)
    np.savez(tmp_path / "a.npz", images=images, labels=labels, class_names=np.array(["neg", "pos"]))
    train, test = load_source(str(tmp_path / "a.npz"))
    assert train.class_names == ("neg", "pos") and train.images.shape == (16, 4, 4, 1) and len(test) == 4
    assert train.notes and np.bincount(test.targets).tolist() == [2, 2]

    rgb = np.stack([colour(i, (4, 4)) for i in range(6)])
    np.savez(tmp_path / "b.npz", images=rgb, labels=np.array([0, 1, 2, 0, 1, 2]),
             test_images=rgb[:3], test_labels=np.array([2, 1, 0]))
    train, test = load_source(str(tmp_path / "b.npz"), subset=1)
    assert train.class_names == ("0", "1", "2") and train.notes == ()
    np.testing.assert_array_equal(train.images, rgb[:3])
    np.testing.assert_array_equal(test.targets, [2, 1, 0])


@pytest.mark.parametrize("arrays, message", [
    ({"images": np.zeros((2, 4, 4), np.uint8)}, "no 'labels' array"),
    ({"images": np.zeros((2, 4, 4), np.float32), "labels": np.array([0, 1])}, "must be uint8"),
    ({"images": np.zeros((2, 3, 4, 4), np.uint8), "labels": np.array([0, 1])}, "channels-first"),
    ({"images": np.zeros((2, 4, 4), np.uint8), "labels": np.array([0, 1, 1])}, "2 integer class indices"),
    ({"images": np.zeros((2, 4, 4), np.uint8), "labels": np.array([0, 1]), "test_images": np.zeros((1, 5, 4), np.uint8),
      "test_labels": np.array([0])}, "one image size"),
])
def test_npz_errors(tmp_path, arrays, message):
    np.savez(tmp_path / "bad.npz", **arrays)
    with pytest.raises(ValueError, match=message):
        load_source(str(tmp_path / "bad.npz"))


def write_cifar_pickles(folder: Path, per_batch: int = 6) -> np.ndarray:
    """Fake CIFAR-10 python batches; returns the (N, 32, 32, 3) training images they hold."""
    folder.mkdir()
    rng = np.random.default_rng(0)
    train = []
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        hwc = rng.integers(0, 256, (per_batch, 32, 32, 3), dtype=np.uint8)
        data = hwc.transpose(0, 3, 1, 2).reshape(per_batch, 3072)  # rows: R plane, G plane, B plane
        labels = [int(v) for v in rng.integers(0, 10, per_batch)]
        (folder / name).write_bytes(pickle.dumps({b"batch_label": name.encode(), b"data": data, b"labels": labels}))
        if name != "test_batch":
            train.append((hwc, labels))
    meta = {b"label_names": [n.encode() for n in CIFAR10_CLASS_NAMES], b"num_vis": 3072}
    (folder / "batches.meta").write_bytes(pickle.dumps(meta))
    return np.concatenate([h for h, _ in train]), np.concatenate([l for _, l in train])


def test_cifar_pickle_folder(tmp_path):
    images, labels = write_cifar_pickles(tmp_path / "cifar")
    train, test = load_source(str(tmp_path / "cifar"))
    assert train.class_names == CIFAR10_CLASS_NAMES and dataset_tag("x/cifar", train.class_names) == "cifar10"
    np.testing.assert_array_equal(train.images, images)
    np.testing.assert_array_equal(train.targets, labels)
    assert test.images.shape == (6, 32, 32, 3)
    sub, _ = load_source(str(tmp_path / "cifar"), subset=1)
    assert np.bincount(sub.targets).max() == 1 and len(sub) == len(np.unique(labels))


def test_cifar_pickle_loader_refuses_code(tmp_path):
    write_cifar_pickles(tmp_path / "cifar")

    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    (tmp_path / "cifar" / "test_batch").write_bytes(pickle.dumps({b"data": Evil()}))
    with pytest.raises(ValueError, match="refusing to load builtins.print"):
        load_source(str(tmp_path / "cifar"))


def test_mixed_sizes_is_one_line_error_naming_a_file(tmp_path):
    write_folder(tmp_path, {"train": {"a": 2, "b": 2}})
    Image.fromarray(grey(0, (7, 5))).save(tmp_path / "train" / "b" / "big.png")
    with pytest.raises(ValueError) as err:
        load_source(str(tmp_path))
    msg = str(err.value)
    assert "\n" not in msg and "big.png is 7x5" in msg and "is 6x5" in msg


def test_unreadable_image_raise_or_skip(tmp_path):
    write_folder(tmp_path, TWO_SPLITS)
    bad = tmp_path / "train" / "cat" / "001.png"
    bad.write_bytes(b"not a png")
    with pytest.raises(ValueError, match=r"cannot read image .*001\.png.*--on-bad-image skip"):
        load_source(str(tmp_path))
    with pytest.warns(UserWarning, match="skipped 1 unreadable image"):
        train, test = load_source(str(tmp_path), on_error="skip")
    assert train.skipped == (str(bad),) and test.skipped == ()
    assert np.bincount(train.targets).tolist() == [2, 3, 3]
    with pytest.raises(ValueError, match="on_error must be one of raise, skip"):
        load_source(str(tmp_path), on_error="ignore")


@pytest.mark.parametrize("make, message", [
    (lambda r: (r / "train").mkdir(), r"no class folders in .*train/; expected ROOT/train/<class>/"),
    (lambda r: (r / "other").mkdir(), "neither a train/ folder nor CIFAR-10 batches"),
    (lambda r: (write_folder(r, {"train": {"a": 2}}), (r / "train" / "b").mkdir()), r"train/b/ has no .png"),
    (lambda r: write_folder(r, {"train": {"a": 2, "b": 1}, "test": {"a": 1, "c": 1}}),
     r"missing in test: \['b'\], only in test: \['c'\]"),
])
def test_bad_folders(tmp_path, make, message):
    root = tmp_path / "root"
    root.mkdir()
    make(root)
    with pytest.raises(ValueError, match=message) as err:
        load_source(str(root))
    assert "\n" not in str(err.value)


def test_unknown_specs(tmp_path):
    with pytest.raises(ValueError, match="no such dataset 'nope'; give digits, an image folder, a .tar.gz of one"):
        load_source("nope")
    (tmp_path / "x.csv").write_text("a")
    with pytest.raises(ValueError, match="don't know how to read"):
        load_source(str(tmp_path / "x.csv"))
    with pytest.raises(ValueError, match="subset must be"):
        load_source(str(tmp_path), subset=0)


def test_load_dataset_digits_subset_and_paths(tmp_path):
    train, test = load_dataset("digits", subset=5)
    assert np.bincount(train.targets).tolist() == [5] * 10 and np.bincount(test.targets).tolist() == [5] * 10
    full_train, _ = load_dataset("digits")
    np.testing.assert_array_equal(train.images[train.targets == 3], full_train.images[full_train.targets == 3][:5])
    write_folder(tmp_path, TWO_SPLITS)
    assert load_dataset(str(tmp_path), subset=1)[0].targets.tolist() == [0, 1, 2]
    assert dataset_tag(str(tmp_path / "my.tar.gz"), ("a", "b")) == "my" and dataset_tag("digits", ()) == "digits"


def test_real_cifar10_tarball_subset():
    if not CIFAR_TARBALL.is_file():
        pytest.skip(f"{CIFAR_TARBALL} not present")
    train, test = load_source(str(CIFAR_TARBALL), subset=2)
    assert train.images.shape == (20, 32, 32, 3) and test.images.shape == (20, 32, 32, 3)
    assert train.class_names == CIFAR10_CLASS_NAMES and len(train.class_names) == 10
    assert np.bincount(train.targets, minlength=10).tolist() == [2] * 10
    assert train.targets.min() >= 0 and train.targets.max() < 10 and train.notes == ()
    assert train.images.std() > 10  # real photos, not blank decodes
