import json
import subprocess
import sys

import numpy as np
import pytest

from cli.main import main


def run_cli(args, capsys):
    code = main(args)
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.parametrize("args,needle", [
    (["train", "--out", "X"], "--supervision"),
    (["train", "--supervision", "partial", "--q", "1.5", "--out", "X"], "q"),
    (["train", "--supervision", "noisy", "--rate", "-0.1", "--out", "X"], "rate"),
    (["train", "--supervision", "partial", "--topk", "0", "--out", "X"], "topk"),
    (["train", "--supervision", "partial", "--sigmas", "5,1", "--out", "X"], "--sigmas"),
    (["train", "--supervision", "partial", "--sigmas", "abc", "--out", "X"], "--sigmas"),
    (["train", "--supervision", "partial", "--method", "magic", "--out", "X"], "method"),
    (["train", "--labels", "does-not-exist.npz", "--out", "X"], "does-not-exist"),
    (["train", "--resume", "--out", "no-such-run"], "no-such-run"),
])
def test_bad_train_input_is_one_line_exit_2(tmp_path, capsys, monkeypatch, args, needle):
    monkeypatch.chdir(tmp_path)
    code, out, err = run_cli(args, capsys)
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and needle in lines[0] and "Traceback" not in err


def test_label_file_of_wrong_length_is_rejected(tmp_path, capsys):
    from label_models.io import save_labels
    from label_models.corruption import CorruptionSpec, corrupt

    labels = corrupt(np.arange(50) % 10, num_classes=10, spec=CorruptionSpec(supervision="noisy", rate=0.2))
    save_labels(tmp_path / "short.npz", labels)
    code, _, err = run_cli(["train", "--labels", str(tmp_path / "short.npz"), "--out", str(tmp_path / "r")], capsys)
    assert code == 2 and len(err.strip().splitlines()) == 1 and "50" in err


def test_corrupt_label_file_is_rejected(tmp_path, capsys):
    bad = tmp_path / "bad.npz"
    bad.write_bytes(b"not a zip archive")
    code, _, err = run_cli(["train", "--labels", str(bad), "--out", str(tmp_path / "r")], capsys)
    assert code == 2 and len(err.strip().splitlines()) == 1 and "Traceback" not in err


def test_train_cli_end_to_end_json(tmp_path):
    """The real console entry point, in a subprocess: a tiny run, JSON summary on stdout."""
    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "cli.main", "train", "--supervision", "partial", "--q", "0.3",
           "--model", "tiny", "--kimg", "0.1", "--batch-size", "16", "--num-sigmas", "2",
           "--table-keep-classes", "0", "--table-refresh-kimg", "0.05", "--samples-per-class", "1",
           "--out", str(out), "--json", "--threads", "2"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    summary = json.loads(proc.stdout)
    assert summary["finished"] and summary["steps"] == 7
    assert (out / "checkpoint.pt").is_file() and (out / "samples.png").is_file()


def test_given_flags_are_the_typed_ones_even_when_equal_to_the_default():
    from cli.common import given_flags
    from cli.main import build_parser

    parser = build_parser({"train": "cli.train"})
    sub = parser.parse_args(["train", "--out", "x"]).parser
    assert given_flags(sub, ["--out", "x", "--lr", "0.001", "--label-seed", "3"]) == {"out", "lr", "corruption_seed"}
    assert sub.get_default("lr") == 1e-3  # the defaults are back afterwards


def test_every_train_flag_is_either_resumable_or_checked_against_the_saved_run():
    """A flag the resume check does not know would crash it (AttributeError) or slip through."""
    from dataclasses import fields

    from cli.main import build_parser
    from cli.train import RESUMABLE_FLAGS, SUPERVISION_KEYS
    from wsl_diffusion.config import TrainConfig

    sub = build_parser({"train": "cli.train"}).parse_args(["train", "--out", "x"]).parser
    config_fields = {f.name for f in fields(TrainConfig)}
    special = {"labels", "checkpoint_kimg", "sigmas", "num_sigmas", "table_keep_classes"}
    for action in sub._actions:
        if action.dest == "help":
            continue
        assert action.dest in RESUMABLE_FLAGS | set(SUPERVISION_KEYS) | special | config_fields, action.dest


def test_resume_accepts_the_run_flags_and_rejects_changed_ones(tmp_path, capsys):
    out = str(tmp_path / "run")
    base = ["train", "--supervision", "noisy", "--rate", "0.2", "--model", "tiny", "--batch-size", "16",
            "--num-sigmas", "2", "--table-keep-classes", "0", "--samples-per-class", "0", "--lr", "0.002",
            "--out", out, "--quiet", "--threads", "1"]
    assert run_cli([*base, "--kimg", "0.032"], capsys)[0] == 0
    # the same flags again, a longer run, other threads: allowed
    code, out_text, err = run_cli([*base, "--resume", "--kimg", "0.064", "--threads", "2", "--json"], capsys)
    assert code == 0, err
    # no refresh yet: the run's T is still the symmetric start at --assumed-noise-rate (0.2)
    assert json.loads(out_text)["estimated_noise_rate"] == pytest.approx(0.2)
    code, _, err = run_cli(["train", "--out", out, "--resume", "--lr", "0.001", "--rate", "0.3", "--model", "tiny"],
                           capsys)
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert "--lr 0.001 (saved: 0.002)" in err and "--rate 0.3 (saved: 0.2)" in err and "--model" not in err


def test_a_held_run_directory_is_one_line_before_anything_is_printed(tmp_path, capsys):
    holder = subprocess.Popen(
        [sys.executable, "-c",
         "import sys, time; from wsl_diffusion.run import run_lock\n"
         "with run_lock(sys.argv[1]):\n    print('locked', flush=True); time.sleep(60)", str(tmp_path / "run")],
        stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        code, _, err = run_cli(["train", "--supervision", "noisy", "--model", "tiny", "--kimg", "0.1",
                                "--out", str(tmp_path / "run")], capsys)
        assert code == 2 and err.strip().splitlines() == [err.strip()] and f"PID {holder.pid}" in err
    finally:
        holder.kill()
        holder.wait()
