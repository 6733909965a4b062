"""The benchmark scripts stay runnable: each is smoke-run on a tiny budget (numbers not checked)."""
import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
CIFAR = ROOT.parent / "shared" / "data" / "cifar10-jpeg.tar.gz"


def script_process(args, timeout=600):
    """Run a script from the repository root in a bare environment; the finished process."""
    return subprocess.run([sys.executable, *args], cwd=ROOT, capture_output=True, text=True, timeout=timeout,
                          env={"OMP_NUM_THREADS": "2", "PATH": "/usr/bin:/bin", "HOME": str(ROOT)})


def run_script(args, timeout=600):
    proc = script_process(args, timeout)
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


@pytest.fixture(scope="module")
def tiny_noisy_run(tmp_path_factory, digits_small):
    """(run directory, labels) of a 10-step DMIS run on sym-40 labels, with class pruning."""
    from label_models.corruption import CorruptionSpec, corrupt
    from wsl_diffusion.config import TrainConfig
    from wsl_diffusion.posterior import PosteriorConfig
    from wsl_diffusion.training.loop import train

    train_data, _ = digits_small
    spec = {"supervision": "noisy", "noise": "sym", "rate": 0.4}
    labels = corrupt(train_data.targets, num_classes=10, spec=CorruptionSpec(**spec))
    cfg = TrainConfig(model="tiny", batch_size=32, total_kimg=10 * 32 / 1000, samples_per_class=0, supervision=spec,
                      posterior=PosteriorConfig(schedule="interval", sigma_lo=0.4, sigma_hi=5.0, num_sigmas=3,
                                                keep_classes=3, prune_sigmas=1))
    run_dir = tmp_path_factory.mktemp("noisy") / "run"
    train(cfg, run_dir, train_data=train_data, labels=labels, progress=False)
    return run_dir, labels


def test_first_table_script_keeps_the_labels_with_the_prior_and_moves_every_pruned_label(tmp_path, tiny_noisy_run):
    """Two known answers: the prior's table is the labels themselves, and a row whose observed
    class the pruning dropped (probability 0) cannot keep it in the pruned table."""
    run_dir, labels = tiny_noisy_run
    out = tmp_path / "first.json"
    run_script(["benchmarks/first_table.py", str(run_dir), "--json", str(out)])
    (rec,) = json.loads(out.read_text())
    truth_rate = float((labels.observed == labels.true_labels).mean())
    assert rec["labels_true_class_rate"] == pytest.approx(truth_rate)
    assert rec["tables"]["prior"]["moved_from_z"] == 0.0
    assert rec["tables"]["prior"]["table_true_class_rate"] == pytest.approx(truth_rate)
    assert rec["tables"]["pruned"]["moved_from_z"] >= rec["z_dropped_by_pruning"] > 0.0
    assert set(rec["tables"]) == {"pruned", "all classes", "pruning pass", "prior"}


@pytest.mark.parametrize("args, message", [(["--folds", "1"], "--folds must be at least 2"),
                                           (["--folds", "3", "--train-fold", "3"], "--train-fold must be in 0..2")])
def test_crossfit_probe_refuses_bad_folds_before_training(tmp_path, args, message):
    proc = script_process(["benchmarks/crossfit_probe.py", "--out", str(tmp_path), *args], timeout=120)
    assert proc.returncode != 0
    assert message in proc.stderr and "Traceback" not in proc.stderr
    assert not any(tmp_path.iterdir())  # refused before any run was started
