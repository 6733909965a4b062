"""The benchmark harness: planning, resumable results, crash isolation, concurrent shards."""
from __future__ import annotations

import json
import multiprocessing

import pytest

from label_models.labels import SUPERVISION_KINDS
from wsl_diffusion.bench import baselines as B
from wsl_diffusion.bench import runner
from wsl_diffusion.bench.store import load_results, record_key
from wsl_diffusion.posterior import INFERENCE_DRAWS, PosteriorConfig


pytestmark = pytest.mark.usefixtures("one_thread")  # fixture in tests/conftest.py


# A diffusion run of a few steps: tiny network, small batch, a two-level posterior.
TINY = {"batch_size": 16, "samples_per_class": 1,
        "posterior": PosteriorConfig(schedule="interval", sigma_lo=0.4, sigma_hi=5.0, num_sigmas=2)}


def test_a_baseline_whose_optional_package_is_missing_is_left_out_unless_named(monkeypatch):
    """A default plan leaves out a method whose `requires` package is not installed (and keeps
    it when the package is there); naming it runs it, and its cell says what to install."""
    def needs_package(*args, **kwargs):
        raise ValueError("needs no_such_package_xyz")

    ghost = B.Baseline("ghost", ("noisy",), "none", needs_package, requires="no_such_package_xyz")
    present = B.Baseline("present", ("noisy",), "none", needs_package, requires="json")
    monkeypatch.setattr(B, "REGISTRY", B.registry_of([*B.BASELINES, ghost, present]))
    assert not ghost.installed and present.installed
    default = {c.method for c in runner.plan_cells(settings=["sym-40"], seeds=[0])}
    assert "ghost" not in default and "present" in default and "svc" in default
    named = runner.plan_cells(settings=["sym-40"], seeds=[0], methods=["ghost"])
    assert [c.method for c in named] == ["ghost"]


def test_cleanlearning_svc_finds_label_issues_and_beats_chance(digits_small):
    """cleanlab's CleanLearning around the SVC (needs cleanlab, part of the dev extra): at 40%
    symmetric noise it flags a share of the training labels near the noise rate."""
    pytest.importorskip("cleanlab")
    from label_models.corruption import CorruptionSpec, corrupt

    train, test = digits_small
    labels = corrupt(train.targets, num_classes=10, spec=CorruptionSpec(supervision="noisy", rate=0.4, seed=0))
    res = B.methods_for("noisy")["cleanlearning_svc"](train, labels, test, seed=0)
    assert res["accuracy"] > 0.6
    assert 0.2 * len(train) < res["label_issues"] < 0.6 * len(train)


def test_plan_validates_names_and_order():
    cells = runner.plan_cells(settings=["sym-40", "semi-5"], seeds=[0, 1],
                              methods=["dmis", "svc", "labelspreading_knn"])
    assert [c.key for c in cells[:3]] == [("sym-40", "dmis", 0), ("sym-40", "svc", 0), ("sym-40", "dmis", 1)]
    assert ("semi-5", "labelspreading_knn", 1) in [c.key for c in cells]
    assert not any(c.method == "labelspreading_knn" and c.setting == "sym-40" for c in cells)
    everything = runner.plan_cells(settings=["partial-0.5"], seeds=[0])
    assert {"vanilla", "dmis", "svc_selftrain", "cnn_proden"} <= {c.method for c in everything}
    for kwargs, needle in [({"settings": ["sym-99"], "seeds": [0]}, "unknown setting"),
                           ({"settings": ["sym-40"], "seeds": [0], "methods": ["magic"]}, "unknown method"),
                           ({"settings": ["sym-40"], "seeds": [0], "methods": ["svc_selftrain"]}, "applies to none"),
                           ({"settings": ["sym-40"], "seeds": []}, "no seeds"),
                           ({"settings": ["sym-40"], "seeds": [0, 0]}, "twice"),
                           ({"settings": ["sym-40"], "seeds": [-1]}, "non-negative")]:
        with pytest.raises(ValueError, match=needle):
            runner.plan_cells(**kwargs)


@pytest.mark.parametrize("n", [1, 2, 3])
def test_shards_partition_the_plan_by_setting_and_seed(n):
    kwargs = dict(settings=["sym-40", "partial-0.3", "semi-5"], seeds=[0, 1], methods=["dmis", "svc", "knn"])
    full = [c.key for c in runner.plan_cells(**kwargs)]
    shards = [[c.key for c in runner.plan_cells(**kwargs, shard=(i, n))] for i in range(n)]
    assert sorted(k for shard in shards for k in shard) == sorted(full)  # every cell exactly once
    owner = {(s, seed): i for i, shard in enumerate(shards) for s, _, seed in shard}
    assert all(owner[(s, seed)] == i for i, shard in enumerate(shards) for s, _, seed in shard)  # groups intact
    if n > 1:
        assert all(shards)  # 6 groups: nobody idles
    for bad in [(2, 2), (-1, 2), (0, 0)]:
        with pytest.raises(ValueError, match="shard"):
            runner.plan_cells(**kwargs, shard=bad)


def _run_shard(out, shard, data):
    runner.run_benchmark(out, settings=["sym-20", "sym-40"], seeds=[0, 1], methods=["knn", "logreg"], data=data,
                         shard=shard, progress=False)


def test_two_concurrent_shards_fill_one_results_file(tmp_path, small_data):
    ctx = multiprocessing.get_context("fork")
    procs = [ctx.Process(target=_run_shard, args=(tmp_path, (i, 2), small_data)) for i in range(2)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
    assert [p.exitcode for p in procs] == [0, 0]
    records = load_results(tmp_path)
    assert sorted(record_key(r) for r in records) == sorted(
        (s, m, seed) for s in ("sym-20", "sym-40") for m in ("knn", "logreg") for seed in (0, 1))
    assert "## sym-40" in (tmp_path / "report.md").read_text()


def test_harness_records_skips_finished_cells_and_survives_a_crash(tmp_path, monkeypatch, small_data):
    calls = []

    def counted(train_data, labels, test_data, *, seed):
        calls.append(seed)
        return {"accuracy": 0.97 + 0.02 * seed, "train_seconds": 0.0}

    def boom(train_data, labels, test_data, *, seed):
        raise RuntimeError("kaput\nsecond line")

    extra = (B.Baseline("counted", SUPERVISION_KINDS, "test budget", counted),
             B.Baseline("boom", ("noisy",), "test budget", boom))
    monkeypatch.setattr(B, "REGISTRY", B.registry_of([*B.BASELINES, *extra]))
    out = tmp_path / "bench"
    kwargs = dict(preset="digits-quick", settings=["sym-20"], seeds=[0, 1], methods=["dmis", "counted", "boom", "knn"],
                  kimg=0.05, model="tiny", data=small_data, diffusion_overrides=TINY, progress=False)

    records = runner.run_benchmark(out, **kwargs)
    saved = json.loads((out / "results.json").read_text())
    assert saved["records"] == json.loads(json.dumps(records))
    assert len(records) == 8 and calls == [0, 1]
    by = {(r["method"], r["seed"]): r for r in records}
    assert by[("boom", 0)]["error"] == "RuntimeError: kaput second line" and "accuracy" not in by[("boom", 0)]
    dmis = by[("dmis", 1)]
    assert "error" not in dmis and 0 <= dmis["accuracy"] <= 1 and dmis["budget"] == "0.05 kimg, tiny"
    # the test posterior: 2 levels x 10 classes, INFERENCE_DRAWS draws each; the one-draw accuracy beside it
    assert dmis["nfe_per_image"] == 10 * 2 * INFERENCE_DRAWS and dmis["run_dir"] == "runs/sym-20/dmis/seed1"
    assert 0 <= dmis["accuracy_one_draw"] <= 1
    assert (out / dmis["run_dir"] / "samples.png").is_file()
    assert by[("knn", 0)]["budget"] == "sklearn default" and by[("knn", 0)]["nfe_per_image"] is None

    report = (out / "report.md").read_text()
    assert "| counted | **98.00 ± 1.41** | 2 | test budget |" in report  # best mean in bold, sample std, n
    assert "runs/sym-20/dmis/seed0/samples.png" in report
    assert "boom, seed 0: RuntimeError: kaput" in report

    ckpt = out / "runs/sym-20/dmis/seed0/checkpoint.pt"
    stamp = ckpt.stat().st_mtime_ns
    records2 = runner.run_benchmark(out, **kwargs)
    assert calls == [0, 1]  # finished cells are not run again
    assert ckpt.stat().st_mtime_ns == stamp
    assert [r["method"] for r in records2] == [r["method"] for r in records]  # crashed cells retried in place
    assert sum("error" in r for r in records2) == 2

    # A longer budget reruns the diffusion cells only, continuing their checkpoints.
    records3 = runner.run_benchmark(out, **{**kwargs, "kimg": 0.1})
    by3 = {(r["method"], r["seed"]): r for r in records3}
    assert by3[("dmis", 0)]["resumed"] is True and by3[("dmis", 0)]["budget"] == "0.1 kimg, tiny"
    assert calls == [0, 1]
    # ...and a shorter one than a run already has is refused for that cell, not mislabelled.
    records4 = runner.run_benchmark(out, **{**kwargs, "kimg": 0.05})
    assert "already trained" in {(r["method"], r["seed"]): r for r in records4}[("dmis", 0)]["error"]


def test_bad_arguments_name_the_parameter_not_a_flag(tmp_path, small_data):
    for kwargs, needle in [({"kimg": 0}, "`kimg`"), ({"model": "huge"}, "model preset"),
                           ({"preset": "cifar-huge"}, "unknown preset")]:
        with pytest.raises(ValueError, match=needle) as info:
            runner.run_benchmark(tmp_path / "b", settings=["sym-20"], seeds=[0], methods=["knn"], data=small_data,
                                 progress=False, **kwargs)
        assert "--" not in str(info.value)
    (tmp_path / "file").write_text("")
    with pytest.raises(ValueError, match="`out`"):
        runner.run_benchmark(tmp_path / "file", settings=["sym-20"], seeds=[0], methods=["knn"], data=small_data,
                             progress=False)


def test_unreadable_results_file_is_a_clear_error(tmp_path, small_data):
    (tmp_path / "results.json").write_text("{not json")
    with pytest.raises(ValueError, match="not a benchmark results file"):
        runner.run_benchmark(tmp_path, settings=["sym-20"], seeds=[0], methods=["knn"], data=small_data,
                             progress=False)


def test_the_two_stage_method_runs_in_noisy_settings_and_refines_the_dmis_cells_run(tmp_path, small_data):
    """dmis-refine is in a default plan for noisy settings only, after the dmis cell whose run it
    reuses (or trains) as stage 1; stage 2 trains on the labels that run's model agrees with."""
    from label_models.io import load_labels

    default = [c.method for c in runner.plan_cells(settings=["sym-20", "partial-0.3"], seeds=[0])]
    assert default.count("dmis-refine") == 1 and default.index("dmis") < default.index("dmis-refine")
    assert "dmis-refine" not in [c.method for c in runner.plan_cells(settings=["partial-0.3"], seeds=[0])]
    with pytest.raises(ValueError, match="applies to none"):
        runner.plan_cells(settings=["partial-0.3"], seeds=[0], methods=["dmis-refine"])
    out = tmp_path / "bench"
    kwargs = dict(preset="digits-quick", settings=["sym-20"], seeds=[0], kimg=0.05, model="tiny", data=small_data,
                  diffusion_overrides=TINY, progress=False)
    (record,) = runner.run_benchmark(out, methods=["dmis-refine"], **kwargs)
    assert "error" not in record, record.get("error")
    assert record["budget"] == "0.05 + 0.05 kimg, tiny" and 0 <= record["accuracy"] <= 1
    stage1, stage2 = out / "runs/sym-20/dmis/seed0", out / record["run_dir"]
    refined = load_labels(stage2 / "refine_labels.npz")
    assert refined.kind == "semi" and refined.meta["refine"]["from"] == str(stage1.resolve())
    # the dmis cell, run afterwards, finds its run finished and only re-scores it
    stamp = (stage1 / "checkpoint.pt").stat().st_mtime_ns
    records = runner.run_benchmark(out, methods=["dmis"], **kwargs)
    (dmis,) = [r for r in records if r["method"] == "dmis"]
    assert "error" not in dmis and dmis["resumed"] is True and (stage1 / "checkpoint.pt").stat().st_mtime_ns == stamp
