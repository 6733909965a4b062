"""`wsl-diff evaluate RUN_DIR`: the diffusion posterior of a run on its test split.

For each noise-level schedule (a 100-sigma reference grid, uniform, the paper's median interval,
the single median, the run's own interval, that interval with class pruning, and with the
inference's noise draws per level): test accuracy,
NLL and ECE at the run's temperature and after temperature calibration (cross-fitted on two
halves of the test split, so no image is scored with a temperature fitted on its own label),
network evaluations (NFE) per image, time per image, images per second and (GPU) peak memory — an
accuracy-vs-NFE table. --budgets 20,40 adds the schedule DiffusionClassifier picks for each
budget of network evaluations per image (fitted on the run's training images, no clean label needed,
and stored in the run); --plot PATH draws accuracy against NFE as a PNG.

With --samples it measures the run's generated samples instead (--per-class per class): FD and
class-wise FD (each with its sample size), density/coverage and their class-wise versions, CAS
and the evaluator's accuracy on the samples (see wsl_diffusion.eval.sample_quality). The evaluator
classifier is trained once per dataset and cached under $WSL_DIFFUSION_CACHE
(default ~/.cache/wsl-diffusion).
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from cli.common import add_threads_argument, set_threads
from wsl_diffusion.classifier import DiffusionClassifier
from wsl_diffusion.data.datasets import to_model_space
from wsl_diffusion.eval.plots import accuracy_vs_nfe
from wsl_diffusion.eval.posterior_metrics import evaluate_schedules, standard_schedules
from wsl_diffusion.eval.sample_quality import evaluate_samples, summary_lines
from wsl_diffusion.run import TrainedRun, load_run


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    p = subparsers.add_parser("evaluate", help="accuracy / NLL / ECE / NFE of a run's diffusion posterior",
                              description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("run_dir")
    p.add_argument("--reference-sigmas", type=int, default=100, help="levels of the reference grid")
    p.add_argument("--schedules", default=None,
                   help="comma-separated subset of schedule names to run (default: all)")
    p.add_argument("--limit", type=int, default=None, help="evaluate only the first N test images")
    p.add_argument("--budgets", default=None,
                   help="comma-separated NFE budgets per image: add the schedule fitted for each")
    p.add_argument("--plot", default=None, help="write accuracy against NFE as a PNG here")
    add_threads_argument(p)
    p.add_argument("--json", action="store_true")
    g = p.add_argument_group("samples (instead of the posterior table)")
    g.add_argument("--samples", action="store_true",
                   help="measure generated samples: FD, CW-FD, density/coverage, CAS, sample accuracy")
    g.add_argument("--per-class", type=int, default=100, help="samples per class (default 100)")
    g.add_argument("--guidance", type=float, default=0.0, help="classifier-free guidance weight w >= 0")
    g.add_argument("--seed", type=int, default=0, help="sampling seed")
    p.set_defaults(run=run)
    return p


def run(args: argparse.Namespace) -> int:
    set_threads(args.threads)
    run_dir = Path(args.run_dir)
    trained = load_run(run_dir)
    if args.samples:
        return run_samples(args, trained)
    test, targets = trained.test_split()
    images = to_model_space(test.images)
    if args.limit is not None and args.limit < 1:
        raise ValueError(f"--limit must be >= 1 (the number of test images to evaluate); got {args.limit}")
    if args.limit:
        images, targets = images[: args.limit], targets[: args.limit]
    schedules = standard_schedules(trained.posterior, reference_sigmas=args.reference_sigmas)
    if args.schedules:
        wanted = [s.strip() for s in args.schedules.split(",")]
        unknown = [s for s in wanted if s not in schedules]
        if unknown:
            raise ValueError(f"unknown schedule(s) {unknown}; available: {', '.join(schedules)}")
        schedules = {k: schedules[k] for k in wanted}
    schedules = {k: v.replace(temperature=trained.temperature) for k, v in schedules.items()}
    if args.budgets:
        clf = DiffusionClassifier.from_run(run_dir)
        for budget in parse_budgets(args.budgets):
            schedules[f"budget-{budget}"] = clf.schedule_for_budget(budget)  # carries its own fitted tau
    console = Console(stderr=True)
    rows = evaluate_schedules(
        trained.net, images, targets, schedules, log_prior=trained.log_prior, temperature=None,
        on_result=None if args.json else lambda r: console.log(f"{r['schedule']}: acc {100 * r['accuracy']:.2f}%"))
    if args.plot:
        accuracy_vs_nfe(rows, args.plot, title=f"{run_dir.name}: accuracy against cost ({len(images)} test images)")
    if args.json:
        print(json.dumps({"run_dir": str(run_dir), "num_images": len(images), "schedules": rows}))
        return 0
    table = Table(title=f"{run_dir}: diffusion posterior on {len(images)} test images "
                        f"(run temperature {trained.temperature:.3g})")
    for col in ("schedule", "NFE/img", "ms/img", "img/s", "peak MiB", "acc %", "NLL", "ECE", "acc % (cal)",
                "NLL (cal)", "ECE (cal)"):
        table.add_column(col, justify="right")
    for r in rows:
        c = r["calibrated"]
        peak = "CPU" if r["peak_gpu_mib"] is None else f"{r['peak_gpu_mib']:.0f}"
        table.add_row(r["schedule"], str(r["nfe_per_image"]), f"{r['ms_per_image']:.2f}",
                      f"{r['images_per_second']:.0f}", peak,
                      f"{100 * r['accuracy']:.2f}", f"{r['nll']:.3f}", f"{r['ece']:.3f}",
                      f"{100 * c['accuracy']:.2f}", f"{c['nll']:.3f}", f"{c['ece']:.3f}")
    Console(width=160).print(table)
    return 0


def parse_budgets(text: str) -> list[int]:
    """'20,40' -> [20, 40]; ValueError naming the bad entry."""
    out = []
    for part in text.split(","):
        try:
            out.append(int(part))
        except ValueError:
            raise ValueError(f"--budgets takes whole numbers of network evaluations, e.g. 20,40; got {part!r}") from None
    return out


def run_samples(args: argparse.Namespace, trained: TrainedRun) -> int:
    """`--samples`: sample-quality metrics of the run's EMA model (wsl_diffusion.eval.sample_quality)."""
    result = evaluate_samples(trained.net, trained.config, labels=trained.labels, per_class=args.per_class,
                              seed=args.seed, guidance=args.guidance)
    if args.json:
        print(json.dumps({"run_dir": str(trained.run_dir), **result}))
    else:
        print("\n".join([f"{trained.run_dir}: sample quality", *summary_lines(result)]))
    return 0
