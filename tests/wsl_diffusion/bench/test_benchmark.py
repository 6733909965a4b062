"""The benchmark harness: planning, resumable results, crash isolation, aggregation and report."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from label_models.corruption import corrupt
from label_models.labels import SUPERVISION_KINDS
from wsl_diffusion.bench import baselines as B
from wsl_diffusion.bench import runner as bench
from wsl_diffusion.data.datasets import ArrayDataset, flat_features, load_digits_split
from wsl_diffusion.posterior import PosteriorConfig, diffusion_posterior


pytestmark = pytest.mark.usefixtures("one_thread")  # fixture in tests/conftest.py


@pytest.fixture(scope="module")
def small_data():
    train, test = load_digits_split()
    return (ArrayDataset(train.images[:200], train.targets[:200], train.class_names),
            ArrayDataset(test.images[:60], test.targets[:60], test.class_names))


# A diffusion run of a few steps: tiny network, small batch, a two-level posterior.
TINY = {"batch_size": 16, "samples_per_class": 1,
        "posterior": PosteriorConfig(schedule="interval", sigma_lo=0.4, sigma_hi=5.0, num_sigmas=2)}


def test_every_setting_is_a_valid_corruption_of_digits(small_data):
    train, _ = small_data
    kinds = set()
    for name in bench.SETTINGS:
        spec = bench.setting_spec(name, seed=3)
        assert spec.seed == 3
        labels = corrupt(train.targets, num_classes=10, spec=spec, features=flat_features(train))
        kinds.add(labels.kind)
        assert bench.describe_setting(name)
    assert kinds == set(SUPERVISION_KINDS)
    quick = bench.PRESETS["digits-quick"]
    assert quick.seeds == (0,) and set(quick.settings) == {"sym-40", "partial-0.3", "semi-10"}
    assert bench.PRESETS["digits"].seeds == (0, 1, 2)


def test_plan_validates_names_and_order():
    cells = bench.plan_cells(settings=["sym-40", "semi-5"], seeds=[0, 1], methods=["dmis", "svc", "labelspreading_knn"])
    assert [c.key for c in cells[:3]] == [("sym-40", "dmis", 0), ("sym-40", "svc", 0), ("sym-40", "dmis", 1)]
    assert ("semi-5", "labelspreading_knn", 1) in [c.key for c in cells]
    assert not any(c.method == "labelspreading_knn" and c.setting == "sym-40" for c in cells)
    everything = bench.plan_cells(settings=["partial-0.5"], seeds=[0])
    assert {"vanilla", "dmis", "svc_selftrain", "cnn_proden"} <= {c.method for c in everything}
    for kwargs, needle in [({"settings": ["sym-99"], "seeds": [0]}, "unknown setting"),
                           ({"settings": ["sym-40"], "seeds": [0], "methods": ["magic"]}, "unknown method"),
                           ({"settings": ["sym-40"], "seeds": [0], "methods": ["svc_selftrain"]}, "applies to none"),
                           ({"settings": ["sym-40"], "seeds": []}, "no seeds"),
                           ({"settings": ["sym-40"], "seeds": [0, 0]}, "twice"),
                           ({"settings": ["sym-40"], "seeds": [-1]}, "non-negative")]:
        with pytest.raises(ValueError, match=needle):
            bench.plan_cells(**kwargs)


@pytest.mark.parametrize("n", [1, 2, 3])
def test_shards_partition_the_plan_by_setting_and_seed(n):
    kwargs = dict(settings=["sym-40", "partial-0.3", "semi-5"], seeds=[0, 1], methods=["dmis", "svc", "knn"])
    full = [c.key for c in bench.plan_cells(**kwargs)]
    shards = [[c.key for c in bench.plan_cells(**kwargs, shard=(i, n))] for i in range(n)]
    assert sorted(k for shard in shards for k in shard) == sorted(full)  # every cell exactly once
    owner = {(s, seed): i for i, shard in enumerate(shards) for s, _, seed in shard}
    assert all(owner[(s, seed)] == i for i, shard in enumerate(shards) for s, _, seed in shard)  # groups intact
    if n > 1:
        assert all(shards)  # 6 groups: nobody idles
    for bad in [(2, 2), (-1, 2), (0, 0)]:
        with pytest.raises(ValueError, match="shard"):
            bench.plan_cells(**kwargs, shard=bad)


def test_merge_keeps_records_written_by_another_shard(tmp_path):
    meta = {"preset": "digits", "dataset": "digits"}
    mine = bench.load_results(tmp_path)  # [] -- then another process writes a cell
    bench.merge_record(tmp_path, {"setting": "sym-40", "method": "svc", "seed": 1, "accuracy": 0.9}, meta=meta)
    merged = bench.merge_record(tmp_path, {"setting": "sym-40", "method": "svc", "seed": 0, "accuracy": 0.8},
                                meta=meta)
    assert mine == [] and {r["seed"] for r in merged} == {0, 1}
    again = bench.merge_record(tmp_path, {"setting": "sym-40", "method": "svc", "seed": 0, "accuracy": 0.7},
                               meta=meta)  # the same cell is replaced, not duplicated
    assert sorted((r["seed"], r["accuracy"]) for r in again) == [(0, 0.7), (1, 0.9)]
    assert bench.load_results(tmp_path) == again


def _run_shard(out, shard, data):
    bench.run_benchmark(out, settings=["sym-20", "sym-40"], seeds=[0, 1], methods=["knn", "logreg"], data=data,
                        shard=shard, progress=False)


def test_two_concurrent_shards_fill_one_results_file(tmp_path, small_data):
    import multiprocessing

    ctx = multiprocessing.get_context("fork")
    procs = [ctx.Process(target=_run_shard, args=(tmp_path, (i, 2), small_data)) for i in range(2)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
    assert [p.exitcode for p in procs] == [0, 0]
    records = bench.load_results(tmp_path)
    assert sorted(bench._record_key(r) for r in records) == sorted(
        (s, m, seed) for s in ("sym-20", "sym-40") for m in ("knn", "logreg") for seed in (0, 1))
    assert "## sym-40" in (tmp_path / "report.md").read_text()


def test_harness_records_skips_finished_cells_and_survives_a_crash(tmp_path, monkeypatch, small_data):
    calls = []

    def counted(train_data, labels, test_data, *, seed):
        calls.append(seed)
        return {"accuracy": 0.97 + 0.02 * seed, "train_seconds": 0.0}

    def boom(train_data, labels, test_data, *, seed):
        raise RuntimeError("kaput\nsecond line")

    monkeypatch.setitem(B.REGISTRY, "counted", B.Baseline("counted", SUPERVISION_KINDS, "test budget", counted))
    monkeypatch.setitem(B.REGISTRY, "boom", B.Baseline("boom", ("noisy",), "test budget", boom))
    out = tmp_path / "bench"
    kwargs = dict(preset="digits-quick", settings=["sym-20"], seeds=[0, 1], methods=["dmis", "counted", "boom", "knn"],
                  kimg=0.05, model="tiny", data=small_data, diffusion_overrides=TINY, progress=False)

    records = bench.run_benchmark(out, **kwargs)
    saved = json.loads((out / "results.json").read_text())
    assert saved["records"] == json.loads(json.dumps(records))
    assert len(records) == 8 and calls == [0, 1]
    by = {(r["method"], r["seed"]): r for r in records}
    assert by[("boom", 0)]["error"] == "RuntimeError: kaput second line" and "accuracy" not in by[("boom", 0)]
    dmis = by[("dmis", 1)]
    assert "error" not in dmis and 0 <= dmis["accuracy"] <= 1 and dmis["budget"] == "0.05 kimg, tiny"
    assert dmis["nfe_per_image"] == 10 * 2 and dmis["run_dir"] == "runs/sym-20/dmis/seed1"
    assert (out / dmis["run_dir"] / "samples.png").is_file()
    assert by[("knn", 0)]["budget"] == "sklearn default" and by[("knn", 0)]["nfe_per_image"] is None

    report = (out / "report.md").read_text()
    assert "| counted | **98.00 ± 1.41** | 2 | test budget |" in report  # best mean in bold, sample std, n
    assert "runs/sym-20/dmis/seed0/samples.png" in report
    assert "boom, seed 0: RuntimeError: kaput" in report

    ckpt = out / "runs/sym-20/dmis/seed0/checkpoint.pt"
    stamp = ckpt.stat().st_mtime_ns
    records2 = bench.run_benchmark(out, **kwargs)
    assert calls == [0, 1]  # finished cells are not run again
    assert ckpt.stat().st_mtime_ns == stamp
    assert [r["method"] for r in records2] == [r["method"] for r in records]  # crashed cells retried in place
    assert sum("error" in r for r in records2) == 2

    # A longer budget reruns the diffusion cells only, continuing their checkpoints.
    records3 = bench.run_benchmark(out, **{**kwargs, "kimg": 0.1})
    by3 = {(r["method"], r["seed"]): r for r in records3}
    assert by3[("dmis", 0)]["resumed"] is True and by3[("dmis", 0)]["budget"] == "0.1 kimg, tiny"
    assert calls == [0, 1]
    # ...and a shorter one than a run already has is refused for that cell, not mislabelled.
    records4 = bench.run_benchmark(out, **{**kwargs, "kimg": 0.05})
    assert "already trained" in {(r["method"], r["seed"]): r for r in records4}[("dmis", 0)]["error"]


def test_aggregate_and_report_mark_the_best_mean(tmp_path):
    records = [
        {"setting": "sym-40", "method": "a", "seed": 0, "accuracy": 0.90, "budget": "x", "train_seconds": 1.0},
        {"setting": "sym-40", "method": "a", "seed": 1, "accuracy": 0.92, "budget": "x", "train_seconds": 3.0},
        {"setting": "sym-40", "method": "b", "seed": 0, "accuracy": 0.95, "budget": "y"},
        {"setting": "sym-40", "method": "b", "seed": 1, "error": "RuntimeError: no"},
    ]
    table = bench.aggregate(records)
    a, b = table["sym-40"]["a"], table["sym-40"]["b"]
    assert a.n == 2 and a.mean == pytest.approx(91.0) and a.std == pytest.approx(np.std([90, 92], ddof=1))
    assert a.train_seconds == pytest.approx(2.0) and b.n == 1 and b.errors == [(1, "RuntimeError: no")]
    assert bench.best_methods(table["sym-40"]) == {"b"}
    text = bench.render_report(tmp_path, records, meta={"preset": "p", "dataset": "digits"})
    assert "| b | **95.00 ± –** | 1 | y |" in text and "| a | 91.00 ± 1.41 | 2 | x |" in text
    assert "| sym-40 | 91.0 | **95.0** |" in text


def test_report_compares_dmis_with_the_best_baseline_of_each_family(tmp_path):
    def rec(setting, method, seed, acc):
        return {"setting": setting, "method": method, "seed": seed, "accuracy": acc, "budget": "b"}

    records = [rec("clean", "dmis", 0, 0.99), rec("clean", "dmis", 1, 0.97), rec("clean", "svc", 0, 0.98),
               rec("sym-40", "dmis", 0, 0.95), rec("sym-40", "svc", 0, 0.96), rec("sym-40", "knn", 0, 0.90),
               rec("sym-40", "cnn_elr", 0, 0.93), rec("sym-40", "cnn_ce", 0, 0.97),
               rec("sym-40", "vanilla", 0, 0.99),  # diffusion rows are not baselines
               rec("pu-even", "dmis", 0, 0.90), rec("pu-even", "elkan_noto_svc", 0, 0.85)]
    assert (bench.family_of("svc"), bench.family_of("cnn_elr"), bench.family_of("dmis")) == (
        "sklearn", "neural", "diffusion")
    text = bench.render_report(tmp_path, records, meta={"preset": "p", "dataset": "digits"})
    assert "| clean | 98.00 ± 1.41 | svc 98.00 ± – | +0.00 |  |  |  |" in text
    # sym-40: best sklearn = svc 96 (-1 pt), best neural = cnn_ce 97 (-2 pt), clean DMIS 98 (-3 pt)
    assert "| sym-40 | 95.00 ± – | svc 96.00 ± – | -1.00 | cnn_ce 97.00 ± – | -2.00 | -3.00 |" in text
    assert "| pu-even | 90.00 ± – | elkan_noto_svc 85.00 ± – | +5.00 |  |  |  |" in text  # binary: no clean gap


def test_unreadable_results_file_is_a_clear_error(tmp_path, small_data):
    (tmp_path / "results.json").write_text("{not json")
    with pytest.raises(ValueError, match="not a benchmark results file"):
        bench.run_benchmark(tmp_path, settings=["sym-20"], seeds=[0], methods=["knn"], data=small_data, progress=False)
