"""`wsl-diff benchmark` and `wsl-diff demo`: one-line errors, and small real runs."""
from __future__ import annotations

import json

import pytest

from cli.benchmark import parse_seeds, parse_shard
from cli.main import main


pytestmark = pytest.mark.usefixtures("one_thread")  # fixture in tests/conftest.py


def run_cli(args, capsys):
    code = main(args)
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.parametrize("args,needle", [
    (["--preset", "cifar-huge"], "preset"),
    (["--settings", "sym-99"], "sym-99"),
    (["--settings", "sym-40,"], "--settings"),
    (["--methods", "magic"], "magic"),
    (["--settings", "sym-40", "--methods", "labelspreading_knn"], "applies to none"),
    (["--seeds", "0,a"], "--seeds"),
    (["--seeds", ""], "--seeds"),
    (["--seeds", "1,1"], "twice"),
    (["--seeds", "-1"], "--seeds"),
    (["--kimg", "0"], "kimg"),
    (["--threads", "0"], "threads"),
])
def test_bad_benchmark_input_is_one_line_exit_2(tmp_path, capsys, args, needle):
    code, out, err = run_cli(["benchmark", "--out", str(tmp_path / "b"), "--threads", "1", *args], capsys)
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and needle in lines[0] and "Traceback" not in err
    assert not (tmp_path / "b" / "results.json").exists()  # nothing ran


def test_parse_seeds():
    assert parse_seeds("0, 1,2") == [0, 1, 2] and parse_seeds(None) is None


def test_parse_shard():
    assert parse_shard("1/2") == (1, 2) and parse_shard(None) == (0, 1)
    for bad in ("2/2", "1", "a/b", "1/0"):
        with pytest.raises(ValueError, match="--shard"):
            parse_shard(bad)


def test_benchmark_cli_runs_sklearn_cells_and_resumes(tmp_path, capsys):
    out = tmp_path / "bench"
    args = ["benchmark", "--preset", "digits-quick", "--settings", "sym-20,semi-10", "--methods",
            "knn,labelspreading_knn", "--seeds", "0", "--out", str(out), "--threads", "1"]
    code, stdout, err = run_cli(args, capsys)
    assert code == 0, err
    records = json.loads((out / "results.json").read_text())["records"]
    assert [(r["setting"], r["method"]) for r in records] == [
        ("sym-20", "knn"), ("semi-10", "knn"), ("semi-10", "labelspreading_knn")]
    assert all(0.5 < r["accuracy"] <= 1 and r["budget"] for r in records)
    assert "sym-20" in stdout and "labelspreading_knn" in stdout  # the summary table
    report = (out / "report.md").read_text()
    assert "## semi-10" in report and "±" in report

    code, stdout, _ = run_cli([*args, "--json"], capsys)
    again = json.loads(stdout)
    assert code == 0 and again["failed"] == 0
    assert [r["wall_seconds"] for r in again["records"]] == [r["wall_seconds"] for r in records]  # skipped


def test_demo_bad_input_is_one_line_exit_2(tmp_path, capsys):
    for args, needle in ((["--kimg", "0"], "kimg"), (["--supervision", "partial", "--q", "2"], "q")):
        code, _, err = run_cli(["demo", "--out", str(tmp_path / "d"), "--threads", "1", *args], capsys)
        assert code == 2 and len(err.strip().splitlines()) == 1 and needle in err


def test_demo_end_to_end_tiny(tmp_path, capsys):
    out = tmp_path / "demo"
    code, stdout, err = run_cli(["demo", "--model", "tiny", "--kimg", "0.02", "--out", str(out), "--threads", "1",
                                 "--quiet"], capsys)
    assert code == 0, err
    assert {"dmis", "dmis-refine", "vanilla", "svc"} <= set(stdout.split())
    report = (out / "report.md").read_text()
    assert all(f"| {m} |" in report for m in ("svc", "dmis", "dmis-refine", "vanilla"))
    assert "| 0.02 + 0.02 kimg, tiny |" in report  # the two-stage row's budget says both stages
    assert (out / "dmis" / "samples.png").is_file() and "dmis/samples.png" in report
    for picture in ("confusion.png", "transition.png", "dmis/curves.png", "vanilla/curves.png", "dmis-refine/curves.png"):
        assert (out / picture).is_file() and f"({picture})" in report, picture
    assert "dmis-refine classifier" in report  # the confusion matrix is the recipe's final model's
    labels_meta = json.loads((out / "dmis" / "config.json").read_text())["supervision"]
    assert labels_meta["supervision"] == "noisy" and labels_meta["rate"] == 0.4 and labels_meta["noise"] == "sym"
    stage2 = json.loads((out / "dmis-refine" / "config.json").read_text())
    assert stage2["labels_file"] == str((out / "dmis-refine" / "refine_labels.npz").resolve())

    one = tmp_path / "one-stage"
    code, stdout, err = run_cli(["demo", "--model", "tiny", "--kimg", "0.02", "--out", str(one), "--threads", "1",
                                 "--quiet", "--no-refine"], capsys)
    assert code == 0, err
    assert "dmis-refine" not in stdout and not (one / "dmis-refine").exists()
