"""`wsl-diff demo`: one short end-to-end run on digits.

    wsl-diff demo                                  # sym-40 noisy labels, writes runs/demo
    wsl-diff demo --supervision partial --q 0.3 --out runs/demo-partial

Corrupts the training labels, trains a DMIS and a vanilla diffusion model (128 kimg each by
default: a few minutes on a 2-core CPU) and, for noisy labels, the README's two-stage recipe
(`dmis-refine`: a second DMIS model, as long again, on the labels the first agrees with, as
`wsl-diff refine`; --no-refine skips it), classifies the test split with each as a Bayes
classifier, fits an SVC on pixels as the reference baseline, and writes OUT/report.md with the
accuracies, the timings and the path of the DMIS sample grid.
"""
from __future__ import annotations

import argparse
import json
from typing import Any

from cli.common import (MODEL_NAMES, add_output_arguments, add_supervision_arguments, add_threads_argument,
                        set_threads, spec_from_args)

DEMO_KIMG = 128.0


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    p = subparsers.add_parser("demo", help="a short end-to-end run: corrupt, train DMIS + vanilla, compare to SVC",
                              description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_supervision_arguments(p, seed_flag="--label-seed", require_supervision=False)
    p.set_defaults(supervision="noisy")  # with the flag defaults: symmetric noise at rate 0.4
    p.add_argument("--out", default="runs/demo", help="output directory (default %(default)s)")
    p.add_argument("--kimg", type=float, default=DEMO_KIMG, help="training length of each model (default %(default)s)")
    p.add_argument("--model", choices=MODEL_NAMES, default="small")
    p.add_argument("--no-refine", dest="refine", action="store_false",
                   help="noisy labels: skip the second DMIS stage (dmis-refine)")
    p.add_argument("--seed", type=int, default=0, help="training seed (default %(default)s)")
    add_threads_argument(p)
    add_output_arguments(p, what="the result")
    p.set_defaults(run=run)
    return p


def run(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.table import Table

    from wsl_diffusion.bench.demo import run_demo

    spec = spec_from_args(args)
    if args.seed < 0:
        raise ValueError(f"--seed must be >= 0, got {args.seed}")
    set_threads(args.threads)
    console = Console(stderr=True)
    result = run_demo(args.out, spec=spec, kimg=args.kimg, model=args.model, seed=args.seed,
                      refine=args.refine, progress=not (args.quiet or args.json), console=console)
    if args.json:
        print(json.dumps(result))
        return 0
    table = Table(title=f"wsl-diff demo ({spec.supervision}): test accuracy")
    for col in ("method", "accuracy %", "budget", "NFE/img", "train s"):
        table.add_column(col, justify="left" if col in ("method", "budget") else "right")
    for r in result["rows"]:
        table.add_row(r["method"], f"{100 * r['accuracy']:.2f}", r["budget"],
                      "" if r["nfe_per_image"] is None else str(r["nfe_per_image"]), f"{r['train_seconds']:.1f}")
    Console().print(table)
    if result["samples"]:
        console.print(f"samples: {result['samples']}")
    console.print(f"report: {result['report']} ({result['seconds']:.0f} s in all)")
    return 0
