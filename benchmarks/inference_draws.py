"""Monte-Carlo noise draws at inference: what averaging d draws per level buys a trained model.

    python benchmarks/inference_draws.py RUN_DIR [RUN_DIR ...] [--draws 1,2,4,8] [--reference 16]
        [--images 250] [--threads 1] [--json OUT]
    python benchmarks/inference_draws.py --paired RESULTS_JSON [--before OLD_RESULTS_JSON]
    python benchmarks/inference_draws.py --table-noise RUN_DIR [RUN_DIR ...]

The diffusion posterior is defined by the *expected* class errors over the noise; one draw per
level estimates them without bias but with noise, and a decision taken on the estimate inherits
it. For each run, in one process:
  * label-free: on `--images` of the run's training images (their labels are not read), the share
    whose decision with d draws (the run's test posterior: its schedule, class pruning, tau and
    prior, noise seed 0 as at the end of training) differs from a reference decision with
    `--reference` draws of every class on every level (another noise seed);
  * a diagnostic that reads the test labels: test accuracy with d draws (d = 1 and d =
    INFERENCE_DRAWS reproduce the summary's test_accuracy_ema_one_draw and test_accuracy_ema).

--paired summarises a benchmark whose DMIS records carry both accuracies (`accuracy` at
INFERENCE_DRAWS, `accuracy_one_draw`): per setting, both means ± std over seeds and the paired
change; with --before (the same cells' results from before the draws existed), how many one-draw
accuracies reproduce the old records exactly.

--table-noise: the E-step's `labels_moved` compares the restricted table's labels of two
refreshes. Here both "refreshes" use the same (final) model and differ only in their noise draws,
so every label that moves is Monte-Carlo noise (label-free: the run's own T and tau, no truth read);
with 1 draw and with INFERENCE_DRAWS. For a synthetic label file it also reports, as a diagnostic
that reads the truth, how often each of those tables is right.
"""
from __future__ import annotations

import argparse
import json
from collections import defaultdict

import numpy as np
import torch

from wsl_diffusion.data.datasets import to_model_space
from wsl_diffusion.eval.posterior_metrics import evaluate_posterior
from wsl_diffusion.eval.validation import label_rows, validation_split
from wsl_diffusion.posterior import INFERENCE_DRAWS, diffusion_posterior, log_posterior, nfe_per_image
from wsl_diffusion.run import CHECKPOINT_NAME, load_checkpoint, load_run, run_label_likelihood


def draws_of_run(run_dir: str, draws: list[int], *, reference: int, images: int) -> dict:
    run = load_run(run_dir)
    train, _ = run.splits()
    test, targets = run.test_split()
    pick = np.random.default_rng(0).permutation(len(train.images))[:images]
    x = to_model_space(train.images[pick])
    x_test = to_model_space(test.images)
    tested = run.posterior.replace(temperature=run.temperature)

    def decide(cfg, seed):
        return diffusion_posterior(run.net, x, cfg, generator=torch.Generator().manual_seed(seed),
                                   log_prior=run.log_prior).probs.argmax(1)

    ref = decide(tested.replace(keep_classes=None, draws=reference), 10_007)
    out = {"run_dir": run_dir, "images": len(pick), "reference_draws": reference, "by_draws": {}}
    for d in draws:
        cfg = tested.replace(draws=d)
        out["by_draws"][d] = {
            "differs_from_reference": float((decide(cfg, 0) != ref).float().mean()),
            "test_accuracy": evaluate_posterior(run.net, x_test, targets, cfg,
                                                log_prior=run.log_prior).accuracy,
            "nfe_per_image": nfe_per_image(cfg, run.net.num_classes)}
        print(f"{run_dir}  draws {d}: differs from the {reference}-draw reference on "
              f"{100 * out['by_draws'][d]['differs_from_reference']:.1f}% of {len(pick)} training images, "
              f"test {100 * out['by_draws'][d]['test_accuracy']:.2f}%", flush=True)
    return out


def table_noise(run_dir: str) -> dict:
    run = load_run(run_dir)
    train, _ = run.splits()
    fit = label_rows(len(train.images), validation_split(run.config, run.labels, len(train.images)))
    x = to_model_space(train.images)[fit]
    lik = torch.as_tensor(run_label_likelihood(load_checkpoint(run.run_dir / CHECKPOINT_NAME), run.labels, run.config),
                          dtype=torch.float32)[fit]

    def table_labels(seed: int, draws: int) -> torch.Tensor:
        errors = diffusion_posterior(run.net, x, run.posterior.replace(draws=draws),
                                     generator=torch.Generator().manual_seed(seed)).errors
        return (log_posterior(errors, temperature=run.temperature, log_prior=run.log_prior).exp() * lik).argmax(1)

    truth = None if run.labels.true_labels is None else torch.as_tensor(np.array(run.labels.true_labels))[fit]
    out = {"run_dir": run_dir, "rows": int(fit.sum())}
    for draws in (1, INFERENCE_DRAWS):
        first, second = table_labels(1, draws), table_labels(2, draws)
        out[f"moved_{draws}"] = float((first != second).float().mean())
        if truth is not None:  # a diagnostic that reads the truth: how often each table is right
            out[f"true_class_rate_{draws}"] = [float((t == truth).float().mean()) for t in (first, second)]
    print(f"{run_dir}: two tables of the same model move {100 * out['moved_1']:.1f}% of {out['rows']} labels "
          f"with 1 draw, {100 * out[f'moved_{INFERENCE_DRAWS}']:.1f}% with {INFERENCE_DRAWS}", flush=True)
    if truth is not None:
        print(f"{run_dir}: tables right (truth read, diagnostic): "
              + "; ".join(f"{d} draw(s) " + " / ".join(f"{100 * r:.1f}%" for r in out[f"true_class_rate_{d}"])
                          for d in (1, INFERENCE_DRAWS)), flush=True)
    return out


def paired(results_path: str, before_path: str | None) -> str:
    records = [r for r in json.load(open(results_path))["records"]
               if r["method"] == "dmis" and "accuracy_one_draw" in r and "error" not in r]
    before = {}
    if before_path:
        before = {(r["setting"], r["seed"]): r["accuracy"] for r in json.load(open(before_path))["records"]
                  if r["method"] == "dmis" and "error" not in r}
    by_setting = defaultdict(list)
    for r in records:
        by_setting[r["setting"]].append(r)
    lines = [f"| setting | seeds | one draw | {INFERENCE_DRAWS} draws | paired change (points) | one draw = old record |",
             "|---|---:|---:|---:|---:|---:|"]
    for setting, rs in by_setting.items():
        one = 100 * np.array([r["accuracy_one_draw"] for r in rs])
        many = 100 * np.array([r["accuracy"] for r in rs])
        same = sum(before.get((setting, r["seed"])) == r["accuracy_one_draw"] for r in rs)

        def ms(v, sign=""):
            return f"{v.mean():{sign}.2f} ± {v.std(ddof=1):.2f}" if len(v) > 1 else f"{v.mean():{sign}.2f}"

        lines.append(f"| {setting} | {len(rs)} | {ms(one)} | {ms(many)} | {ms(many - one, '+')} | "
                     f"{same} of {len(rs) if before else 0} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run_dirs", nargs="*")
    parser.add_argument("--draws", default="1,2,4,8")
    parser.add_argument("--reference", type=int, default=16)
    parser.add_argument("--images", type=int, default=250)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--json", default=None, help="write the per-run results here")
    parser.add_argument("--paired", default=None, help="a benchmark results.json to summarise instead")
    parser.add_argument("--before", default=None)
    parser.add_argument("--table-noise", action="store_true",
                        help="instead: labels moved between two tables of the same model (Monte-Carlo noise)")
    args = parser.parse_args()
    if args.paired:
        print(paired(args.paired, args.before))
        return
    if not args.run_dirs:
        parser.error("give run directories, or --paired RESULTS_JSON")
    torch.set_num_threads(args.threads)
    if args.table_noise:
        results = [table_noise(r) for r in args.run_dirs]
    else:
        draws = [int(d) for d in args.draws.split(",")]
        results = [draws_of_run(r, draws, reference=args.reference, images=args.images) for r in args.run_dirs]
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=1)


if __name__ == "__main__":
    main()
