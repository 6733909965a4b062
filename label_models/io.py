"""Label files: ``.npz`` (lossless, everything) and ``.csv`` (human-editable, one row per image).

npz arrays: ``labels`` (N, K) float32, ``kind`` (str), ``meta_json`` (str), ``format_version``
(int) and, where they exist, ``observed`` (N,) int64, ``true_labels`` (N,) int64,
``transition_matrix`` (K, K) float64 and ``class_prior`` (K,) float64. Loaded without pickle.

CSV layout::

    # kind=partial num_classes=10
    label,true_label
    3|5|7,3          <- candidate set (partial)
    3,3              <- observed hard label (clean / noisy / labelled semi or pu rows)
    ,2               <- empty = unlabelled (all-ones row)

The ``true_label`` column is optional. Further ``# key=value`` comment lines (``meta_json``,
``transition_matrix``, ``class_prior``, values in JSON) are written by :func:`save_labels` and
read back; files written by hand may omit every comment line, in which case ``num_classes`` must be
passed to :func:`load_labels` and the kind is inferred: any ``|`` -> partial, else any empty row ->
semi, else noisy (hard labels of unknown quality are treated as possibly noisy).

Both writers are atomic: the data goes to a temporary file in the target directory, which then
replaces the target with ``os.replace``, so a crash never leaves a half-written label file.
"""
from __future__ import annotations

import json
import os
import tempfile
import zipfile
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

import numpy as np

from label_models.labels import SUPERVISION_KINDS, ImpreciseLabels

LABEL_FILE_SUFFIXES: tuple[str, ...] = (".npz", ".csv")
FORMAT_VERSION = 1
_CSV_JSON_KEYS = ("meta_json", "transition_matrix", "class_prior")


def label_file_format(path: str | os.PathLike) -> str:
    """'npz' or 'csv' from the file suffix; ValueError for anything else."""
    suffix = Path(path).suffix.lower()
    if suffix not in LABEL_FILE_SUFFIXES:
        raise ValueError(
            f"unknown label-file suffix {suffix or '(none)'!r} in {str(path)!r}; use a .npz or .csv file name"
        )
    return suffix[1:]


def check_writable_label_path(path: str | os.PathLike) -> Path:
    """Validate an output label path before any work is done: known suffix, existing writable
    directory, not a directory itself. Returns it as a Path."""
    p = Path(path)
    label_file_format(p)
    parent = p.parent if str(p.parent) else Path(".")
    if not parent.is_dir():
        raise ValueError(f"cannot write {str(p)!r}: directory {str(parent)!r} does not exist; create it first")
    if not os.access(parent, os.W_OK):
        raise ValueError(f"cannot write {str(p)!r}: directory {str(parent)!r} is not writable")
    if p.is_dir():
        raise ValueError(f"cannot write {str(p)!r}: it is a directory")
    return p


def _current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_atomically(path: str | os.PathLike, write: Callable[[IO[bytes]], None]) -> None:
    """Call write(binary file) on a temp file beside `path`, fsync it, then rename it over `path`.

    A crash mid-write leaves the previous file intact. The result gets the usual permissions
    (0666 minus the umask), not mkstemp's private 0600. Shared by label files and checkpoints.
    """
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o666 & ~_current_umask())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


# ----------------------------------------------------------------------------- save
def save_labels(path: str | os.PathLike, labels: ImpreciseLabels) -> None:
    """Write ``labels`` to ``path`` (.npz or .csv by suffix), atomically."""
    if not isinstance(labels, ImpreciseLabels):
        raise ValueError(f"labels must be an ImpreciseLabels, got {type(labels).__name__}")
    p = check_writable_label_path(path)
    if label_file_format(p) == "npz":
        write_atomically(p, lambda fh: _write_npz(fh, labels))
    else:
        text = _csv_text(labels)  # build (and validate) before touching the disk
        write_atomically(p, lambda fh: fh.write(text.encode("utf-8")))


def _write_npz(fh: IO[bytes], labels: ImpreciseLabels) -> None:
    arrays: dict[str, np.ndarray] = {
        "format_version": np.array(FORMAT_VERSION),
        "labels": labels.matrix.astype(np.float32),
        "kind": np.array(labels.kind),
        "meta_json": np.array(json.dumps(labels.meta, sort_keys=True)),
    }
    for name in ("observed", "true_labels", "transition_matrix", "class_prior"):
        value = getattr(labels, name)
        if value is not None:
            arrays[name] = value
    np.savez_compressed(fh, **arrays)


def _csv_text(labels: ImpreciseLabels) -> str:
    mat = labels.matrix
    if not np.all((mat == 0) | (mat == 1)):
        raise ValueError("soft (non 0/1) label rows cannot be written as CSV; save to a .npz file instead")
    lines = [f"# kind={labels.kind} num_classes={labels.num_classes}"]
    lines.append("# meta_json=" + json.dumps(labels.meta, sort_keys=True))
    if labels.transition_matrix is not None:
        lines.append("# transition_matrix=" + json.dumps(labels.transition_matrix.tolist()))
    if labels.class_prior is not None:
        lines.append("# class_prior=" + json.dumps(labels.class_prior.tolist()))
    has_true = labels.true_labels is not None
    lines.append("label,true_label" if has_true else "label")
    unlabelled = ~labels.is_labelled
    if labels.observed is not None:
        cells = np.where(unlabelled, "", labels.observed.astype(str))
    else:
        # Candidate sets as "3|5|7", built one class column at a time (K steps, not N).
        cells = np.full(labels.num_samples, "", dtype=object)
        for c in range(labels.num_classes):
            cells = np.where(mat[:, c] == 1, cells + f"{c}|", cells)
        cells = np.char.rstrip(cells.astype(str), "|")
        cells[unlabelled] = ""
    if has_true:
        cells = np.char.add(np.char.add(cells.astype(str), ","), labels.true_labels.astype(str))
    lines.extend(cells.tolist())
    return "\n".join(lines) + "\n"


# ----------------------------------------------------------------------------- load
def load_labels(path: str | os.PathLike, *, num_classes: int | None = None) -> ImpreciseLabels:
    """Read a label file written by :func:`save_labels` (or a hand-written CSV).

    num_classes: required for a CSV without a ``# num_classes=`` line; when given for any file it
    must agree with the file. pu files are binary (K = 2) whatever the dataset: for them it may be
    2 or the dataset's class count, which the stored positive classes must then fit.
    Raises FileNotFoundError naming the path, or ValueError saying what is wrong and where.
    """
    p = Path(path)
    fmt = label_file_format(p)
    if not p.is_file():
        raise FileNotFoundError(f"label file not found: {str(p)!r}")
    try:
        out = _read_npz(p) if fmt == "npz" else _read_csv(p, num_classes)
    except ValueError as exc:
        message = str(exc)
        raise ValueError(message if message.startswith(str(p)) else f"{p}: {message}") from None
    if num_classes is not None:
        if out.kind == "pu":
            try:
                out.validate_against(out.num_samples, num_classes)
            except ValueError as exc:
                raise ValueError(f"{p}: {exc}") from None
        elif out.num_classes != num_classes:
            raise ValueError(f"{p}: the file has {out.num_classes} classes but num_classes={num_classes} was given")
    return out


def _read_npz(p: Path) -> ImpreciseLabels:
    try:
        with np.load(p, allow_pickle=False) as data:
            arrays = {key: data[key] for key in data.files}
    # zipfile also raises NotImplementedError (a "version needed" it does not know), RuntimeError
    # (an encrypted member) and KeyError (a damaged directory) on damaged archives.
    except (zipfile.BadZipFile, zlib.error, OSError, EOFError, ValueError, NotImplementedError, RuntimeError,
            KeyError) as exc:
        raise ValueError(f"{p}: not a readable .npz label file ({type(exc).__name__}: {exc})") from None
    for key in ("labels", "kind"):
        if key not in arrays:
            raise ValueError(f"{p}: not a label file (no {key!r} array); write label files with save_labels")
    version = np.asarray(arrays.get("format_version", FORMAT_VERSION))
    if version.ndim != 0 or version.dtype.kind not in "iu":
        raise ValueError(f"{p}: format_version must be one integer; got {version.dtype} of shape {version.shape}")
    version = int(version)
    if version > FORMAT_VERSION:
        raise ValueError(f"{p}: label-file format {version} is newer than this library ({FORMAT_VERSION}); upgrade")
    try:
        meta = json.loads(str(arrays["meta_json"])) if "meta_json" in arrays else {}
    except json.JSONDecodeError as exc:
        raise ValueError(f"{p}: meta_json is not valid JSON ({exc})") from None
    try:
        return ImpreciseLabels(
            matrix=arrays["labels"],
            kind=str(arrays["kind"]),
            observed=arrays.get("observed"),
            true_labels=arrays.get("true_labels"),
            transition_matrix=arrays.get("transition_matrix"),
            class_prior=arrays.get("class_prior"),
            meta=meta,
        )
    except (TypeError, IndexError) as exc:  # e.g. arrays of a type or shape no label file has
        raise ValueError(f"{p}: the label arrays are malformed ({exc})") from None


def _parse_header_comment(body: str, header: dict[str, Any], where: str) -> None:
    """One ``#`` line: either ``key=<JSON>`` for the JSON keys, or space-separated ``key=value``."""
    key, sep, rest = body.partition("=")
    if sep and key.strip() in _CSV_JSON_KEYS:
        try:
            header[key.strip()] = json.loads(rest)
        except json.JSONDecodeError as exc:
            raise ValueError(f"{where}: {key.strip()} is not valid JSON ({exc})") from None
        return
    for token in body.split():
        k, sep, v = token.partition("=")
        if sep:  # free-text comments without '=' are allowed and ignored
            header[k] = v


def _parse_int(text: str, where: str, what: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise ValueError(f"{where}: cannot parse {what} {text!r}; expected a class index like 3") from None


def _read_csv(p: Path, num_classes: int | None) -> ImpreciseLabels:
    try:
        text = p.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise ValueError(f"{p}: not a UTF-8 text file; is it really a CSV label file?") from None
    header: dict[str, Any] = {}
    columns: list[str] | None = None
    cells: list[list[int]] = []  # candidate classes per row ([] = unlabelled)
    true_labels: list[int] = []
    line_of_row: list[int] = []
    any_set = False
    for lineno, raw in enumerate(text.splitlines(), start=1):
        where = f"{p}, line {lineno}"
        line = raw.strip()
        if line.startswith("#"):
            _parse_header_comment(line[1:].strip(), header, where)
            continue
        if columns is None:
            if not line:  # blank lines before the header carry nothing
                continue
            columns = [c.strip() for c in line.split(",")]
            if columns not in (["label"], ["label", "true_label"]):
                raise ValueError(f"{where}: header must be 'label' or 'label,true_label', got {line!r}")
            continue
        fields = [f.strip() for f in line.split(",")] if line else [""] * len(columns)
        if len(fields) != len(columns):
            raise ValueError(
                f"{where}: expected {len(columns)} comma-separated field(s), got {len(fields)}: {line!r}"
            )
        label = fields[0]
        if label:
            parts = label.split("|")
            any_set = any_set or len(parts) > 1
            cells.append([_parse_int(part.strip(), where, "label") for part in parts])
        else:
            cells.append([])
        if len(columns) == 2:
            if not fields[1]:
                raise ValueError(f"{where}: empty true_label; the column must be filled on every row")
            true_labels.append(_parse_int(fields[1], where, "true_label"))
        line_of_row.append(lineno)
    if columns is None or not cells:
        raise ValueError(f"{p}: no label rows (expected a 'label' header line followed by one row per image)")

    kind = header.get("kind") or ("partial" if any_set else "semi" if any(not c for c in cells) else "noisy")
    if kind not in SUPERVISION_KINDS:
        raise ValueError(f"{p}: unknown kind {kind!r} in the header; expected one of {SUPERVISION_KINDS}")
    # pu files are binary whatever the dataset's class count (checked by load_labels instead).
    k = _resolve_num_classes(p, header, None if kind == "pu" and "num_classes" in header else num_classes)

    n = len(cells)
    sizes = np.fromiter((len(c) for c in cells), dtype=np.int64, count=n)
    flat = np.fromiter((v for c in cells for v in c), dtype=np.int64, count=int(sizes.sum()))
    bad = (flat < 0) | (flat >= k)
    if np.any(bad):
        row = int(np.searchsorted(np.cumsum(sizes), np.flatnonzero(bad)[0], side="right"))
        raise ValueError(
            f"{p}, line {line_of_row[row]}: class {int(flat[np.flatnonzero(bad)[0]])} is out of range "
            f"for {k} classes (valid: 0..{k - 1})"
        )
    if kind != "partial" and np.any(sizes > 1):
        row = int(np.flatnonzero(sizes > 1)[0])
        raise ValueError(
            f"{p}, line {line_of_row[row]}: a candidate set in a file of kind {kind!r}; "
            f"only partial label files may list several classes"
        )
    labels = np.zeros((n, k), dtype=np.float32)
    labels[np.repeat(np.arange(n), sizes), flat] = 1.0
    labels[sizes == 0] = 1.0  # empty cell = unlabelled = every class possible
    true = None
    if true_labels:
        true = np.asarray(true_labels, dtype=np.int64)
        bad_rows = np.flatnonzero((true < 0) | (true >= k))
        if bad_rows.size:
            i = int(bad_rows[0])
            raise ValueError(f"{p}, line {line_of_row[i]}: true_label {true[i]} is out of range for {k} classes")
    observed = None
    if kind != "partial":
        observed = np.where(sizes == 0, -1, labels.argmax(axis=1))
        if kind == "pu" and np.any(observed == 0):
            row = int(np.flatnonzero(observed == 0)[0])
            raise ValueError(
                f"{p}, line {line_of_row[row]}: a pu file labels only positives (1); leave negatives empty"
            )
    meta = header.get("meta_json", {})
    if not isinstance(meta, dict):
        raise ValueError(f"{p}: meta_json must be a JSON object")
    return ImpreciseLabels(
        matrix=labels,
        kind=kind,
        observed=observed,
        true_labels=true,
        transition_matrix=header.get("transition_matrix"),
        class_prior=header.get("class_prior"),
        meta=meta,
    )


def _resolve_num_classes(p: Path, header: dict[str, Any], num_classes: int | None) -> int:
    if "num_classes" in header:
        try:
            k = int(header["num_classes"])
        except ValueError:
            raise ValueError(f"{p}: num_classes={header['num_classes']!r} in the header is not an integer") from None
        if num_classes is not None and num_classes != k:
            raise ValueError(f"{p}: the header says num_classes={k} but num_classes={num_classes} was given")
        return k
    if num_classes is None:
        raise ValueError(
            f"{p}: no '# num_classes=K' header line; add one or pass num_classes= (the dataset's class count)"
        )
    return int(num_classes)
