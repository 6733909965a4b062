"""Sample quality and noisy dataset condensation of trained runs, side by side.

    python benchmarks/sample_quality.py RUN_A [RUN_B ...] [--per-class 100] [--ipc 10] [--seed 0] [--json]

For each run (EMA model, Heun, `--steps`, one seed), in one process:
  * CW-FD with its per-class sample size, FD (with n), density / coverage and their class-wise
    versions, in the feature space of the cached evaluator (trained once on the clean training split);
  * CAS: a fresh classifier trained on the samples, tested on the real test split;
  * sample accuracy: the evaluator's accuracy on the samples w.r.t. their conditioning class;
  * condensation at `--ipc`: the same classifier recipe trained on IPC samples per class vs on IPC
    random real training images per class with the run's observed (noisy) labels.
The IPC set is the first IPC samples of each class of the metric set (per-image seeds make it the
same set `wsl-diff condense --ipc IPC` draws), so no extra sampling is needed.
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from label_models.io import load_labels
from wsl_diffusion.eval.condensation import condensation_scores
from wsl_diffusion.run import aligned_splits
from wsl_diffusion.eval.feature_net import get_evaluator
from wsl_diffusion.eval.sample_quality import evaluate_samples
from wsl_diffusion.sampling import sample_per_class
from wsl_diffusion.run import load_model


def measure(run_dir: Path, args) -> dict:
    net, ckpt, config = load_model(run_dir)
    labels = load_labels(run_dir / "labels.npz")
    t0 = time.perf_counter()
    images, cond = sample_per_class(net, per_class=args.per_class, seed=args.seed, num_steps=args.steps)
    sample_seconds = time.perf_counter() - t0
    evaluator = get_evaluator(config.dataset)
    quality = evaluate_samples(net, config, labels=labels, per_class=args.per_class, seed=args.seed,
                               num_steps=args.steps, evaluator=evaluator, samples=(images, cond))
    quality["sample_seconds"] = sample_seconds
    ipc = min(args.ipc, args.per_class)
    keep = torch.cat([torch.arange(c * args.per_class, c * args.per_class + ipc) for c in range(net.num_classes)])
    train, test = aligned_splits(config, labels)
    cond_row = condensation_scores(net, labels, train, test, ipc=ipc, seed=args.seed,
                                   samples=(images[keep], cond[keep]))
    cond_row.pop("_samples")
    quality.pop("class_details")
    return {"run_dir": str(run_dir), "method": config.method, "label_kind": labels.kind,
            "kimg": float(ckpt["nimg"]) / 1000, "quality": quality, "condensation": cond_row}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run_dirs", nargs="+")
    parser.add_argument("--per-class", type=int, default=100)
    parser.add_argument("--ipc", type=int, default=10)
    parser.add_argument("--steps", type=int, default=18)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    rows = []
    for run in args.run_dirs:
        row = measure(Path(run), args)
        rows.append(row)
        if not args.json:
            q, c = row["quality"], row["condensation"]
            n_cw = q["n_fake_per_class"]
            print(f"{run} ({row['method']}, {row['label_kind']} labels, {row['kimg']:g} kimg; "
                  f"evaluator test acc {100 * q['evaluator']['test_accuracy']:.1f}%)")
            print(f"  CW-FD {q['cw_fd']:.3f} (n={min(n_cw)}/class)  FD {q['fd']:.3f} (n={q['fd_n_fake']}; "
                  f"real test split {q['real_test_fd']:.3f} at n={q['real_test_fd_n_fake']})")
            print(f"  density {q['density']:.3f} coverage {q['coverage']:.3f}  "
                  f"CW-density {q['cw_density']:.3f} CW-coverage {q['cw_coverage']:.3f}  (k={q['k']})")
            print(f"  CAS {100 * q['cas']:.2f}%  sample accuracy {100 * q['sample_accuracy']:.2f}%  "
                  f"(sampling {q['sample_seconds']:.1f} s)")
            base = "n/a" if c["baseline_accuracy"] is None else f"{100 * c['baseline_accuracy']:.2f}%"
            print(f"  condensation IPC {c['ipc']}: synthetic {100 * c['synthetic_accuracy']:.2f}%  "
                  f"noisy-real baseline {base} ({c['num_baseline']} images)", flush=True)
    if args.json:
        print(json.dumps({"seed": args.seed, "per_class": args.per_class, "steps": args.steps, "runs": rows}))


if __name__ == "__main__":
    main()
