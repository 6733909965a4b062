"""How much the E-step's restriction by p(z | y) helps or hurts a trained model's table.

    python benchmarks/table_restriction.py RUN_DIR [RUN_DIR ...] [--betas 0,0.25,0.5,0.75,1]
        [--threads 1] [--json OUT]

The noisy-label E-step labels a training image by argmax_y p(y | x) p(z | y): the model's
posterior restricted by its observed label z through the run's estimated T. On an image the network
never trained on that is Bayes' rule. On one it did train on, the network has already learned z
(the classification term's target, the generator's table class), so p(z | y) counts the label a
second time. This script tempers the restriction, argmax_y p(y | x) p(z | y)^beta (beta = 1: the
E-step; beta = 0: the model alone), on the run's final model with the table's own posterior (its
schedule, class pruning, tau and prior; one noise draw, as a refresh takes; no unmixing), and
reports for each beta, separately on the rows the run trained on and, if the run held out a
validation split, on those never-trained rows:
  * label-free: the share of rows whose label moves away from z;
  * a diagnostic that reads the truth (synthetic label files only): the share labelled right.
Beside them, label-free, the noise rate that the run's estimated T and prior imply,
1 - sum_y pi_y T[y, y] (`implied_noise_rate`), and, read from the truth, the realised one.

With --mstep it also re-estimates T from the same final model's trained rows both ways that
`--transition-mstep` offers, on the posterior each would read at a settled refresh (unmixed, as
the default unmixes then): "em" (Dawid-Skene EM on the all-class posterior of the pruning pass)
and "posterior" (one count of the table's posterior). For each T: its implied noise rate and
log |det T| (label-free), its max and mean error against the true T, and the share of E-step
labels (beta = 1) that are right on trained and on validation rows.
With --floor it also draws the table three more times (seeds 100-102) and reports, label-free,
the share of training rows whose E-step label differs between each two of those draws: what a
refresh of an unchanged model moves through Monte-Carlo noise alone (`--table-settle-floor`).
No choice is made from it.
"""
from __future__ import annotations

import argparse
import json

import numpy as np
import torch

from label_models.transition import estimate_transition_anchor, implied_noise_rate, unmix_posterior
from wsl_diffusion.data.datasets import to_model_space
from wsl_diffusion.eval.validation import validation_split
from wsl_diffusion.posterior import diffusion_posterior, log_posterior
from wsl_diffusion.run import CHECKPOINT_NAME, load_checkpoint, load_run, run_label_likelihood
from wsl_diffusion.training.loop import pruning_pass_posterior, transition_mstep


def mstep_comparison(run, ckpt, result, probs, lik, held) -> dict:
    """T re-estimated from the final model's trained rows by EM and by one count (see --mstep)."""
    fit = ~held
    fit_np = fit.numpy()
    z = np.array(run.labels.observed)
    # What a settled refresh does (`refresh_table`): anchors of the pruning pass's posterior unmix
    # the table's, then either M-step.
    _, p_all = pruning_pass_posterior(result.coarse_errors, lik, run.log_prior, fit)
    unmixing = estimate_transition_anchor(p_all[fit_np])
    p_table = unmix_posterior(probs.double().numpy(), unmixing)
    estimates = {mstep: transition_mstep(mstep, p_table[fit_np], p_all[fit_np], z[fit_np], unmixing=unmixing,
                                         init=np.asarray(ckpt["transition"], float),
                                         smoothing=run.config.transition_smoothing)
                 for mstep in ("em", "posterior")}
    prior = run.log_prior.exp().double().numpy()
    truth = None if run.labels.true_labels is None else np.array(run.labels.true_labels)
    out = {}
    for name, t in estimates.items():
        rec = {"implied_noise_rate": implied_noise_rate(t, prior), "log_det": float(np.linalg.slogdet(t)[1])}
        if run.labels.transition_matrix is not None:
            err = np.abs(t - run.labels.transition_matrix)
            rec["error_max"], rec["error_mean"] = float(err.max()), float(err.mean())
        if truth is not None:
            right = (p_table * t[:, z].T).argmax(1) == truth
            rec["trained_true_class_rate"] = float(right[fit_np].mean())
            rec["validation_true_class_rate"] = float(right[~fit_np].mean()) if (~fit_np).any() else None
        out[name] = rec
        print(f"{run.run_dir} [T by {name}]  " + "  ".join(f"{k} {v:.4f}" for k, v in rec.items() if v is not None),
              flush=True)
    return out


def draw_floor(run, images, lik) -> list[float]:
    """Shares of rows whose E-step label differs between two independent one-draw tables (3 pairs)."""
    labels = []
    for seed in (100, 101, 102):
        errors = diffusion_posterior(run.net, images, run.posterior, generator=torch.Generator().manual_seed(seed)).errors
        probs = log_posterior(errors, temperature=run.temperature, log_prior=run.log_prior).exp()
        labels.append((probs * lik).argmax(1))
    return [float((labels[i] != labels[j]).float().mean()) for i, j in ((0, 1), (0, 2), (1, 2))]


def load_noisy_run(run_dir: str):
    """A noisy-label run as these diagnostics read it: (run, checkpoint, training images in model
    space, the run's label likelihood p(z | y), observed labels, true labels or None). Shared with
    `first_table.py`."""
    run = load_run(run_dir)
    if run.labels.kind != "noisy":
        raise SystemExit(f"error: {run_dir} was trained on {run.labels.kind} labels; this script is for noisy labels")
    train, _ = run.splits()
    ckpt = load_checkpoint(run.run_dir / CHECKPOINT_NAME)
    lik = torch.as_tensor(run_label_likelihood(ckpt, run.labels, run.config), dtype=torch.float32)
    observed = torch.as_tensor(np.array(run.labels.observed))
    truth = None if run.labels.true_labels is None else torch.as_tensor(np.array(run.labels.true_labels))
    return run, ckpt, to_model_space(train.images), lik, observed, truth


def restriction_of_run(run_dir: str, betas: list[float], mstep: bool = False, floor: bool = False) -> dict:
    run, ckpt, x, lik, observed, truth = load_noisy_run(run_dir)
    n = len(x)
    result = diffusion_posterior(run.net, x, run.posterior, generator=torch.Generator().manual_seed(1))
    probs = log_posterior(result.errors, temperature=run.temperature, log_prior=run.log_prior).exp()
    held = torch.zeros(n, dtype=torch.bool)
    held[validation_split(run.config, run.labels, n)] = True
    implied = implied_noise_rate(np.asarray(ckpt["transition"], dtype=float), run.log_prior.exp().double().numpy())
    out = {"run_dir": run_dir, "implied_noise_rate": implied,
           "realised_noise_rate": None if truth is None else float((observed != truth).float().mean()),
           "rows": {}}
    for name, rows in (("trained", ~held), ("validation", held)):
        if not rows.any():
            continue
        per_beta = {}
        for beta in betas:
            labels = (probs[rows] * lik[rows].clamp_min(1e-12) ** beta).argmax(1)
            per_beta[str(beta)] = {
                "moved_from_z": float((labels != observed[rows]).float().mean()),
                "true_class_rate": None if truth is None else float((labels == truth[rows]).float().mean())}
        out["rows"][name] = {"count": int(rows.sum()), "by_beta": per_beta}
        cells = "  ".join(f"beta {b}: {100 * v['true_class_rate']:.1f}% right, {100 * v['moved_from_z']:.1f}% moved"
                          if v["true_class_rate"] is not None else f"beta {b}: {100 * v['moved_from_z']:.1f}% moved"
                          for b, v in per_beta.items())
        print(f"{run_dir} [{name}, {int(rows.sum())} rows]  {cells}", flush=True)
    realised = "" if truth is None else f", realised {100 * out['realised_noise_rate']:.1f}%"
    print(f"{run_dir}  noise rate implied by the estimated T {100 * out['implied_noise_rate']:.1f}%{realised}",
          flush=True)
    if mstep:
        out["transition_mstep"] = mstep_comparison(run, ckpt, result, probs, lik, held)
    if floor:
        out["draw_floor"] = draw_floor(run, x, lik)
        print(f"{run_dir}  labels moved between two draws of the same model: "
              + ", ".join(f"{100 * f:.1f}%" for f in out["draw_floor"]), flush=True)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run_dirs", nargs="+")
    parser.add_argument("--betas", default="0,0.25,0.5,0.75,1")
    parser.add_argument("--mstep", action="store_true", help="also compare the two T M-steps on the final model")
    parser.add_argument("--floor", action="store_true", help="also measure the table's Monte-Carlo floor")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--json", default=None, help="write the per-run results here")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    results = [restriction_of_run(r, [float(b) for b in args.betas.split(",")], mstep=args.mstep,
                                  floor=args.floor)
               for r in args.run_dirs]
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=1)


if __name__ == "__main__":
    main()
