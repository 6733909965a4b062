"""Aggregation over seeds and the Markdown report."""
from __future__ import annotations

import numpy as np
import pytest

from wsl_diffusion.bench import report


def test_aggregate_and_report_mark_the_best_mean(tmp_path):
    records = [
        {"setting": "sym-40", "method": "a", "seed": 0, "accuracy": 0.90, "budget": "x", "train_seconds": 1.0},
        {"setting": "sym-40", "method": "a", "seed": 1, "accuracy": 0.92, "budget": "x", "train_seconds": 3.0},
        {"setting": "sym-40", "method": "b", "seed": 0, "accuracy": 0.95, "budget": "y"},
        {"setting": "sym-40", "method": "b", "seed": 1, "error": "RuntimeError: no"},
    ]
    table = report.aggregate(records)
    a, b = table["sym-40"]["a"], table["sym-40"]["b"]
    assert a.n == 2 and a.mean == pytest.approx(91.0) and a.std == pytest.approx(np.std([90, 92], ddof=1))
    assert a.train_seconds == pytest.approx(2.0) and b.n == 1 and b.errors == [(1, "RuntimeError: no")]
    assert report.best_methods(table["sym-40"]) == {"b"}
    text = report.render_report(tmp_path, records, meta={"preset": "p", "dataset": "digits"})
    assert "| b | **95.00 ± –** | 1 | y |" in text and "| a | 91.00 ± 1.41 | 2 | x |" in text
    assert "| sym-40 | 91.0 | **95.0** |" in text
    assert "- b, seed 1: RuntimeError: no" in text


def test_report_compares_dmis_with_the_best_baseline_of_each_family(tmp_path):
    def rec(setting, method, seed, acc):
        return {"setting": setting, "method": method, "seed": seed, "accuracy": acc, "budget": "b"}

    records = [rec("clean", "dmis", 0, 0.99), rec("clean", "dmis", 1, 0.97), rec("clean", "svc", 0, 0.98),
               rec("sym-40", "dmis", 0, 0.95), rec("sym-40", "svc", 0, 0.96), rec("sym-40", "knn", 0, 0.90),
               rec("sym-40", "cnn_elr", 0, 0.93), rec("sym-40", "cnn_ce", 0, 0.97),
               rec("sym-40", "vanilla", 0, 0.99),  # diffusion rows are not baselines
               rec("pu-even", "dmis", 0, 0.90), rec("pu-even", "elkan_noto_svc", 0, 0.85)]
    assert (report.family_of("svc"), report.family_of("cnn_elr"), report.family_of("dmis"),
            report.family_of("magic")) == ("sklearn", "neural", "diffusion", "other")
    text = report.render_report(tmp_path, records, meta={"preset": "p", "dataset": "digits"})
    assert "| clean | 98.00 ± 1.41 | svc 98.00 ± – | +0.00 |  |  |  |" in text
    # sym-40: best sklearn = svc 96 (-1 pt), best neural = cnn_ce 97 (-2 pt), clean DMIS 98 (-3 pt)
    assert "| sym-40 | 95.00 ± – | svc 96.00 ± – | -1.00 | cnn_ce 97.00 ± – | -2.00 | -3.00 |" in text
    assert "| pu-even | 90.00 ± – | elkan_noto_svc 85.00 ± – | +5.00 |  |  |  |" in text  # binary: no clean gap


def test_the_comparison_judges_the_two_stage_recipe_where_it_ran_and_pairs_by_seed(tmp_path):
    """sym-40 has dmis-refine: it is the row's DMIS, and its gap to svc is also given paired by
    seed over the seeds both finished (seed 2 of svc failed); sym-20 has only dmis."""
    def rec(setting, method, seed, acc):
        return {"setting": setting, "method": method, "seed": seed, "accuracy": acc, "budget": "b"}

    refine, svc = [0.97, 0.98, 0.99], [0.96, 0.96]
    records = ([rec("sym-40", "dmis", k, 0.90) for k in range(3)]
               + [rec("sym-40", "dmis-refine", k, a) for k, a in enumerate(refine)]
               + [rec("sym-40", "svc", k, a) for k, a in enumerate(svc)]
               + [{"setting": "sym-40", "method": "svc", "seed": 2, "error": "RuntimeError: no"}]
               + [rec("sym-20", "dmis", 0, 0.95), rec("sym-20", "svc", 0, 0.96)])
    table = report.aggregate(records)
    d = np.array([100 * (a - b) for a, b in zip(refine, svc)])  # seeds 0 and 1 only
    mean, se, n = report.paired_difference(table["sym-40"]["dmis-refine"], table["sym-40"]["svc"])
    assert n == 2 and mean == pytest.approx(d.mean()) and se == pytest.approx(d.std(ddof=1) / np.sqrt(2))
    assert report.paired_difference(table["sym-20"]["dmis"], table["sym-20"]["svc"]) is None  # one seed
    assert report.recipe_of(table["sym-40"]).method == "dmis-refine" and report.recipe_of(table["sym-20"]).method == "dmis"
    text = report.render_report(tmp_path, records, meta={"preset": "p", "dataset": "digits"})
    gap = 98.0 - 96.0  # difference of means over each method's own finished seeds
    assert (f"| sym-40 | 98.00 ± 1.00 (dmis-refine) | svc 96.00 ± 0.00 | {gap:+.2f} "
            f"(paired {d.mean():+.2f} ± {d.std(ddof=1) / np.sqrt(2):.2f}) |") in text
    assert "| sym-20 | 95.00 ± – | svc 96.00 ± – | -1.00 |" in text


def test_write_report_reads_the_results_file_and_links_the_sample_grid(tmp_path):
    from wsl_diffusion.bench.store import save_results

    run_dir = tmp_path / "runs/sym-40/dmis/seed0"
    run_dir.mkdir(parents=True)
    (run_dir / "samples.png").write_bytes(b"png")
    save_results(tmp_path, [{"setting": "sym-40", "method": "dmis", "seed": 0, "accuracy": 0.9, "budget": "b",
                             "run_dir": "runs/sym-40/dmis/seed0"}], meta={"preset": "q", "dataset": "digits"})
    text = report.write_report(tmp_path).read_text()
    assert text.startswith("# Benchmark: preset `q` on digits")
    assert "[runs/sym-40/dmis/seed0/samples.png](runs/sym-40/dmis/seed0/samples.png)" in text


def test_summary_rows_name_the_best_baseline():
    records = [{"setting": "s", "method": m, "seed": 0, "accuracy": acc, "budget": "b"}
               for m, acc in (("dmis", 0.9), ("svc", 0.8), ("knn", 0.85))]
    (row,) = report.summary_rows(records)
    assert row["best"] == ["dmis"] and row["best_baseline"].method == "knn" and "vanilla" not in row
