"""`wsl-diff corrupt`: good calls write a loadable label file; user errors are one line, exit 2."""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from cli.common import add_supervision_arguments, parse_class_list, spec_from_args
from cli.main import main
from label_models import CorruptionSpec, load_labels

REPO = Path(__file__).resolve().parents[2]


def run_cli(argv: list[str]) -> int:
    """main() returns the exit code; argparse errors exit through SystemExit instead."""
    try:
        return main(argv)
    except SystemExit as exc:
        return int(exc.code)


@pytest.mark.parametrize(
    "flags",
    [
        ["--supervision", "noisy", "--noise", "sym", "--rate", "0.4"],
        ["--supervision", "noisy", "--noise", "asym", "--rate", "0.3"],
        ["--supervision", "noisy", "--noise", "instance", "--rate", "0.2"],
        ["--supervision", "partial", "--q", "0.5"],
        ["--supervision", "partial", "--class-dependent"],
        ["--supervision", "semi", "--labelled-fraction", "0.05"],
        ["--supervision", "pu", "--positive-classes", "1,3", "--labelled-fraction", "0.2"],
        ["--supervision", "clean"],
    ],
    ids=lambda f: "-".join(a.lstrip("-") for a in f[1::2]),
)
def test_json_summary_and_round_trip(tmp_path, capsys, flags):
    out = tmp_path / "labels.npz"
    code = run_cli(["corrupt", "--dataset", "digits", *flags, "--seed", "3", "--out", str(out), "--json"])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    summary = json.loads(captured.out)  # stdout is exactly one JSON object
    assert summary["out"] == str(out)
    labels = load_labels(out)
    assert summary["kind"] == labels.kind and summary["num_samples"] == labels.num_samples == 1347
    assert labels.meta["spec"]["seed"] == 3 and labels.meta["dataset"] == "digits"
    if labels.kind == "noisy":
        rate = float(flags[flags.index("--rate") + 1])
        assert summary["noise_rate"] == pytest.approx(np.mean(labels.observed != labels.true_labels))
        assert len(summary["empirical_transition"]) == 10
        if flags[3] == "sym":
            assert abs(summary["noise_rate"] - rate) < 0.05
    if labels.kind == "pu":
        assert labels.meta["positive_classes"] == [1, 3]
        assert summary["labelled_per_class"][1] == max(1, int(np.floor(0.2 * labels.true_labels.sum() + 0.5)))


def test_csv_output_and_determinism(tmp_path, capsys):
    a, b = tmp_path / "a.csv", tmp_path / "b.npz"
    for out in (a, b):
        assert run_cli(["corrupt", "--supervision", "partial", "--seed", "7", "--out", str(out), "--json"]) == 0
    capsys.readouterr()
    np.testing.assert_array_equal(load_labels(a).matrix, load_labels(b).matrix)
    assert a.read_text().startswith("# kind=partial num_classes=10\n")


def test_human_summary_mentions_the_numbers(tmp_path, capsys):
    out = tmp_path / "l.npz"
    assert run_cli(["corrupt", "--supervision", "noisy", "--rate", "0.4", "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert "realised noise rate" in text and "P(observed z | true y)" in text and "labelled fraction" in text


ERRORS = {
    "unknown-supervision": (["--supervision", "weak"], "invalid choice"),
    "rate-out-of-range": (["--supervision", "noisy", "--rate", "1.5"], "rate must be in [0, 1)"),
    "rate-not-a-number": (["--supervision", "noisy", "--rate", "abc"], "invalid float value"),
    "positive-classes-syntax": (["--supervision", "pu", "--positive-classes", "a,b"], "comma-separated"),
    "positive-classes-range": (["--supervision", "pu", "--positive-classes", "0,12"], "class indices in [0, 9]"),
    "positive-classes-all": (["--supervision", "pu", "--positive-classes", ",".join(map(str, range(10)))],
                             "leave at least one negative"),
    "fraction-zero": (["--supervision", "semi", "--labelled-fraction", "0"], "labelled_fraction"),
    "q-out-of-range": (["--supervision", "partial", "--q", "-0.1"], "q must be"),
}


@pytest.mark.parametrize("name", list(ERRORS))
def test_user_errors_are_one_line_exit_2(tmp_path, capsys, name):
    flags, message = ERRORS[name]
    code = run_cli(["corrupt", *flags, "--out", str(tmp_path / "l.npz")])
    captured = capsys.readouterr()
    assert code == 2
    assert captured.err.count("\n") == 1 and "Traceback" not in captured.err
    assert message in captured.err and captured.err.startswith("wsl-diff corrupt: error:")
    assert not (tmp_path / "l.npz").exists()


@pytest.mark.parametrize(
    "out, message",
    [("missing-dir/l.npz", "does not exist"), ("l.txt", "unknown label-file suffix '.txt'"), ("l", "(none)")],
)
def test_bad_out_paths(tmp_path, capsys, out, message):
    code = run_cli(["corrupt", "--supervision", "noisy", "--out", str(tmp_path / out)])
    captured = capsys.readouterr()
    assert code == 2 and captured.err.count("\n") == 1 and message in captured.err


def test_subprocess_exit_code_and_single_line(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "cli.main", "corrupt", "--supervision", "noisy", "--rate", "2",
         "--out", str(tmp_path / "l.npz")],
        cwd=REPO, capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode == 2
    assert proc.stdout == ""
    assert proc.stderr.splitlines() == ["wsl-diff corrupt: error: rate must be in [0, 1), got 2.0"]


def test_supervision_arguments_are_reusable():
    parser = argparse.ArgumentParser()
    parser.add_argument("--seed", type=int, default=0)  # e.g. the training seed of `train`
    add_supervision_arguments(parser, seed_flag="--label-seed", require_supervision=False)
    args = parser.parse_args(["--seed", "5", "--label-seed", "9", "--supervision", "pu", "--positive-classes", "2,4"])
    spec = spec_from_args(args)
    assert spec == CorruptionSpec("pu", positive_classes=(2, 4), seed=9)
    assert parser.parse_args([]).supervision is None  # optional: the caller decides what absent means
    with pytest.raises(ValueError, match="no --supervision given"):
        spec_from_args(parser.parse_args([]))
    args.positive_classes = "1,3"  # set programmatically as a string
    assert spec_from_args(args).positive_classes == (1, 3)
    with pytest.raises(ValueError, match="comma-separated"):
        parse_class_list("1;3")
