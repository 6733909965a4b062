"""The benchmark scripts stay runnable: each is smoke-run on a tiny budget (numbers not checked)."""
import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
CIFAR = ROOT.parent / "shared" / "data" / "cifar10-jpeg.tar.gz"


def run_script(args, timeout=600):
    proc = subprocess.run([sys.executable, *args], cwd=ROOT, capture_output=True, text=True, timeout=timeout,
                          env={"OMP_NUM_THREADS": "2", "PATH": "/usr/bin:/bin", "HOME": str(ROOT)})
    assert proc.returncode == 0, proc.stderr[-2000:]
    return proc.stdout


@pytest.mark.parametrize("script", ["step_cost.py", "posterior_cost.py", "accelerator_cifar.py", "sample_quality.py"])
def test_scripts_parse(script):
    assert "usage" in run_script([f"benchmarks/{script}", "--help"]).lower()


def test_accelerator_script_cpu_smoke(tmp_path):
    """The GPU script, on the CPU with the tiny model and a few seconds per method."""
    if not CIFAR.is_file():
        pytest.skip("the CIFAR-10 tarball (../shared/data) is not present")
    out = run_script(["benchmarks/accelerator_cifar.py", "--data", str(CIFAR), "--out", str(tmp_path),
                      "--device", "cpu", "--model", "tiny", "--seconds", "2", "--train-per-class", "3",
                      "--test-per-class", "1", "--batch-size", "16", "--refresh-kimg", "0.016", "--json"])
    result = json.loads(out)
    assert result["train_images"] == 30 and result["test_images"] == 10
    for method in ("vanilla", "dmis"):
        m = result["methods"][method]
        assert m["steps"] >= 1 and m["train_images_per_second"] > 0
        assert m["posterior"]["interval x6"]["nfe_per_image"] == 60
    assert (tmp_path / "dmis" / "samples.png").is_file()
