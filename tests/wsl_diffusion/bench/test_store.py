"""The results file: merging under the lock, finished cells."""
from __future__ import annotations

import numpy as np
import pytest

from wsl_diffusion.bench import store


def test_merge_keeps_records_written_by_another_shard(tmp_path):
    meta = {"preset": "digits", "dataset": "digits"}
    mine = store.load_results(tmp_path)  # [] -- then another process writes a cell
    store.merge_record(tmp_path, {"setting": "sym-40", "method": "svc", "seed": 1, "accuracy": 0.9}, meta=meta)
    merged = store.merge_record(tmp_path, {"setting": "sym-40", "method": "svc", "seed": 0, "accuracy": 0.8},
                                meta=meta)
    assert mine == [] and {r["seed"] for r in merged} == {0, 1}
    again = store.merge_record(tmp_path, {"setting": "sym-40", "method": "svc", "seed": 0, "accuracy": 0.7},
                               meta=meta)  # the same cell is replaced, not duplicated
    assert sorted((r["seed"], r["accuracy"]) for r in again) == [(0, 0.7), (1, 0.9)]
    assert store.load_results(tmp_path) == again
    assert store.load_meta(tmp_path) == meta


def test_numpy_scalars_are_saved_as_numbers(tmp_path):
    store.save_results(tmp_path, [{"setting": "s", "method": "m", "seed": np.int64(2), "accuracy": np.float32(0.5)}],
                       meta={})
    assert store.load_results(tmp_path) == [{"setting": "s", "method": "m", "seed": 2, "accuracy": 0.5}]


def test_a_cell_is_finished_only_without_error_and_with_the_same_budget():
    assert store.is_finished({"accuracy": 0.9, "budget": "b"}, "b")
    assert not store.is_finished({"accuracy": 0.9, "budget": "b"}, "c")
    assert not store.is_finished({"error": "x", "budget": "b"}, "b")
    assert not store.is_finished(None, "b")


def test_unreadable_results_file_is_a_clear_error(tmp_path):
    (tmp_path / "results.json").write_text("{not json")
    with pytest.raises(ValueError, match="not a benchmark results file"):
        store.load_results(tmp_path)
