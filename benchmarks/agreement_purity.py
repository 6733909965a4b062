"""How pure the labels a second stage keeps would be if stage 1 also had to be confident: a
diagnostic that reads the truth of a synthetic label file and chooses nothing.

    python benchmarks/agreement_purity.py runs/bench256r/runs/asym-40/dmis/seed0 [...] --json out.json

`wsl-diff refine` keeps a row's noisy label z where stage 1's classifier names z. The rows it
keeps wrongly are the ambiguous images (benchmarks/results/digits-256kimg/random_error_ceiling.md),
so a stricter rule might keep fewer of them: z only where the classifier also gives z a
probability of at least tau. Per stage-1 run and tau, this prints the share of training rows kept
and the share of kept labels that are right (the truth is read only here). The tau = 0 row is
refine's rule and reproduces its label file.
"""
from __future__ import annotations

import argparse
import json

import numpy as np
import torch

from wsl_diffusion.classifier import DiffusionClassifier
from wsl_diffusion.eval.validation import label_rows, validation_split
from wsl_diffusion.run import load_run

TAUS = (0.0, 0.5, 0.7, 0.9, 0.95, 0.99)


def purity(run_dir: str, taus=TAUS) -> dict:
    """{tau: (kept share, kept right)} for one finished noisy-label run with true labels."""
    run = load_run(run_dir)
    images = run.splits()[0].images
    n = len(images)
    validation = validation_split(run.config, run.labels, n)
    fit = np.flatnonzero(label_rows(n, validation).numpy())
    z = np.asarray(run.labels.observed)[fit]
    truth = np.asarray(run.labels.true_labels)[fit]
    proba = DiffusionClassifier.from_run(run_dir).predict_proba(images[fit])
    agree = proba.argmax(1) == z
    p_z = proba[np.arange(len(z)), z]
    out = {}
    for tau in taus:
        kept = agree & (p_z >= tau)
        out[tau] = (float(kept.mean()), float((z[kept] == truth[kept]).mean()) if kept.any() else float("nan"))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("runs", nargs="+", help="finished noisy-label runs whose label files carry the truth")
    parser.add_argument("--json", default=None, help="also write the numbers here")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    results = {}
    print("| run | " + " | ".join(f"tau {t:g}: kept, right" for t in TAUS) + " |")
    print("|---|" + "---:|" * len(TAUS))
    for run_dir in args.runs:
        results[run_dir] = purity(run_dir)
        cells = [f"{100 * k:.1f}%, {100 * r:.2f}%" for k, r in results[run_dir].values()]
        print(f"| {run_dir} | " + " | ".join(cells) + " |", flush=True)
    if args.json:
        with open(args.json, "w") as f:
            json.dump({run: {str(t): v for t, v in r.items()} for run, r in results.items()}, f, indent=1)


if __name__ == "__main__":
    main()
