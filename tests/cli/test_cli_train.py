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
