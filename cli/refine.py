"""`wsl-diff refine`: a second stage for noisy labels, trained on the labels the first model agrees with.

    wsl-diff train --supervision noisy --noise sym --rate 0.4 --out runs/stage1
    wsl-diff refine runs/stage1 --out runs/stage2          # trains stage 2 (256 kimg by default)
    wsl-diff refine runs/stage1 --out runs/stage2 --resume # continue an interrupted stage 2

Stage 1's classifier (its inference posterior, no label read) names a class for every training
image; a label is kept where the model names it, and every other row becomes unlabelled. Stage 2
trains a new DMIS model on those semi-supervised labels with stage 1's settings (seed, model,
length, validation share). It writes RUN2/refine_labels.npz, then everything `wsl-diff train`
writes. With --validation in stage 1, stage 2 holds out the same rows and scores its model on
their noisy labels, so summary.json's validation scores of the two stages compare directly (the
last line printed pairs them).
See wsl_diffusion/training/refine.py for why it helps, and the README for what it was measured to do.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from rich.console import Console

from cli.common import add_output_arguments, add_threads_argument, set_threads
from cli.train import train_and_report
from label_models.agreement import STAGE_KEY
from label_models.io import load_labels
from wsl_diffusion.config import Execution
from wsl_diffusion.run import CONFIG_NAME, SUMMARY_NAME, check_run_dir, load_config, load_run
from wsl_diffusion.training.refine import stage_one_problem, write_stage_two


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    p = subparsers.add_parser("refine", help="noisy labels: train a second model on the labels a finished run agrees with",
                              description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("stage1", metavar="RUN", help="a finished noisy-label DMIS run directory (stage 1)")
    p.add_argument("--out", required=True, help="stage 2's run directory")
    p.add_argument("--resume", action="store_true", help="continue stage 2 in --out from its checkpoint")
    p.add_argument("--kimg", dest="total_kimg", type=float, default=None,
                   help="stage 2's length in thousands of images (default: stage 1's; with --resume: extend it)")
    p.add_argument("--min-confidence", type=float, default=0.0, metavar="TAU",
                   help="keep a label only where stage 1's classifier names it with probability >= TAU "
                        "(default 0: wherever it names it; an experiment: 0.9 lost in a probe, "
                        "benchmarks/results/digits/select/refine_min_confidence.md)")
    p.add_argument("--device", default="cpu", help="cpu, cuda, cuda:N or auto")
    add_threads_argument(p)
    add_output_arguments(p)
    p.set_defaults(run=run)
    return p


def resumed_config(stage1: Path, out: Path, total_kimg: float | None):
    """The saved stage-2 config in `out`, checked to be a second stage of `stage1`."""
    if not (out / CONFIG_NAME).is_file():
        raise ValueError(f"{out} holds no second stage to resume; start it without --resume")
    config = load_config(out)
    source = load_labels(config.labels_file).meta.get(STAGE_KEY, {}).get("from") if config.labels_file else None
    if source != str(stage1.resolve()):
        raise ValueError(f"{out} is not a second stage of {stage1} (its labels came from {source}); "
                         f"resume it with the RUN it was refined from, or start a new --out")
    return config if total_kimg is None else config.replace(total_kimg=total_kimg)


def stage_comparison(stage1: Path, stage2: Path) -> str | None:
    """One line comparing the two stages' validation scores, or None where either run has none.
    Stage 2 scores stage 1's held-out rows against stage 1's noisy labels, so the numbers pair up:
    the agreement of the model's most probable class with the noisy label (the score the second
    trial in benchmarks/results/digits/select/refine_agreement.md decides by) and the held-out-T
    log-likelihood."""
    try:
        one, two = (json.loads((d / SUMMARY_NAME).read_text()).get("validation") or {} for d in (stage1, stage2))
    except (OSError, ValueError):
        return None
    if not (one.get("rows") and two.get("rows") and "agreement_shared" in one and "agreement_shared" in two):
        return None
    parts = [f"agreement with the noisy labels {100 * one['agreement_shared']:.1f}% -> "
             f"{100 * two['agreement_shared']:.1f}%"]
    if "log_lik_heldout_t" in one and "log_lik_heldout_t" in two:
        parts.append(f"held-out-T log-likelihood {one['log_lik_heldout_t']:.4f} -> {two['log_lik_heldout_t']:.4f} nats/row")
    return f"validation, stage 1 -> stage 2 (the same {two['rows']} held-out rows and noisy labels): " + "; ".join(parts)


def run(args: argparse.Namespace) -> int:
    set_threads(args.threads)
    console = Console(stderr=True)
    stage1, out = Path(args.stage1), Path(args.out)
    if args.total_kimg is not None and not args.total_kimg > 0:
        raise ValueError(f"--kimg must be > 0; got {args.total_kimg}")
    if not 0.0 <= args.min_confidence < 1.0:
        raise ValueError(f"--min-confidence must be in [0, 1); got {args.min_confidence}")
    if args.resume:
        if args.min_confidence:
            raise ValueError("--min-confidence chooses stage 2's labels when it starts; a resume keeps them, so "
                             "drop the flag (or start a new --out)")
        config = resumed_config(stage1, out, args.total_kimg)
    else:
        check_run_dir(out, resume=False)  # before the stage-1 model classifies anything
        if not stage1.is_dir():
            raise ValueError(f"{stage1} does not exist; pass the directory of a finished noisy-label run")
        try:
            finished = json.loads((stage1 / SUMMARY_NAME).read_text()).get("finished", False)
        except (OSError, ValueError):
            finished = False
        if not finished:
            raise ValueError(f"{stage1} holds no finished training run (its {SUMMARY_NAME} is missing or says "
                             f"unfinished); finish it first with `wsl-diff train --out {stage1} --resume`")
        first = load_run(stage1)
        problem = stage_one_problem(first)
        if problem:
            raise ValueError(problem)
        if not args.json:
            console.print(f"classifying the training images with the model in {stage1} ...")
        _, config, report = write_stage_two(first, out, total_kimg=args.total_kimg,
                                            device="cpu" if args.device == "auto" else args.device,
                                            min_confidence=args.min_confidence)
        if not args.json:
            console.print(f"stage 2 keeps {100 * report['kept_share']:.1f}% of {report['rows']} training labels "
                          "(where stage 1's classifier names the label); the rest train unlabelled"
                          + (f"; {100 * report['kept_right']:.1f}% of the kept labels are right (read from the "
                             "label file's true labels, a diagnostic)" if report.get("kept_right") is not None else ""))
        if report["classes_without_labels"]:
            console.print(f"warning: stage 2 keeps no label of class "
                          f"{', '.join(map(str, report['classes_without_labels']))} (stage 1's classifier names none "
                          "of them); it can learn those classes only from unlabelled images, so consider training "
                          "stage 1 longer first")
    code = train_and_report(config, out, args, console=console, execution=Execution(device=args.device))
    line = stage_comparison(stage1, out) if code == 0 and not args.json else None
    if line:
        console.print(line)
    return code
