"""Dataset sources besides the embedded digits: image folders, tarballs of them, .npz arrays and
the CIFAR-10 python-pickle batches, all loaded into (train, test) :class:`ArrayDataset` pairs.

One entry point, :func:`load_source`, decides from the spec what it is:

    ROOT/                      image folder: ROOT/train/<class>/*.png|jpg|jpeg, optional ROOT/test/<class>/
    DATA.tar.gz | .tgz | .tar  the same folder packed (optionally under one top-level directory),
                               read in one streaming pass without unpacking to disk
    DATA.npz                   images (N, H, W[, C]) uint8 + labels (N,), optional test_images /
                               test_labels / class_names
    DIR/ with data_batch_1     CIFAR-10 python batches (data_batch_1..5, test_batch, batches.meta)

Conventions shared by every source (so that a spec names one split everywhere):
- class names are the sorted class-folder names (folders/tarballs), ``class_names`` (npz),
  ``batches.meta`` (CIFAR); class index = position in that tuple;
- images of a class are ordered by file name (folders/tarballs) or by array order (npz, CIFAR),
  and the splits keep that order, class by class;
- without a test split, each class is split 80/20 by a permutation drawn from
  ``numpy.random.default_rng([SPLIT_SEED, class_index])`` -- fixed, stratified, and a class's
  split does not depend on the other classes -- and the returned datasets carry a note saying so;
- ``subset=n`` keeps the first n images of every class in each split (after the split), for
  CPU-sized runs;
- one dataset has one image size; grey images give C=1, colour C=3, and a mixture is all
  converted to RGB (grey replicated), palette/RGBA/CMYK images are converted to RGB;
- every user-fixable problem is a one-line ``ValueError`` that says what to do.
"""
from __future__ import annotations

import io
import pickle
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Union

import numpy as np
from PIL import Image

from wsl_diffusion.data.datasets import ArrayDataset, cap_per_class, check_subset, load_digits_split
from wsl_diffusion.data.tar import open_stream, walk_tar

SPLIT_SEED = 0
TEST_FRACTION = 0.2
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
ON_ERROR_CHOICES = ("raise", "skip")
SPLITS = ("train", "test")
TAR_SUFFIXES = (".tar.gz", ".tgz", ".tar")
CIFAR10_CLASS_NAMES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
CIFAR_TRAIN_BATCHES = tuple(f"data_batch_{i}" for i in range(1, 6))
CIFAR_FILES = (*CIFAR_TRAIN_BATCHES, "test_batch", "batches.meta")
ACCEPTED_FORMS = "digits, an image folder, a .tar.gz of one, an .npz or a CIFAR-10 pickle folder"
FOLDER_LAYOUT = "ROOT/train/<class>/*.png|jpg|jpeg (and optionally ROOT/test/<class>/...)"

# Where an image's bytes come from: a file on disk or bytes already read from an archive.
_Blob = Union[Path, bytes]


@dataclass(frozen=True)
class SourceDataset(ArrayDataset):
    """An :class:`ArrayDataset` loaded by :func:`load_source`, plus where it came from.

    source: the spec it was loaded from.
    skipped: paths of unreadable images left out (only with ``on_error="skip"``).
    notes: human-readable remarks about how the split was made (e.g. an automatic 80/20 split).
    """

    source: str = ""
    skipped: tuple[str, ...] = ()
    notes: tuple[str, ...] = ()


# ----------------------------------------------------------------------------- entry point
def load_source(
    spec: str, *, subset: int | None = None, on_error: str = "raise"
) -> tuple[SourceDataset, SourceDataset]:
    """Load (train, test) from an image folder, a tarball of one, an .npz or CIFAR-10 pickles.

    subset: keep at most this many images per class in each split (the first ones in the
      source's fixed order); None keeps everything.
    on_error: "raise" (a ValueError naming the unreadable image) or "skip" (leave it out, list it
      in ``.skipped`` and warn once).
    Returns datasets with images (N, H, W, C) uint8 and labels (N,) int64.
    """
    subset = check_subset(subset)
    if on_error not in ON_ERROR_CHOICES:
        raise ValueError(f"on_error must be one of {', '.join(ON_ERROR_CHOICES)}; got {on_error!r}")
    path = Path(spec).expanduser()
    if not path.exists():
        raise ValueError(f"no such dataset {spec!r}; give {ACCEPTED_FORMS}")
    if path.is_dir():
        if (path / "train").is_dir():
            return _load_folder(path, spec, subset=subset, on_error=on_error)
        for cand in (path, path / "cifar-10-batches-py"):
            if (cand / "data_batch_1").is_file():
                return _load_cifar_pickles(cand, spec, subset=subset)
        raise ValueError(f"{spec} has neither a train/ folder nor CIFAR-10 batches (data_batch_1); "
                         f"expected {FOLDER_LAYOUT}")
    name = path.name.lower()
    if name.endswith(TAR_SUFFIXES):
        return _load_tar(path, spec, subset=subset, on_error=on_error)
    if name.endswith(".npz"):
        return _load_npz(path, spec, subset=subset)
    raise ValueError(f"don't know how to read {spec!r}; give {ACCEPTED_FORMS} (image folder layout: "
                     f"{FOLDER_LAYOUT})")


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
    if name == "digits":
        subset = check_subset(subset)
        if on_error not in ON_ERROR_CHOICES:
            raise ValueError(f"on_error must be one of {', '.join(ON_ERROR_CHOICES)}; got {on_error!r}")
        train, test = load_digits_split()
        if subset is None:
            return train, test
        keep_train = cap_per_class(train.targets, subset)
        keep_test = cap_per_class(test.targets, subset)
        return (ArrayDataset(train.images[keep_train], train.targets[keep_train], train.class_names),
                ArrayDataset(test.images[keep_test], test.targets[keep_test], test.class_names))
    return load_source(name, subset=subset, on_error=on_error)


def dataset_tag(spec: str, class_names: Sequence[str]) -> str:
    """A short name for a dataset spec, as label files record it and the asymmetric class map is
    looked up by: "cifar10" whenever the classes are CIFAR-10's, else the spec's base name with
    archive suffixes stripped ("digits" stays "digits")."""
    if tuple(class_names) == CIFAR10_CLASS_NAMES:
        return "cifar10"
    name = Path(spec).name or str(spec)
    for suffix in (*TAR_SUFFIXES, ".npz"):
        if name.lower().endswith(suffix) and len(name) > len(suffix):
            return name[: -len(suffix)]
    return name


def split_positions(n: int, class_index: int) -> tuple[np.ndarray, np.ndarray]:
    """The fixed 80/20 split of one class of n images: sorted (train, test) positions in 0..n-1.

    At least one image stays in train; a class of >= 2 images puts at least one in test.
    """
    n_test = int(round(n * TEST_FRACTION))
    if n >= 2:
        n_test = min(max(n_test, 1), n - 1)
    else:
        n_test = 0
    perm = np.random.default_rng([SPLIT_SEED, class_index]).permutation(n)
    return np.sort(perm[n_test:]), np.sort(perm[:n_test])


def _split_note(spec: str) -> str:
    return (f"{spec} has no test split: made a fixed stratified {round(100 * (1 - TEST_FRACTION))}/"
            f"{round(100 * TEST_FRACTION)} train/test split per class (seed {SPLIT_SEED})")


def _make_pair(spec: str, train: tuple, test: tuple, names: tuple[str, ...], notes: Sequence[str] = (),
               skipped: tuple[Sequence[str], Sequence[str]] = ((), ())) -> tuple[SourceDataset, SourceDataset]:
    out = []
    for (images, labels), skip in zip((train, test), skipped):
        out.append(SourceDataset(images, np.asarray(labels, dtype=np.int64), names, source=str(spec),
                                 skipped=tuple(skip), notes=tuple(notes)))
    return out[0], out[1]


# ----------------------------------------------------------------------------- image decoding
def _decode(blob: _Blob) -> np.ndarray:
    """One image file -> (H, W) uint8 for grey or (H, W, 3) uint8 for colour."""
    with Image.open(io.BytesIO(blob) if isinstance(blob, bytes) else blob) as im:
        im.load()
        mode = im.mode
        if mode in ("L", "RGB"):
            return np.asarray(im)
        if mode in ("1", "LA"):
            return np.asarray(im.convert("L"))
        if mode.startswith("I;16") or mode == "I":  # 16-bit grey: 0..65535 -> 0..255
            wide = np.asarray(im, dtype=np.float64)
            return np.clip(np.round(wide / 257.0), 0, 255).astype(np.uint8)
        if mode == "F":
            raise ValueError("floating-point images are not supported; save it as 8-bit")
        return np.asarray(im.convert("RGB"))  # P, PA, RGBA, CMYK, YCbCr, ...


def _decode_splits(
    entries: dict[str, list[tuple[int, str, _Blob]]], *, on_error: str
) -> tuple[dict[str, tuple[np.ndarray, np.ndarray]], dict[str, list[str]]]:
    """Decode the (label, display path, blob) entries of every split into one shared format.

    All splits must share one (H, W); if any image is colour, grey ones are replicated to RGB.
    Returns {split: (images (N, H, W, C) uint8, labels (N,))} and {split: skipped paths}.
    """
    first: tuple[str, tuple[int, int]] | None = None  # (path, (H, W)) of the first decoded image
    decoded: dict[str, list[tuple[int, np.ndarray]]] = {}
    skipped: dict[str, list[str]] = {}
    any_colour = False
    for split, items in entries.items():
        decoded[split], skipped[split] = [], []
        for label, shown, blob in items:
            try:
                arr = _decode(blob)
            except Exception as exc:  # PIL raises OSError, SyntaxError, ValueError, ... on bad files
                if on_error == "skip":
                    skipped[split].append(shown)
                    continue
                reason = " ".join(str(exc).split()) or type(exc).__name__
                raise ValueError(f"cannot read image {shown}: {reason}; fix or delete it, "
                                 f"or pass --on-bad-image skip to leave unreadable images out") from None
            size = (int(arr.shape[0]), int(arr.shape[1]))
            if first is None:
                first = (shown, size)
            elif size != first[1]:
                raise ValueError(
                    f"images differ in size: {shown} is {size[0]}x{size[1]} but {first[0]} is "
                    f"{first[1][0]}x{first[1][1]} (HxW); resize all images of a dataset to one size")
            any_colour |= arr.ndim == 3
            decoded[split].append((label, arr))
    if first is None:
        raise ValueError("no readable images found; check the files (every one was skipped as unreadable)")
    h, w = first[1]
    channels = 3 if any_colour else 1
    out = {}
    for split, items in decoded.items():
        images = np.empty((len(items), h, w, channels), dtype=np.uint8)
        for i, (_, arr) in enumerate(items):
            images[i] = arr[..., None] if arr.ndim == 2 else arr  # (H, W) broadcasts over C
        out[split] = (images, np.array([label for label, _ in items], dtype=np.int64))
    n_skipped = sum(len(s) for s in skipped.values())
    if n_skipped:
        paths = [p for s in skipped.values() for p in s]
        more = f" and {n_skipped - 3} more" if n_skipped > 3 else ""
        warnings.warn(f"skipped {n_skipped} unreadable image(s): {', '.join(paths[:3])}{more}", stacklevel=3)
    return out, skipped


# ----------------------------------------------------------------------------- file layouts
# A split as found on disk or in an archive: class name -> [(file name, display path, blob)].
_Listing = dict[str, list[tuple[str, str, _Blob]]]


def _assemble(
    spec: str, train: _Listing, test: _Listing | None, *, where: str, subset: int | None, on_error: str
) -> tuple[SourceDataset, SourceDataset]:
    """Turn per-class file listings into datasets: check classes, split, cap, decode.

    where: how to name the train/ and test/ folders in messages, e.g. "data/" or "data.tar.gz:top/".
    """
    names = tuple(sorted(train))
    if not names:
        raise ValueError(f"no class folders in {where}train/; expected {FOLDER_LAYOUT}")
    for split, listing in (("train", train), ("test", test or {})):
        for cls, files in listing.items():
            if not files:
                raise ValueError(f"class folder {where}{split}/{cls}/ has no .png/.jpg/.jpeg images; "
                                 "add images or remove the folder")
    notes: list[str] = []
    if test is None:
        notes.append(_split_note(spec))
        test = {}
        for k, cls in enumerate(names):
            files = sorted(train[cls], key=lambda f: f[0])
            tr, te = split_positions(len(files), k)
            train[cls], test[cls] = [files[i] for i in tr], [files[i] for i in te]
    elif set(test) != set(train):
        missing, extra = sorted(set(train) - set(test)), sorted(set(test) - set(train))
        raise ValueError(f"{where}test/ must have the same class folders as {where}train/ "
                         f"(missing in test: {missing or 'none'}, only in test: {extra or 'none'}); "
                         "rename or add folders so they match")
    entries = {}
    for split, listing in (("train", train), ("test", test)):
        entries[split] = [(k, shown, blob) for k, cls in enumerate(names)
                          for _, shown, blob in sorted(listing.get(cls, []), key=lambda f: f[0])[:subset]]
    arrays, skipped = _decode_splits(entries, on_error=on_error)
    return _make_pair(spec, arrays["train"], arrays["test"], names, notes,
                      (skipped["train"], skipped["test"]))


def _is_image_name(name: str) -> bool:
    return not name.startswith(".") and name.lower().endswith(IMAGE_SUFFIXES)


def _list_folder_split(split_dir: Path) -> _Listing:
    listing: _Listing = {}
    for cls_dir in sorted(p for p in split_dir.iterdir() if p.is_dir() and not p.name.startswith(".")):
        listing[cls_dir.name] = [(f.name, str(f), f) for f in cls_dir.iterdir()
                                 if f.is_file() and _is_image_name(f.name)]
    return listing


def _load_folder(root: Path, spec: str, *, subset: int | None, on_error: str):
    train = _list_folder_split(root / "train")
    test = _list_folder_split(root / "test") if (root / "test").is_dir() else None
    return _assemble(spec, train, test, where=f"{root}/", subset=subset, on_error=on_error)


def _load_tar(path: Path, spec: str, *, subset: int | None, on_error: str):
    """One streaming pass over the archive: keep the raw bytes of the images that can still be
    selected, decode only the final selection.

    A member <prefix>/<split>/<class>/<file> counts when <split> is train or test; <prefix> is
    whatever lies above (nothing, or one top-level directory) and must be the same for all.
    With `subset`, a class keeps only its `subset` first file names once it is known that a test
    split exists (before that, the 80/20 split may still need every train image).
    """
    buckets: dict[tuple[str, str, str], list[tuple[str, str, _Blob]]] = {}  # (prefix, split, class)
    with_test: set[str] = set()  # prefixes that have a test split
    pickles: dict[str, bytes] = {}  # CIFAR-10 python batches, if that is what the archive holds
    try:
        with open_stream(path) as stream:
            for member, kind, data in walk_tar(stream):
                parts = [p for p in member.split("/") if p not in ("", ".")]
                if kind == "dir" and len(parts) >= 2 and parts[-2] in SPLITS:
                    # A class folder, registered so that an empty one can be reported.
                    buckets.setdefault(("/".join(parts[:-2]), parts[-2], parts[-1]), [])
                    continue
                if kind != "file" or not parts:
                    continue
                if len(parts) >= 3 and parts[-3] in SPLITS and _is_image_name(parts[-1]):
                    prefix, split, cls = "/".join(parts[:-3]), parts[-3], parts[-2]
                    bucket = buckets.setdefault((prefix, split, cls), [])
                    bucket.append((parts[-1], f"{spec}:{member}", data))
                    if split == "test":
                        with_test.add(prefix)
                    if subset is not None and prefix in with_test and len(bucket) > 2 * subset:
                        bucket.sort(key=lambda f: f[0])
                        del bucket[subset:]
                elif parts[-1] in CIFAR_FILES:
                    pickles[parts[-1]] = data
    except (EOFError, OSError) as exc:  # a net: walk_tar reports a bad archive as a ValueError naming it
        raise ValueError(f"cannot read archive {spec}: {' '.join(str(exc).split())}; "
                         "is it a complete .tar/.tar.gz file?") from None
    roots = sorted({prefix for prefix, split, _ in buckets if split == "train"})
    if not roots:
        if "data_batch_1" in pickles:
            return _cifar_from_blobs(pickles, spec, subset=subset)
        raise ValueError(f"no train/<class>/ images in {spec}; expected an archive of "
                         f"{FOLDER_LAYOUT}, optionally under one top-level directory")
    if len(roots) > 1:
        raise ValueError(f"{spec} holds several train/ folders ({', '.join(r or '.' for r in roots)}); "
                         "pack one dataset per archive")
    root = roots[0]
    listings: dict[str, _Listing] = {split: {} for split in SPLITS}
    for (prefix, split, cls), files in buckets.items():
        if prefix == root:
            listings[split][cls] = files
    has_test = bool(listings["test"]) or root in with_test
    where = f"{spec}:{root + '/' if root else ''}"
    return _assemble(spec, listings["train"], listings["test"] if has_test else None, where=where,
                     subset=subset, on_error=on_error)


# ----------------------------------------------------------------------------- arrays
def _split_arrays(images: np.ndarray, labels: np.ndarray, num_classes: int):
    """The fixed per-class 80/20 split of arrays: (train_idx, test_idx), each in array order."""
    train_idx, test_idx = [], []
    for c in range(num_classes):
        members = np.flatnonzero(labels == c)
        tr, te = split_positions(len(members), c)
        train_idx.append(members[tr])
        test_idx.append(members[te])
    return np.sort(np.concatenate(train_idx)), np.sort(np.concatenate(test_idx))


def _arrays_to_pair(spec: str, train_x, train_y, test_x, test_y, names, *, subset: int | None):
    notes = []
    if test_x is None:
        notes.append(_split_note(spec))
        tr, te = _split_arrays(train_x, train_y, len(names))
        train_x, train_y, test_x, test_y = train_x[tr], train_y[tr], train_x[te], train_y[te]
    keep_tr, keep_te = cap_per_class(train_y, subset), cap_per_class(test_y, subset)
    return _make_pair(spec, (train_x[keep_tr], train_y[keep_tr]), (test_x[keep_te], test_y[keep_te]),
                      tuple(names), notes)


def _check_npz_images(images: np.ndarray, key: str, spec: str) -> np.ndarray:
    if images.dtype != np.uint8:
        raise ValueError(f"{spec}: {key} must be uint8 pixels 0..255, got {images.dtype}; convert before saving")
    if images.ndim == 3:
        return images[..., None]  # (N, H, W) grey -> (N, H, W, 1)
    if images.ndim != 4 or images.shape[-1] not in (1, 3):
        channels_first = images.ndim == 4 and images.shape[1] in (1, 3)
        hint = "; it looks channels-first: transpose to (N, H, W, C)" if channels_first else ""
        raise ValueError(f"{spec}: {key} must be (N, H, W) or (N, H, W, C) with C = 1 or 3, "
                         f"got shape {images.shape}{hint}")
    return images


def _check_npz_labels(labels: np.ndarray, key: str, n: int, spec: str) -> np.ndarray:
    if labels.ndim != 1 or len(labels) != n or not np.issubdtype(labels.dtype, np.integer):
        raise ValueError(f"{spec}: {key} must be {n} integer class indices (one per image), "
                         f"got {labels.dtype} array of shape {labels.shape}")
    if n and labels.min() < 0:
        raise ValueError(f"{spec}: {key} has negative class indices; use 0..K-1")
    return labels.astype(np.int64)


def _load_npz(path: Path, spec: str, *, subset: int | None):
    try:
        with np.load(path, allow_pickle=False) as npz:
            arrays = {key: npz[key] for key in npz.files}
    except Exception as exc:  # zipfile.BadZipFile, ValueError on object arrays, OSError
        raise ValueError(f"cannot read {spec} as .npz: {' '.join(str(exc).split())}; "
                         "save it with numpy.savez(images=..., labels=...)") from None
    for key in ("images", "labels"):
        if key not in arrays:
            raise ValueError(f"{spec} has no {key!r} array (it has {sorted(arrays)}); "
                             "save images (N, H, W[, C]) uint8 and labels (N,) int")
    if ("test_images" in arrays) != ("test_labels" in arrays):
        raise ValueError(f"{spec} has only one of test_images / test_labels; save both or neither")
    images = _check_npz_images(arrays["images"], "images", spec)
    labels = _check_npz_labels(arrays["labels"], "labels", len(images), spec)
    test_x = test_y = None
    if "test_images" in arrays:
        test_x = _check_npz_images(arrays["test_images"], "test_images", spec)
        test_y = _check_npz_labels(arrays["test_labels"], "test_labels", len(test_x), spec)
        if test_x.shape[1:] != images.shape[1:]:
            raise ValueError(f"{spec}: test_images are {test_x.shape[1:]} (H, W, C) but images are "
                             f"{images.shape[1:]}; both splits need one image size and channel count")
    top = max(int(labels.max(initial=-1)), int(test_y.max(initial=-1)) if test_y is not None else -1)
    if "class_names" in arrays:
        names = tuple(str(s) for s in np.asarray(arrays["class_names"]).reshape(-1))
        if top >= len(names):
            raise ValueError(f"{spec}: labels go up to {top} but class_names has {len(names)} entries; "
                             "give one name per class")
    else:
        names = tuple(str(i) for i in range(top + 1))
    if len(names) < 2:
        raise ValueError(f"{spec}: found {len(names)} class(es); a dataset needs at least 2")
    return _arrays_to_pair(spec, images, labels, test_x, test_y, names, subset=subset)


# ----------------------------------------------------------------------------- CIFAR-10 pickles
class _CifarUnpickler(pickle.Unpickler):
    """Unpickles only what CIFAR-10 batches contain (dicts, lists, bytes, numpy arrays), so a
    crafted file cannot run code."""

    _ALLOWED = {
        ("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
        ("numpy", "ndarray"), ("numpy", "dtype"),
    }

    def find_class(self, module: str, name: str):
        if (module, name) in self._ALLOWED:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"refusing to load {module}.{name}")


def _unpickle(data: bytes, shown: str) -> dict:
    try:
        obj = _CifarUnpickler(io.BytesIO(data), encoding="bytes").load()
    except Exception as exc:
        raise ValueError(f"cannot read CIFAR-10 batch {shown}: {' '.join(str(exc).split())}; "
                         "is it the python version of CIFAR-10?") from None
    if not isinstance(obj, dict):
        raise ValueError(f"CIFAR-10 batch {shown} is not a pickled dict; is it the python version of CIFAR-10?")
    return obj


def _cifar_batch(data: bytes, shown: str) -> tuple[np.ndarray, np.ndarray]:
    batch = _unpickle(data, shown)
    if b"data" not in batch or b"labels" not in batch:
        raise ValueError(f"CIFAR-10 batch {shown} lacks b'data' / b'labels' (CIFAR-100 is not supported)")
    flat = np.asarray(batch[b"data"], dtype=np.uint8)
    if flat.ndim != 2 or flat.shape[1] != 3 * 32 * 32:
        raise ValueError(f"CIFAR-10 batch {shown}: data must be (N, 3072) uint8, got {flat.shape}")
    images = flat.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)  # rows are channel planes: -> (N, 32, 32, 3)
    labels = np.asarray(batch[b"labels"], dtype=np.int64)
    if labels.shape != (len(images),):
        raise ValueError(f"CIFAR-10 batch {shown}: {len(labels)} labels for {len(images)} images")
    return np.ascontiguousarray(images), labels


def _cifar_from_blobs(read: Callable[[str], bytes] | dict[str, bytes], spec: str, *, subset: int | None):
    """CIFAR-10 from its files, given as {file name: bytes} or a function file name -> bytes."""
    get = read.__getitem__ if isinstance(read, dict) else read
    available = set(read) if isinstance(read, dict) else None
    missing = [f for f in (*CIFAR_TRAIN_BATCHES, "test_batch")
               if available is not None and f not in available]
    if missing:
        raise ValueError(f"{spec} lacks CIFAR-10 batch file(s) {', '.join(missing)}; "
                         "give the complete cifar-10-batches-py folder")
    parts = [_cifar_batch(get(f), f"{spec}/{f}") for f in CIFAR_TRAIN_BATCHES]
    train_x = np.concatenate([p[0] for p in parts])
    train_y = np.concatenate([p[1] for p in parts])
    test_x, test_y = _cifar_batch(get("test_batch"), f"{spec}/test_batch")
    try:
        meta_bytes = get("batches.meta")
    except (KeyError, FileNotFoundError):
        meta_bytes = None
    top = int(max(train_y.max(), test_y.max()))
    if meta_bytes is not None:
        meta = _unpickle(meta_bytes, f"{spec}/batches.meta")
        names = tuple(n.decode() if isinstance(n, bytes) else str(n) for n in meta.get(b"label_names", ()))
    else:
        names = ()
    if not names:
        names = tuple(str(i) for i in range(top + 1))
    if top >= len(names) or train_y.min() < 0 or test_y.min() < 0:
        raise ValueError(f"{spec}: labels outside 0..{len(names) - 1} (batches.meta has {len(names)} names)")
    return _arrays_to_pair(spec, train_x, train_y, test_x, test_y, names, subset=subset)


def _load_cifar_pickles(folder: Path, spec: str, *, subset: int | None):
    def read(name: str) -> bytes:
        path = folder / name
        if not path.is_file():
            if name == "batches.meta":
                raise FileNotFoundError(name)
            raise ValueError(f"{folder} lacks the CIFAR-10 batch file {name}; "
                             "give the complete cifar-10-batches-py folder")
        return path.read_bytes()

    return _cifar_from_blobs(read, spec, subset=subset)
