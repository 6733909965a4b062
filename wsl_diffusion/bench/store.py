"""The benchmark's results file, OUT/results.json, shared safely between processes.

    {"format": 1, "preset", "dataset", "records": [record, ...]}

One record per cell (setting, method, seed):

    {"setting", "kind", "method", "seed", "accuracy", "train_seconds", "budget",
     "nfe_per_image" (diffusion: network evaluations per test image, else null),
     "run_dir" (diffusion, relative to OUT), "error" (only when the cell crashed), ...extras}

The file is rewritten atomically after every cell. Several processes may share one OUT (shards):
a record is merged under an exclusive file lock (POSIX `fcntl`), re-reading the file first, so no
process overwrites another's cells.
"""
from __future__ import annotations

import contextlib
import fcntl
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from wsl_diffusion.run import atomic_write_text

RESULTS_NAME = "results.json"
RESULTS_FORMAT = 1
LOCK_NAME = ".results.lock"


def load_results(out: str | Path) -> list[dict]:
    """The records of OUT/results.json ([] when there is none)."""
    path = Path(out) / RESULTS_NAME
    if not path.is_file():
        return []
    try:
        data = json.loads(path.read_text())
        records = data["records"]
    except (json.JSONDecodeError, KeyError, TypeError) as exc:
        raise ValueError(f"{path} is not a benchmark results file ({exc}); "
                         "move it away or pick another `out`") from None
    if not isinstance(records, list):
        raise ValueError(f"{path}: 'records' must be a list")
    return records


def load_meta(out: str | Path) -> dict:
    """The run description (preset, dataset) of OUT/results.json; values None when there is none."""
    path = Path(out) / RESULTS_NAME
    data = json.loads(path.read_text()) if path.is_file() else {}
    return {k: data.get(k) for k in ("preset", "dataset")}


def json_default(value: Any) -> Any:
    """json.dumps' fallback: numpy scalars as Python numbers; TypeError for anything else."""
    if isinstance(value, np.generic):
        return value.item()
    raise TypeError(f"not JSON-serialisable: {type(value).__name__}")


def save_results(out: str | Path, records: list[dict], *, meta: dict) -> None:
    """Atomically rewrite OUT/results.json with `meta` (preset, dataset) and `records`."""
    payload = {"format": RESULTS_FORMAT, **meta, "records": records}
    atomic_write_text(Path(out) / RESULTS_NAME, json.dumps(payload, indent=1, default=json_default) + "\n")


@contextlib.contextmanager
def results_lock(out: str | Path) -> Iterator[None]:
    """Exclusive lock on OUT's results while a process reads, merges and rewrites them."""
    with open(Path(out) / LOCK_NAME, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def record_key(record: dict) -> tuple[str, str, int]:
    """(setting, method, seed): the cell a record belongs to."""
    return (record.get("setting"), record.get("method"), record.get("seed"))


def merge_record(out: str | Path, record: dict, *, meta: dict) -> list[dict]:
    """Put `record` into OUT/results.json (replacing the same cell's) under the lock. -> all records.

    Re-reads the file first, so records written meanwhile by other shards are kept.
    """
    with results_lock(out):
        records = load_results(out)
        keys = [record_key(r) for r in records]
        key = record_key(record)
        if key in keys:
            records[keys.index(key)] = record
        else:
            records.append(record)
        save_results(out, records, meta=meta)
    return records


def is_finished(record: dict | None, budget: str) -> bool:
    """A cell is done when it has a record without error, trained with the same budget."""
    return record is not None and "error" not in record and record.get("budget") == budget
