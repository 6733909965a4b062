"""Would a cross-fitted E-step close the sym-40 / instance-40 gap? A probe that reads the truth.

    python benchmarks/crossfit_probe.py --out runs/crossfit --noise sym --seed 0 [--kimg 128] [--folds 2]

`benchmarks/results/digits-256kimg/gap_cause.md` found that on the rows a run trained on, the
E-step (argmax f(y | x) T[y, z]) is right 4.9 (sym-40) and 7.2 (instance-40) points less often
than on rows it never trained on: f has already absorbed the row's label, and T counts it again.
This probe splits the training rows into --folds folds (a seeded permutation; 2: two halves),
trains DMIS on all rows but one fold at --kimg (default settings otherwise; `small`, one
thread), once per fold, and labels every row by the E-step of the model that did NOT train on it
(its inference posterior times its own estimated T). More folds give each labeller more of the
data ((K - 1) / K of it) at K training runs per table.
It writes OUT/<noise>-40/seed<k>[-folds<K>]/crossfit.npz (those labels, as clean labels) and prints the
`wsl-diff train --labels ...` command that trains DMIS on them from scratch: the "DMIS on table"
experiment of gap_cause.md with a cross-fitted table instead of the run's own.
It prints the true-class rates of the labels, the in-sample E-step of each fold model on its own
rows, and the cross-fitted E-step. Every number reads the true labels: it chooses nothing.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch

from cli import train as train_cli
from label_models.io import save_labels
from label_models.labels import ImpreciseLabels
from wsl_diffusion.classifier import DiffusionClassifier
from wsl_diffusion.data.datasets import ArrayDataset
from wsl_diffusion.data.sources import load_dataset
from wsl_diffusion.run import CHECKPOINT_NAME, load_checkpoint, make_labels
from wsl_diffusion.training.loop import train


def config_for(noise: str, seed: int, kimg: float):
    parser = argparse.ArgumentParser()
    train_cli.add_parser(parser.add_subparsers())
    args = parser.parse_args(["train", "--supervision", "noisy", "--noise", noise, "--rate", "0.4", "--label-seed",
                              str(seed), "--seed", str(seed), "--kimg", f"{kimg:g}", "--model", "small",
                              "--samples-per-class", "0", "--out", "unused"])
    return train_cli.build_config(args)


def estep(run_dir: Path, images: np.ndarray, observed: np.ndarray) -> np.ndarray:
    """argmax_y f(y | x) T[y, z] under a run's inference posterior and its final T."""
    probs = DiffusionClassifier.from_run(run_dir).predict_proba(images)
    t = load_checkpoint(run_dir / CHECKPOINT_NAME)["transition"].double().numpy()
    return (probs * t[:, observed].T).argmax(1)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--noise", default="sym")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--kimg", type=float, default=128.0, help="each fold model's budget")
    ap.add_argument("--folds", type=int, default=2, help="number of folds, K >= 2 (default 2: two halves)")
    ap.add_argument("--train-fold", type=int, default=None,
                    help="only train this fold's model and exit (run several at once, then once without it)")
    args = ap.parse_args()
    if args.folds < 2:
        raise SystemExit(f"error: --folds must be at least 2, got {args.folds}")
    if args.train_fold is not None and not 0 <= args.train_fold < args.folds:
        raise SystemExit(f"error: --train-fold must be in 0..{args.folds - 1}, got {args.train_fold}")
    torch.set_num_threads(1)
    out = args.out / f"{args.noise}-40" / (f"seed{args.seed}" if args.folds == 2 else f"seed{args.seed}-folds{args.folds}")
    config = config_for(args.noise, args.seed, args.kimg)
    train_data, test_data = load_dataset(config.dataset)
    labels = make_labels(config, train_data)
    truth, z = labels.true_labels, labels.observed
    folds = np.array_split(np.random.default_rng([args.seed, 0xC7]).permutation(len(z)), args.folds)
    crossfit = np.empty(len(z), dtype=np.int64)
    report = {"labels": float((z == truth).mean() * 100), "folds": args.folds, "kimg": args.kimg}
    for f, held in enumerate(folds):
        if args.train_fold is not None and f != args.train_fold:
            continue
        rows = np.sort(np.concatenate([folds[g] for g in range(args.folds) if g != f]))
        run_dir = out / (f"half{f}" if args.folds == 2 else f"fold{f}")
        if not (run_dir / "summary.json").is_file():
            part = ArrayDataset(train_data.images[rows], train_data.targets[rows], train_data.class_names)
            train(config, run_dir, train_data=part, labels=labels.take(rows), test_data=test_data,
                  test_targets=test_data.targets, progress=False)
        if args.train_fold is not None:
            return
        crossfit[held] = estep(run_dir, train_data.images[held], z[held])
        own = estep(run_dir, train_data.images[rows], z[rows])
        report[f"fold{f} test"] = json.loads((run_dir / "summary.json").read_text())["test_accuracy_ema"] * 100
        report[f"fold{f} own rows E-step"] = float((own == truth[rows]).mean() * 100)
        report[f"fold{f} held-out rows E-step"] = float((crossfit[held] == truth[held]).mean() * 100)
    report["cross-fitted E-step"] = float((crossfit == truth).mean() * 100)
    save_labels(out / "crossfit.npz", ImpreciseLabels(np.eye(labels.num_classes, dtype=np.float32)[crossfit],
                                                      kind="clean", true_labels=truth))
    (out / "probe.json").write_text(json.dumps(report, indent=1))
    print(json.dumps(report, indent=1))
    print(f"wsl-diff train --labels {out / 'crossfit.npz'} --kimg 256 --model small --seed {args.seed} "
          f"--samples-per-class 0 --threads 1 --quiet --out {out / 'final'}")


if __name__ == "__main__":
    main()
