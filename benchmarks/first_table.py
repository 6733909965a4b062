"""Why a young model's first noisy-label table is worse than the labels (a diagnostic).

    python benchmarks/first_table.py RUN_DIR [RUN_DIR ...] [--threads 1] [--json OUT]

Give it runs stopped where the first refresh would come (e.g. `wsl-diff train ... --kimg 8`).
On each run's EMA model it builds the table a refresh would build, argmax_y p(y | x) p(z | y)
with the run's T and prior and a tau fitted to the labels (one noise draw, seed 1), from three
posteriors of the same model:
  * "pruned": the run's own schedule with its class pruning (what the E-step uses): classes the
    pruning pass drops get probability 0, the observed class z included;
  * "all classes": the same schedule, every class refined;
  * "pruning pass": every class, on the pruning pass's levels only.
and, for reference, the prior alone, whose table is the labels themselves. For each it prints,
label-free, the share of labels the table moves away from z and the table's class histogram;
with the pruned posterior also the share of rows whose z the pruning dropped. Read from the
truth (synthetic label files only): the share of the table and of the model's own argmax that
is right. Nothing here is used by training.
"""
from __future__ import annotations

import argparse
import json

import numpy as np
import torch

from table_restriction import load_noisy_run
from wsl_diffusion.posterior import diffusion_posterior, fit_temperature, log_posterior


def table_record(log_p: torch.Tensor, lik: torch.Tensor, observed: torch.Tensor, truth: torch.Tensor | None) -> dict:
    """What a table built from this posterior does to the labels."""
    p = log_p.exp()
    table, own = (p * lik).argmax(1), p.argmax(1)
    nll = -torch.logsumexp(log_p.double() + lik.double().clamp_min(1e-300).log(), dim=1).mean()
    rec = {"moved_from_z": float((table != observed).float().mean()), "label_nll": float(nll),
           "class_share": (np.bincount(table.numpy(), minlength=lik.shape[1]) / len(table)).round(3).tolist()}
    if truth is not None:
        rec["table_true_class_rate"] = float((table == truth).float().mean())
        rec["model_true_class_rate"] = float((own == truth).float().mean())
    return rec


def first_table(run_dir: str) -> dict:
    run, ckpt, x, lik, observed, truth = load_noisy_run(run_dir)
    pruned = diffusion_posterior(run.net, x, run.posterior, generator=torch.Generator().manual_seed(1))
    full = diffusion_posterior(run.net, x, run.posterior.replace(keep_classes=None),
                               generator=torch.Generator().manual_seed(1))
    out = {"run_dir": run_dir, "kimg": float(ckpt["nimg"]) / 1000,
           "labels_true_class_rate": None if truth is None else float((observed == truth).float().mean()),
           "z_dropped_by_pruning": float((~torch.isfinite(pruned.errors.gather(1, observed[:, None]))).float().mean()),
           "tables": {}}
    for name, errors in (("pruned", pruned.errors), ("all classes", full.errors),
                         ("pruning pass", pruned.coarse_errors)):
        tau = fit_temperature(errors, lik, log_prior=run.log_prior)
        rec = table_record(log_posterior(errors, temperature=tau, log_prior=run.log_prior), lik, observed, truth)
        out["tables"][name] = {"tau": tau, **rec}
    out["tables"]["prior"] = {"tau": None, **table_record(run.log_prior.expand_as(lik).clone(), lik, observed, truth)}
    head = f"{run_dir}: pruning dropped z on {100 * out['z_dropped_by_pruning']:.1f}% of rows"
    if truth is not None:
        head += f"; labels {100 * out['labels_true_class_rate']:.1f}% right"
    print(head, flush=True)
    for name, rec in out["tables"].items():
        right = "" if truth is None else (f"table {100 * rec['table_true_class_rate']:5.1f}% right, "
                                          f"model alone {100 * rec['model_true_class_rate']:5.1f}%, ")
        tau = "" if rec["tau"] is None else f"tau {rec['tau']:.3g}, "
        print(f"  {name:13s} {tau}{right}moved {100 * rec['moved_from_z']:5.1f}%, label NLL {rec['label_nll']:.4f}, "
              f"classes {[round(100 * s) for s in rec['class_share']]}", flush=True)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run_dirs", nargs="+")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--json", default=None, help="write the per-run results here")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    results = [first_table(r) for r in args.run_dirs]
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=1)


if __name__ == "__main__":
    main()
