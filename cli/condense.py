"""`wsl-diff condense RUN_DIR --ipc 1,10,50 --out DIR`: noisy dataset condensation with a run.

For each IPC (images per class): draw IPC images of every class from the run's EMA model (Heun,
fixed --seed), train a fresh small classifier on them alone, and report its accuracy on the real
test split — beside the baseline of IPC random real training images per class carrying the run's
observed (noisy / one random candidate) labels, trained and tested the same way.
DIR receives results.json, condensed_ipc{N}.npz (the synthetic sets) and samples_ipc{N}.png.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from cli.common import add_threads_argument, parse_positive_ints, set_threads
from wsl_diffusion.eval.condensation import condense_run
from wsl_diffusion.eval.feature_net import ClassifierConfig


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    p = subparsers.add_parser("condense", help="condense a run's dataset into IPC generated images per class",
                              description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("run_dir", help="a run directory made by `wsl-diff train`")
    p.add_argument("--ipc", default="1,10,50", help="comma-separated images per class (default 1,10,50)")
    p.add_argument("--out", required=True, help="output directory (created if missing)")
    p.add_argument("--seed", type=int, default=0, help="sampling, baseline-subset and classifier seed")
    p.add_argument("--steps", type=int, default=18, help="Heun steps (default 18)")
    p.add_argument("--guidance", type=float, default=0.0, help="classifier-free guidance weight w >= 0")
    p.add_argument("--classifier-steps", type=int, default=None,
                   help="optimiser steps of each classifier (default: the recipe's 30 epochs, at least 300 steps)")
    add_threads_argument(p)
    p.add_argument("--json", action="store_true", help="print the results as one JSON object on stdout")
    p.set_defaults(run=run)
    return p


def run(args: argparse.Namespace) -> int:
    ipcs = parse_positive_ints(args.ipc, "--ipc")
    if args.steps < 1:
        raise ValueError(f"--steps must be >= 1; got {args.steps}")
    classifier = ClassifierConfig(seed=args.seed)
    if args.classifier_steps is not None:
        if args.classifier_steps < 1:
            raise ValueError(f"--classifier-steps must be >= 1; got {args.classifier_steps}")
        classifier = classifier.replace(epochs=0, min_steps=args.classifier_steps)
    set_threads(args.threads)

    def show(row: dict) -> None:
        if args.json:
            return
        line = f"IPC {row['ipc']:>3}: synthetic {100 * row['synthetic_accuracy']:6.2f}%"
        if row["baseline_accuracy"] is None:
            line += "  (no labelled training rows: no baseline)"
        else:
            line += (f"  noisy-real baseline {100 * row['baseline_accuracy']:6.2f}% ({row['num_baseline']} images, "
                     f"{100 * row['baseline_label_accuracy']:.0f}% of their labels correct)")
        print(line, flush=True)

    result = condense_run(Path(args.run_dir), ipcs=ipcs, out_dir=Path(args.out), seed=args.seed,
                          guidance=args.guidance, num_steps=args.steps,
                          classifier=classifier, on_result=show)
    if args.json:
        print(json.dumps(result))
    else:
        print(f"test accuracy on {result['results'][0]['num_test']} real test images; wrote {args.out}/results.json",
              file=sys.stdout)
    return 0
