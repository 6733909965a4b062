"""Noisy dataset condensation: the observed-label baseline and the end-to-end run on a tiny model."""
import json

import numpy as np

from label_models.labels import ImpreciseLabels
from wsl_diffusion.eval.condensation import condense_run, noisy_real_subset, observed_hard_labels
from wsl_diffusion.eval.feature_net import ClassifierConfig

TINY = ClassifierConfig(epochs=0, min_steps=15, width=8)


def test_observed_labels_one_hot_candidates_and_unlabelled():
    rows = np.array([[0, 1, 0], [1, 1, 1], [1, 0, 1], [0, 0, 1]], dtype=np.float32)
    labels = ImpreciseLabels(matrix=rows, kind="partial")
    draws = np.stack([observed_hard_labels(labels, np.random.default_rng(i)) for i in range(2000)])
    assert np.all(draws[:, 0] == 1) and np.all(draws[:, 3] == 2)
    assert np.all(draws[:, 1] == -1)  # an all-ones row carries no label: skipped
    # A candidate set {0, 2} gives each candidate half of the time (binomial 5-sigma band).
    frac0 = np.mean(draws[:, 2] == 0)
    assert set(np.unique(draws[:, 2])) == {0, 2} and abs(frac0 - 0.5) < 5 * np.sqrt(0.25 / 2000)


def test_noisy_real_subset_takes_ipc_rows_per_observed_class():
    observed = np.array([0] * 10 + [1] * 3 + [2] * 6 + [-1] * 4)
    rows = np.ones((len(observed), 3), dtype=np.float32)
    rows[observed >= 0] = np.eye(3, dtype=np.float32)[observed[observed >= 0]]
    labels = ImpreciseLabels(matrix=rows, kind="semi", observed=observed)
    idx, obs = noisy_real_subset(labels, 5, rng=np.random.default_rng(0))
    assert np.bincount(obs, minlength=3).tolist() == [5, 3, 5]  # class 1 has only 3 rows
    assert np.array_equal(observed[idx], obs) and len(set(idx.tolist())) == len(idx)


def test_condense_run_writes_results_grids_and_sets(tiny_run, tmp_path):
    out = tmp_path / "condensed"
    result = condense_run(tiny_run, ipcs=[1, 12], out_dir=out, num_steps=3, classifier=TINY)
    assert [r["ipc"] for r in result["results"]] == [1, 12]
    saved = json.loads((out / "results.json").read_text())
    assert saved == result
    for row in result["results"]:
        assert row["num_synthetic"] == 10 * row["ipc"] and row["num_test"] == 450
        assert 0 <= row["synthetic_accuracy"] <= 1 and 0 <= row["baseline_accuracy"] <= 1
        assert row["num_baseline"] <= 10 * row["ipc"]
        data = np.load(out / f"condensed_ipc{row['ipc']}.npz")
        assert data["images"].shape == (10 * row["ipc"], 8, 8, 1) and data["images"].dtype == np.uint8
        assert (out / f"samples_ipc{row['ipc']}.png").is_file()
    from PIL import Image

    with Image.open(out / "samples_ipc12.png") as grid:  # capped at 10 per class: 10 x 10 tiles
        assert grid.size == (4 * (10 * 9 - 1), 4 * (10 * 9 - 1))
