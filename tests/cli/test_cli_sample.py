"""`wsl-diff sample`, `wsl-diff condense` and `wsl-diff evaluate --samples` on the tiny run."""
import json

import numpy as np
from PIL import Image

from cli.main import main


def one_line_error(capsys, code, *words):
    _, err = capsys.readouterr()
    assert code == 2 and len(err.strip().splitlines()) == 1 and "Traceback" not in err
    for w in words:
        assert w in err


def test_sample_writes_grid_and_npz(tiny_run, tmp_path, capsys):
    out = tmp_path / "grid.png"
    code = main(["sample", str(tiny_run), "--per-class", "2", "--steps", "3", "--out", str(out), "--json"])
    info = json.loads(capsys.readouterr().out)
    assert code == 0 and info["num_images"] == 20
    with Image.open(out) as img:  # 10 rows x 2 columns of 8x8 tiles, 1-pixel gaps, shown 4x
        assert img.size == (4 * (2 * 9 - 1), 4 * (10 * 9 - 1))
    data = np.load(tmp_path / "grid.npz")
    assert data["images"].shape == (20, 8, 8, 1) and data["images"].dtype == np.uint8
    assert data["labels"].tolist() == [c for c in range(10) for _ in range(2)]
    assert json.loads(str(data["meta_json"]))["solver"] == "heun"
    # The same seed gives the same images whatever the batch size; Euler is accepted too.
    again = tmp_path / "again.png"
    assert main(["sample", str(tiny_run), "--per-class", "2", "--steps", "3", "--out", str(again),
                 "--batch-size", "3"]) == 0
    assert np.array_equal(np.load(tmp_path / "again.npz")["images"], data["images"])
    assert main(["sample", str(tiny_run), "--per-class", "1", "--steps", "3", "--solver", "euler",
                 "--guidance", "1.5", "--out", str(tmp_path / "euler.png")]) == 0


def test_sample_errors_are_one_line(tiny_run, tmp_path, capsys):
    one_line_error(capsys, main(["sample", str(tmp_path / "nope"), "--per-class", "2", "--out",
                                 str(tmp_path / "g.png")]), "nope")
    one_line_error(capsys, main(["sample", str(tiny_run), "--per-class", "2", "--out", str(tmp_path / "g.jpg")]),
                   ".png")
    one_line_error(capsys, main(["sample", str(tiny_run), "--per-class", "0", "--out", str(tmp_path / "g.png")]),
                   "--per-class")
    one_line_error(capsys, main(["sample", str(tiny_run), "--per-class", "1", "--out",
                                 str(tmp_path / "missing" / "g.png")]), "does not exist")


def test_condense_writes_results(tiny_run, tmp_path, capsys):
    out = tmp_path / "cond"
    code = main(["condense", str(tiny_run), "--ipc", "1", "--out", str(out), "--steps", "3",
                 "--classifier-steps", "10", "--json"])
    result = json.loads(capsys.readouterr().out)
    assert code == 0 and [r["ipc"] for r in result["results"]] == [1]
    for name in ("results.json", "condensed_ipc1.npz", "samples_ipc1.png"):
        assert (out / name).is_file()


def test_condense_errors_are_one_line(tiny_run, tmp_path, capsys):
    one_line_error(capsys, main(["condense", str(tmp_path / "nope"), "--ipc", "1", "--out", str(tmp_path / "o")]),
                   "nope")
    one_line_error(capsys, main(["condense", str(tiny_run), "--ipc", "1,zero", "--out", str(tmp_path / "o")]),
                   "--ipc")


def test_evaluate_samples_flag(tiny_run, tmp_path, capsys, monkeypatch):
    from wsl_diffusion.eval import sample_quality
    from wsl_diffusion.eval.feature_net import ClassifierConfig, get_evaluator

    # A small evaluator keeps this a test of the command, not of evaluator training.
    small = get_evaluator("digits", config=ClassifierConfig(epochs=0, min_steps=10, width=8), cache_dir=tmp_path)
    monkeypatch.setattr(sample_quality, "get_evaluator", lambda *a, **k: small)
    real_train = sample_quality.train_classifier  # and a short CAS recipe
    monkeypatch.setattr(sample_quality, "train_classifier",
                        lambda *a, config, **k: real_train(*a, config=config.replace(epochs=0, min_steps=10), **k))
    code = main(["evaluate", str(tiny_run), "--samples", "--per-class", "2", "--threads", "1", "--json"])
    result = json.loads(capsys.readouterr().out)
    assert code == 0 and result["num_samples"] == 20 and result["fd_n_fake"] == 20
    for key in ("fd", "cw_fd", "density", "coverage", "cw_density", "cw_coverage", "cas", "sample_accuracy"):
        assert key in result
    code = main(["evaluate", str(tiny_run), "--samples", "--per-class", "2", "--threads", "1"])
    out = capsys.readouterr().out
    assert code == 0 and "CW-FD" in out and "n_fake=20" in out
    one_line_error(capsys, main(["evaluate", str(tmp_path / "nope"), "--samples", "--threads", "1"]), "nope")
