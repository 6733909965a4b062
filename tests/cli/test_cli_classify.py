import json

import numpy as np
from PIL import Image

from cli.main import main
from wsl_diffusion.posterior import INFERENCE_DRAWS


def test_classify_images_and_bad_files(tiny_run, digits_small, tmp_path, capsys):
    _, test = digits_small
    good = tmp_path / "digit.png"
    Image.fromarray(test.images[0][..., 0]).save(good)
    big = tmp_path / "big.jpg"  # RGB and 32x32: converted and resized with a note
    Image.fromarray(np.repeat(np.kron(test.images[1][..., 0], np.ones((4, 4), np.uint8))[..., None], 3, 2)).save(big)
    corrupt = tmp_path / "corrupt.png"
    corrupt.write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    code = main(["classify", str(tiny_run), str(good), str(corrupt), str(big), str(tmp_path / "missing.png"), "--json"])
    out, err = capsys.readouterr()
    assert code == 2  # some images failed ...
    result = json.loads(out)
    assert [r["image"] for r in result["results"]] == [str(good), str(big)]  # ... the others were classified
    assert result["failed"] == 2
    for r in result["results"]:
        # 3 levels x 10 classes, each level scored INFERENCE_DRAWS times
        assert 0 <= r["class"] < 10 and abs(sum(r["probabilities"]) - 1) < 1e-5 and r["nfe"] == 30 * INFERENCE_DRAWS
    err_lines = [l for l in err.splitlines() if "error" in l]
    assert len(err_lines) == 2 and "corrupt.png" in err_lines[0] and "missing.png" in err_lines[1]
    assert "resized" in err and "Traceback" not in err
    assert main(["classify", str(tiny_run), str(good), "--json", "--draws", "1"]) == 0
    assert json.loads(capsys.readouterr().out)["results"][0]["nfe"] == 30


def test_classify_wrong_run_dir_is_one_line(tmp_path, capsys):
    img = tmp_path / "x.png"
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(img)
    code = main(["classify", str(tmp_path / "nope"), str(img)])
    _, err = capsys.readouterr()
    assert code == 2 and len(err.strip().splitlines()) == 1 and "nope" in err


def test_evaluate_json(tiny_run, capsys):
    code = main(["evaluate", str(tiny_run), "--json", "--limit", "40", "--reference-sigmas", "5",
                 "--schedules", "grid-5,median-1,run-interval-3-keep2"])
    out, _ = capsys.readouterr()
    assert code == 0
    rows = {r["schedule"]: r for r in json.loads(out)["schedules"]}
    assert rows["grid-5"]["nfe_per_image"] == 50 and rows["median-1"]["nfe_per_image"] == 10
    assert rows["run-interval-3-keep2"]["nfe_per_image"] == 10 + 2 * 2
    for r in rows.values():
        assert 0 <= r["accuracy"] <= 1 and r["nll"] > 0 and len(r["calibrated"]["temperatures"]) == 2
        assert r["ms_per_image"] > 0 and r["peak_gpu_mib"] is None  # the CPU has no peak-memory counter


def test_evaluate_budgets_stay_within_their_nfe_and_plot(tiny_run, tmp_path, capsys):
    """--budgets adds the schedule fitted for each budget (on the run's own training images and
    labels), each within its budget; --plot writes the accuracy-vs-NFE picture."""
    plot = tmp_path / "nfe.png"
    code = main(["evaluate", str(tiny_run), "--json", "--limit", "30", "--schedules", "median-1",
                 "--budgets", "10,14", "--plot", str(plot)])
    out, _ = capsys.readouterr()
    assert code == 0 and plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    rows = {r["schedule"]: r for r in json.loads(out)["schedules"]}
    assert 0 < rows["budget-10"]["nfe_per_image"] <= 10 and 0 < rows["budget-14"]["nfe_per_image"] <= 14
    assert main(["evaluate", str(tiny_run), "--budgets", "ten"]) == 2


def test_classify_with_a_budget_spends_at_most_it(tiny_run, digits_small, tmp_path, capsys):
    _, test = digits_small
    good = tmp_path / "digit.png"
    Image.fromarray(test.images[0][..., 0]).save(good)
    assert main(["classify", str(tiny_run), str(good), "--json", "--budget", "12"]) == 0
    result = json.loads(capsys.readouterr()[0])
    assert 10 <= result["results"][0]["nfe"] <= 12
    assert main(["classify", str(tiny_run), str(good), "--budget", "9"]) == 2  # cannot score 10 classes once
    assert "cannot score all 10 classes" in capsys.readouterr()[1]
