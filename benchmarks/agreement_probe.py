"""A second stage for noisy labels, probed: keep only the labels the trained model agrees with.

    python benchmarks/agreement_probe.py RUN_DIR [--out LABELS.npz] [--threads 1]

Reads a finished noisy-label run. For each training image it takes the model's own class, the
argmax of the run's inference posterior (INFERENCE_DRAWS noise draws per level; no label read),
and writes a semi-supervised label file: a row keeps its observed label z where the model's class
is z, and is unlabelled otherwise. Training DMIS on that file (the command it prints) is the probe:
CleanLearning's "find the label issues, drop them, retrain", except that the dropped rows stay in
as unlabelled images. The file keeps the true labels of a synthetic label file, so the second run
can report its diagnostics; nothing trains on them.

Label-free apart from one diagnostic that reads the truth (synthetic label files only): how many
of the kept labels are right, and how many wrong labels are kept.
Runs trained with `--validation` are refused: their held-out rows would need the same split in
the second run, which this probe does not arrange.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch

from label_models.io import save_labels
from label_models.labels import ImpreciseLabels
from wsl_diffusion import DiffusionClassifier
from wsl_diffusion.run import load_run


def agreement_labels(run) -> tuple[ImpreciseLabels, dict]:
    """(the semi-supervised label file's labels, a report) for one finished noisy-label run
    (`load_run`'s result)."""
    run_dir = run.run_dir
    if run.labels.kind != "noisy":
        raise SystemExit(f"error: {run_dir} was trained on {run.labels.kind} labels; this probe is for noisy labels")
    if run.config.validation:
        raise SystemExit(f"error: {run_dir} holds out a validation split; train the first stage without --validation")
    train, _ = run.splits()
    z = np.asarray(run.labels.observed)
    model_class = DiffusionClassifier.from_run(run_dir).predict_proba(train.images).argmax(1)
    keep = model_class == z
    k = run.labels.num_classes
    matrix = np.where(keep[:, None], np.eye(k, dtype=np.float32)[z], np.ones((len(z), k), dtype=np.float32))
    truth = None if run.labels.true_labels is None else np.asarray(run.labels.true_labels)
    labels = ImpreciseLabels(matrix, kind="semi", true_labels=truth,
                             meta={"agreement_probe": str(run_dir), "rule": "model argmax == observed label"})
    report = {"run_dir": str(run_dir), "rows": int(len(z)), "kept_share": float(keep.mean())}
    if truth is not None:  # a diagnostic: reads the truth only to report
        report["kept_right"] = float((z[keep] == truth[keep]).mean()) if keep.any() else None
        report["wrong_kept_share_of_all_rows"] = float((keep & (z != truth)).mean())
        report["observed_right"] = float((z == truth).mean())
    return labels, report


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("run_dir")
    ap.add_argument("--out", type=Path, default=None, help="label file to write (default RUN_DIR/agreement.npz)")
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    if not Path(args.run_dir, "summary.json").is_file():
        raise SystemExit(f"error: {args.run_dir} has no summary.json; pass a finished training run")
    torch.set_num_threads(args.threads)
    run = load_run(args.run_dir)
    labels, report = agreement_labels(run)
    out = args.out or Path(args.run_dir) / "agreement.npz"
    save_labels(out, labels)
    report["labels_file"] = str(out)
    print(json.dumps(report, indent=1))
    print(f"wsl-diff train --dataset {run.config.dataset} --labels {out} --kimg {run.config.total_kimg:g} "
          f"--model {run.config.model} --seed {run.config.seed} --samples-per-class 0 --out RUN2")


if __name__ == "__main__":
    main()
