"""Accuracy and cost of the pruned diffusion posterior against a dense reference grid.

    python benchmarks/posterior_cost.py RUN_DIR [--reference-sigmas 100] [--budgets 10,20,40] [--json]

On the run's test split, measured in one process:
  * the reference: `--reference-sigmas` log-spaced levels over [0.01, 20], all classes;
  * pruned schedules: a few levels in the run's interval, with and without adaptive class pruning;
  * with --budgets: the schedule `DiffusionClassifier.predict(..., budget=B)` fits for each budget,
    refitted for every noise seed (the fit's own noise draws are part of what varies), with the
    seconds each fit took (the first budget's include the calibration grid pass its seed shares);
  * for each: accuracy, NFE per image, the NFE reduction factor and the accuracy change against the
    reference;
  * throughput: images/s of `DiffusionClassifier.predict_proba` times its NFE per image, as a
    fraction of the raw batched forward rate of the same network (forward passes per second on
    batches of the same size) — the overhead of everything that is not a network evaluation.
"""
from __future__ import annotations

import argparse
import json
import time

import numpy as np
import torch

from label_models.io import load_labels
from wsl_diffusion.classifier import DiffusionClassifier
from wsl_diffusion.data.datasets import targets_in_label_space, to_model_space
from wsl_diffusion.data.sources import load_dataset
from wsl_diffusion.eval.posterior_metrics import evaluate_posterior
from wsl_diffusion.posterior import PosteriorConfig
from wsl_diffusion.run import load_model


@torch.no_grad()
def raw_forward_rate(net, image_shape, *, rows: int, repeats: int = 5) -> float:
    """Network evaluations per second on batches of `rows` random inputs (one class vector each)."""
    x = torch.randn(rows, *image_shape)
    sigma = torch.full((rows,), 1.0)
    cv = torch.nn.functional.one_hot(torch.arange(rows) % net.num_classes, net.num_classes).float()
    net(x, sigma, cv)  # warm-up
    t0 = time.perf_counter()
    for _ in range(repeats):
        net(x, sigma, cv)
    return rows * repeats / (time.perf_counter() - t0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run_dir")
    parser.add_argument("--reference-sigmas", type=int, default=100)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seeds", type=int, default=5,
                        help="noise seeds averaged for each pruned schedule (the reference uses seed 0)")
    parser.add_argument("--budgets", default="",
                        help="comma-separated NFE budgets per image: add the schedule fitted for each")
    parser.add_argument("--budgets-only", action="store_true",
                        help="of the fixed schedules, run only the reference (with --budgets)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    net, ckpt, config = load_model(args.run_dir)
    labels = load_labels(f"{args.run_dir}/labels.npz")
    _, test = load_dataset(config.dataset)
    images = to_model_space(test.images)
    targets = targets_in_label_space(labels, test.targets)
    log_prior = ckpt["log_prior"]
    lo, hi = config.posterior.sigma_lo, config.posterior.sigma_hi
    # Every schedule uses the run's class prior AND its temperature: the prior's weight against the
    # errors is 1/tau, so a prior without the temperature it was fitted with over-weights it
    # (with tau = 1 the sym-40 run's noisy prior estimate cost the pruned schedules ~3 points).
    tau = float(ckpt["temperature"])
    run_interval = PosteriorConfig(schedule="interval", sigma_lo=lo, sigma_hi=hi, temperature=tau)
    schedules = {
        f"grid-{args.reference_sigmas} (reference)": PosteriorConfig(schedule="grid", num_sigmas=args.reference_sigmas,
                                                                    temperature=tau),
        "interval x4": run_interval.replace(num_sigmas=4),
        "interval x6": run_interval.replace(num_sigmas=6),
        "interval x8": run_interval.replace(num_sigmas=8),
        "interval x4, keep 2 after 1": run_interval.replace(num_sigmas=4, keep_classes=2, prune_sigmas=1),
        "interval x6, keep 2 after 1": run_interval.replace(num_sigmas=6, keep_classes=2, prune_sigmas=1),
        "interval x6, keep 3 after 1": run_interval.replace(num_sigmas=6, keep_classes=3, prune_sigmas=1),
        "interval x8, keep 2 after 1": run_interval.replace(num_sigmas=8, keep_classes=2, prune_sigmas=1),
    }
    if args.budgets_only:
        schedules = dict(list(schedules.items())[:1])
    # A few-level estimate is noisy (one noise draw per level): average its accuracy over seeds.
    # The 100-level reference averages over 100 draws already and is run once.
    rows = []
    for i, (name, cfg) in enumerate(schedules.items()):
        seeds = [0] if i == 0 else list(range(args.seeds))
        evs = [evaluate_posterior(net, images, targets, cfg, log_prior=log_prior, seed=s) for s in seeds]
        row = {"schedule": name, **evs[0].to_dict()}
        accs = np.array([e.accuracy for e in evs])
        row.update(accuracy=float(accs.mean()), accuracy_std=float(accs.std(ddof=1)) if len(accs) > 1 else 0.0,
                   nll=float(np.mean([e.nll for e in evs])), seeds=len(seeds))
        rows.append(row)
    budgets = [int(b) for b in args.budgets.split(",") if b.strip()]
    per_budget = {b: {"acc": [], "nfe": [], "seconds": [], "picked": []} for b in budgets}
    for s in range(args.seeds if budgets else 0):
        clf = DiffusionClassifier.from_run(args.run_dir, seed=s)  # one grid pass per seed, shared by its budgets
        clf.store_schedules = False  # a fresh fit per seed, not the one stored in the run
        for budget in budgets:
            t0 = time.perf_counter()
            cfg = clf.schedule_for_budget(budget)
            got = per_budget[budget]
            got["seconds"].append(time.perf_counter() - t0)
            got["acc"].append(float((clf.predict(test.images, budget=budget) == targets).mean()))
            got["nfe"].append(clf.last_nfe_per_image)
            got["picked"].append(f"{cfg.sigma_lo:.2g}-{cfg.sigma_hi:.2g} x{cfg.num_sigmas} keep {cfg.keep_classes}")
    for budget, got in per_budget.items():
        rows.append({"schedule": f"budget {budget}", "nfe_per_image": max(got["nfe"]),
                     "nfe_mean": float(np.mean(got["nfe"])), "accuracy": float(np.mean(got["acc"])),
                     "accuracy_std": float(np.std(got["acc"], ddof=1)) if len(got["acc"]) > 1 else 0.0,
                     "seeds": args.seeds, "nll": float("nan"), "images_per_second": float("nan"),
                     "fit_seconds": float(np.mean(got["seconds"])), "fitted": got["picked"]})
    ref = rows[0]
    for r in rows:
        r["nfe_reduction"] = ref["nfe_per_image"] / r["nfe_per_image"]
        r["accuracy_change_pt"] = 100 * (r["accuracy"] - ref["accuracy"])

    # throughput of the public API vs the raw network, at the API's batch geometry
    clf = DiffusionClassifier.from_run(args.run_dir, posterior=run_interval.replace(num_sigmas=6))
    clf.predict_proba(test.images[:64])  # warm-up
    t0 = time.perf_counter()
    clf.predict_proba(test.images)
    api_seconds = time.perf_counter() - t0
    api_rate = len(test.images) * clf.last_nfe_per_image / api_seconds
    rows_per_batch = min(clf.batch_size, len(test.images)) * net.num_classes
    raw_rate = raw_forward_rate(net, tuple(net.image_shape), rows=rows_per_batch)
    result = {"run_dir": args.run_dir, "num_images": len(images), "schedules": rows,
              "api_evals_per_second": api_rate, "raw_evals_per_second": raw_rate,
              "api_fraction_of_raw": api_rate / raw_rate}
    if args.json:
        print(json.dumps(result, indent=2))
        return
    print(f"{args.run_dir}: {len(images)} test images, threads={args.threads}, temperature {tau:.3g}")
    print(f"{'schedule':32s} {'NFE':>5s} {'xfewer':>7s} {'acc % (mean+-sd, seeds)':>24s} {'d acc':>7s} "
          f"{'NLL':>6s} {'img/s':>7s}")
    for r in rows:
        acc = f"{100 * r['accuracy']:.2f} +- {100 * r['accuracy_std']:.2f} ({r['seeds']})"
        print(f"{r['schedule']:32s} {r['nfe_per_image']:5d} {r['nfe_reduction']:7.1f} {acc:>24s} "
              f"{r['accuracy_change_pt']:+7.2f} {r['nll']:6.3f} {r['images_per_second']:7.1f}")
    for r in rows:
        if "fitted" in r:
            print(f"{r['schedule']}: fitted in {r['fit_seconds']:.1f} s (mean NFE {r['nfe_mean']:.1f}): "
                  + "; ".join(r["fitted"]))
    print(f"predict_proba: {api_rate:.0f} evals/s; raw forward: {raw_rate:.0f} evals/s; "
          f"ratio {result['api_fraction_of_raw']:.2f}")


if __name__ == "__main__":
    main()
