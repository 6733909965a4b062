"""`wsl-diff train`: train a class-conditional diffusion model from imprecise labels.

    wsl-diff train --dataset digits --supervision partial --q 0.3 --method dmis --out runs/partial
    wsl-diff train --dataset digits --labels sym40.npz --method vanilla --out runs/vanilla
    wsl-diff train --out runs/partial --resume            # continue an interrupted run

Prints the resolved config, shows a progress bar, writes config.json, stats.jsonl, atomic
checkpoints, labels.npz, samples.png (one row per class) and summary.json into --out.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from rich.console import Console

from label_models.io import load_labels

from cli.common import (add_dataset_arguments, add_output_arguments, add_supervision_arguments, add_threads_argument,
                        flag_for, given_flags, print_dataset_notes, set_threads, spec_from_args)
from wsl_diffusion.config import (CLS_LOGITS, GEN_FORMS, METHODS, NOISY_CLS, NOISY_PRIORS, POSTERIOR_FITS, PU_PRIORS,
                                  TABLE_PRUNED, TIE_BREAKS, TRANSITIONS, TRANSITION_MSTEPS, Execution, TrainConfig,
                                  default_interval, default_table_unmix, default_topk)
from wsl_diffusion.data.datasets import targets_in_label_space
from wsl_diffusion.data.sources import load_dataset
from wsl_diffusion.model.network import PRESETS
from wsl_diffusion.posterior import PosteriorConfig
from wsl_diffusion.run import check_run_dir, load_config, make_labels, run_lock
from wsl_diffusion.training.loop import TrainingDiverged, train

EXIT_DIVERGED = 3


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    p = subparsers.add_parser("train", help="train a diffusion model (DMIS or vanilla) from imprecise labels",
                              description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_dataset_arguments(p)
    p.add_argument("--labels", default=None, help="a label file (.npz/.csv) instead of --supervision flags")
    add_supervision_arguments(p, seed_flag="--label-seed", require_supervision=False)
    p.add_argument("--out", required=True, help="run directory")
    p.add_argument("--resume", action="store_true", help="continue the run in --out from its checkpoint")
    m = p.add_argument_group("method")
    m.add_argument("--method", choices=METHODS, default="dmis")
    m.add_argument("--gen-form", choices=GEN_FORMS, default="em",
                   help="DMIS generative loss: em (table posteriors, default) or wdsm (paper's weighted DSM)")
    m.add_argument("--topk", type=int, default=None,
                   help="classes kept per sample (default: 3 for noisy labels, 2 for the other kinds)")
    m.add_argument("--lambda-cls", type=float, default=1.0, help="weight of the classification loss")
    m.add_argument("--labelled-share", type=float, default=0.5,
                   help="semi-supervised: share of each batch drawn from the labelled examples when they are "
                        "rarer (default 0.5; 0 = uniform over all examples)")
    m.add_argument("--cls-logits", choices=CLS_LOGITS, default="elbo",
                   help="classification-loss logits in nats (elbo, default) or divided by the table's tau")
    m.add_argument("--table-refresh-kimg", type=float, default=None,
                   help="kimg to the first posterior-table refresh (E-step) and its first interval (default 8)")
    m.add_argument("--table-refresh-max-kimg", type=float, default=32.0,
                   help="the refresh interval doubles up to this once the table settles (default 32; 0 = fixed)")
    m.add_argument("--table-settle", type=float, default=0.02,
                   help="a refresh that moves fewer than this share of the labels counts as settled (default 0.02)")
    m.add_argument("--table-settle-floor", action=argparse.BooleanOptionalAction, default=False,
                   help="also count a refresh as settled when it moves no more labels than two noise draws of "
                        "the same model disagree on (a second posterior pass on up to 512 rows; see "
                        "docs/benchmark-digits.md)")
    m.add_argument("--table-tie-break", choices=TIE_BREAKS, default="random",
                   help="order of tied classes in the top-k: random (default) or index (the old behaviour)")
    m.add_argument("--table-keep-label", action="store_true",
                   help="also refine the one class a label singles out when the table's pruning drops it (off: "
                        "see docs/noisy-labels.md)")
    m.add_argument("--table-pruned", choices=TABLE_PRUNED, default="zero",
                   help="the table's value for classes its pruning dropped: zero (default) or coarse (their "
                        "all-class posterior; see docs/noisy-labels.md)")
    m.add_argument("--table-unmix", action=argparse.BooleanOptionalAction, default=None,
                   help="noisy labels: unmix the network's posterior with the transition of the labels it was trained "
                        "on before each table, once the table has settled (default: on for noisy labels; see README)")
    m.add_argument("--table-restrict-settled", action=argparse.BooleanOptionalAction, default=True,
                   help="noisy labels: keep multiplying a training row's posterior by p(z | y) once the table has "
                        "settled (the network has trained on z, so this counts the label twice; see "
                        "docs/benchmark-digits.md)")
    m.add_argument("--disputed-uncond", action=argparse.BooleanOptionalAction, default=False,
                   help="noisy labels: rows whose table label is not the model's own best class train the generator "
                        "unconditionally and skip the classification term (see docs/benchmark-digits.md)")
    m.add_argument("--transition", choices=TRANSITIONS, default="estimate",
                   help="noisy labels' T: estimate (Dawid-Skene EM at every refresh, default), assumed (symmetric at "
                        "--assumed-noise-rate, fixed) or oracle (the T stored in the label file; an ablation)")
    m.add_argument("--transition-mstep", choices=TRANSITION_MSTEPS, default="posterior",
                   help="noisy labels, --transition estimate: posterior (default: once the table has settled, count "
                        "the table's posterior against the labels once; the network trained on the labels, so EM "
                        "would count them twice; see README) or em (Dawid-Skene EM on the model's posterior "
                        "throughout)")
    m.add_argument("--noisy-prior", choices=NOISY_PRIORS, default="observed",
                   help="noisy labels, DMIS: the clean class prior: observed (the label frequencies, default) or "
                        "transition (the prior those frequencies imply through the run's T; see README)")
    m.add_argument("--pu-prior", type=_pu_prior, default="estimate", metavar="{estimate,oracle,P}",
                   help="PU labels: the share of positives among all images: estimate (from the images and which "
                        "are labelled, default), a number P in (0, 1) you know, or oracle (the prior stored in the "
                        "label file, which `corrupt` takes from the true labels; an ablation)")
    m.add_argument("--assumed-noise-rate", type=float, default=0.2,
                   help="symmetric noise rate T starts from (default 0.2)")
    m.add_argument("--noisy-cls", choices=NOISY_CLS, default="elr",
                   help="classification loss for noisy labels: elr (default), forward (forward correction with T) or "
                        "table (soft cross-entropy to the restricted table, the generator's target)")
    m.add_argument("--elr-lambda", type=float, default=1.0,
                   help="noisy labels, --noisy-cls elr: the weight of ELR's regulariser beside CE to the label "
                        "(default 1.0; the ELR paper uses 3)")
    m.add_argument("--holdout", type=float, default=0.0,
                   help="share of the training images (at most 1000) held out to check the model against the label "
                        "model at each refresh: the E-step's safeguard (noisy labels; 0 = off, the default: see "
                        "docs/noisy-labels.md)")
    m.add_argument("--validation", type=float, default=0.0,
                   help="share of the training images never trained on (labelled and unlabelled alike); the run "
                        "scores its model on their imprecise labels, so settings can be compared without the test "
                        "split (summary.json: validation; 0 = off, the default)")
    m.add_argument("--posterior-fit", choices=POSTERIOR_FITS, default="fixed",
                   help="the posterior table's schedule: fixed (default) keeps --sigmas/--num-sigmas/"
                        "--table-keep-classes; refit fits its interval, levels and class pruning to the model and "
                        "labels at refreshes 1, 2, 4, ...; prune fits only the class pruning (see README)")
    m.add_argument("--sigmas", default=None,
                   help="classifier interval LO,HI for the posterior table and classification loss (with "
                        "--posterior-fit refit: where it starts; default 0.2,2.5 for partial labels, else 0.4,5)")
    m.add_argument("--num-sigmas", type=int, default=6, help="noise levels in that interval")
    m.add_argument("--table-keep-classes", type=int, default=3,
                   help="posterior table: classes kept after the first 2 levels (0 = score all)")
    o = p.add_argument_group("optimisation")
    o.add_argument("--model", choices=tuple(PRESETS), default="small")
    o.add_argument("--batch-size", type=int, default=128)
    o.add_argument("--kimg", dest="total_kimg", type=float, default=None,
                   help="training length in thousands of images (default 256; with --resume: extend the run)")
    o.add_argument("--lr", type=float, default=1e-3)
    o.add_argument("--ema-halflife-kimg", type=float, default=10.0)
    o.add_argument("--seed", type=int, default=0, help="training seed (weights, batches, noise)")
    o.add_argument("--checkpoint-kimg", type=float, default=64.0)
    o.add_argument("--samples-per-class", type=int, default=8)
    o.add_argument("--device", default="cpu", help="cpu, cuda, cuda:N or auto (LOCAL_RANK under torchrun)")
    add_threads_argument(o)
    add_output_arguments(p)
    p.set_defaults(run=run)
    return p


def parse_pair(text: str, flag: str) -> tuple[float, float]:
    try:
        lo, hi = (float(v) for v in text.split(","))
    except ValueError:
        raise ValueError(f"{flag} takes two numbers LO,HI like 0.4,6.4; got {text!r}") from None
    if not 0 < lo <= hi:
        raise ValueError(f"{flag} needs 0 < LO <= HI; got {text!r}")
    return lo, hi


def resolved_dataset(dataset: str) -> str:
    """A dataset path is stored absolute so that --resume and `evaluate` find it from any directory."""
    if dataset != "digits" and Path(dataset).expanduser().exists():
        return str(Path(dataset).expanduser().resolve())
    return dataset


def posterior_from_args(args: argparse.Namespace, interval: tuple[float, float]) -> PosteriorConfig:
    """The training posterior from --sigmas/--num-sigmas/--table-keep-classes; `interval` where
    --sigmas is not given."""
    lo, hi = parse_pair(args.sigmas, "--sigmas") if args.sigmas is not None else interval
    return PosteriorConfig(schedule="interval", sigma_lo=lo, sigma_hi=hi, num_sigmas=args.num_sigmas,
                           keep_classes=args.table_keep_classes or None,
                           prune_sigmas=min(2, args.num_sigmas - 1) if args.table_keep_classes else 1)


def _pu_prior(text: str) -> str | float:
    if text in PU_PRIORS:
        return text
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not 0 < value < 1:  # also NaN
        raise argparse.ArgumentTypeError(f"--pu-prior takes estimate, oracle or a share of positives in (0, 1); "
                                         f"got {text!r}")
    return value


def build_config(args: argparse.Namespace) -> TrainConfig:
    supervision = None if args.labels else spec_from_args(args).to_dict()
    kind = load_labels(args.labels).kind if args.labels else args.supervision
    return TrainConfig(
        dataset=resolved_dataset(args.dataset), subset=args.subset, on_bad_image=args.on_bad_image,
        labels_file=str(Path(args.labels).resolve()) if args.labels else None,
        supervision=supervision, method=args.method, gen_form=args.gen_form,
        topk=args.topk if args.topk is not None else default_topk(kind),
        lambda_cls=args.lambda_cls, labelled_share=args.labelled_share, cls_logits=args.cls_logits, model=args.model, batch_size=args.batch_size, total_kimg=args.total_kimg if args.total_kimg is not None else TrainConfig.total_kimg,
        lr=args.lr, ema_halflife_kimg=args.ema_halflife_kimg, seed=args.seed,
        posterior=posterior_from_args(args, default_interval(kind)), posterior_fit=args.posterior_fit,
        table_refresh_kimg=args.table_refresh_kimg, table_refresh_max_kimg=args.table_refresh_max_kimg or None,
        table_settle=args.table_settle, table_settle_floor=args.table_settle_floor, table_tie_break=args.table_tie_break, table_keep_label=args.table_keep_label,
        table_pruned=args.table_pruned, table_unmix=args.table_unmix if args.table_unmix is not None else default_table_unmix(kind),
        table_restrict_settled=args.table_restrict_settled,
        disputed_uncond=args.disputed_uncond,
        transition=args.transition, transition_mstep=args.transition_mstep, noisy_prior=args.noisy_prior, assumed_noise_rate=args.assumed_noise_rate, noisy_cls=args.noisy_cls, elr_lambda=args.elr_lambda,
        pu_prior=args.pu_prior,
        holdout=args.holdout, validation=args.validation, checkpoint_every_kimg=args.checkpoint_kimg,
        samples_per_class=args.samples_per_class,
    )


# Flags a resume may change: how long and where the run goes on, and what it prints.
RESUMABLE_FLAGS = frozenset({"total_kimg", "device", "threads", "quiet", "json", "out", "resume"})
SUPERVISION_KEYS = {"supervision": "supervision", "noise": "noise", "rate": "rate", "class_map": "class_map", "q": "q",
                    "class_dependent": "class_dependent", "labelled_fraction": "labelled_fraction",
                    "positive_classes": "positive_classes", "corruption_seed": "seed"}


def resume_changes(args: argparse.Namespace, given: set[str], saved: TrainConfig) -> list[str]:
    """'--flag VALUE (saved SAVED)' for every given flag that would change the saved run."""
    changes = []

    def differs(dest: str, value, saved_value) -> None:
        if value != saved_value:
            shown = getattr(args, dest)
            changes.append(f"{flag_for(dest, args.parser)} {shown} (saved: {saved_value})")

    for dest in sorted(given & set(SUPERVISION_KEYS)):
        value = getattr(args, dest)
        if saved.supervision is None:
            changes.append(f"{flag_for(dest, args.parser)} (saved: labels from {saved.labels_file})")
        else:
            differs(dest, list(value) if isinstance(value, tuple) else value, saved.supervision.get(SUPERVISION_KEYS[dest]))
    if given & {"sigmas", "num_sigmas", "table_keep_classes"}:
        if posterior_from_args(args, (saved.posterior.sigma_lo, saved.posterior.sigma_hi)) != saved.posterior:
            changes.append(f"--sigmas/--num-sigmas/--table-keep-classes (saved: {saved.posterior.to_dict()})")
    for dest in sorted(given - RESUMABLE_FLAGS - set(SUPERVISION_KEYS) - {"sigmas", "num_sigmas", "table_keep_classes"}):
        value = getattr(args, dest)
        if dest == "labels":
            differs(dest, str(Path(value).resolve()), saved.labels_file)
        elif dest == "dataset":
            differs(dest, resolved_dataset(value), saved.dataset)
        elif dest == "checkpoint_kimg":
            differs(dest, value, saved.checkpoint_every_kimg)
        elif dest == "table_refresh_max_kimg":
            differs(dest, value or None, saved.table_refresh_max_kimg)
        else:
            differs(dest, value, getattr(saved, dest))
    return changes


def run(args: argparse.Namespace) -> int:
    set_threads(args.threads)
    execution = Execution(device=args.device)
    console = Console(stderr=True)
    out = Path(args.out)
    if args.resume:
        config = load_config(out)
        given = given_flags(args.parser, args.argv) if hasattr(args, "argv") else set()
        changes = resume_changes(args, given, config)
        if changes:
            raise ValueError(f"--resume continues the run saved in {out} as it was; these flags would change it: "
                             f"{'; '.join(changes)}. Drop them, or start a new --out")
        if args.total_kimg is not None:  # a resume may extend the run (and change device, threads, output)
            config = config.replace(total_kimg=args.total_kimg)
    else:
        if args.labels is None and args.supervision is None:
            raise ValueError("say what labels to train on: --supervision KIND (with its flags) or --labels FILE")
        config = build_config(args)
    return train_and_report(config, out, args, console=console, execution=execution)


def train_and_report(config: TrainConfig, out: Path, args: argparse.Namespace, *, console: Console,
                     execution: Execution) -> int:
    """Train (or, with args.resume, continue) the run `config` describes in `out` and print its
    summary as `wsl-diff train` does (args: resume, quiet, json). Shared with `wsl-diff refine`."""
    check_run_dir(out, resume=args.resume)  # before anything is printed: errors stay one line
    with run_lock(out):  # the same for a directory another trainer holds (train() takes it for good)
        pass
    train_data, test_data = load_dataset(config.dataset, subset=config.subset, on_error=config.on_bad_image)
    labels = make_labels(config, train_data)
    if not args.json:  # printed once the inputs are known to be valid: errors stay one line
        print_dataset_notes(train_data)
        console.print_json(config.to_json())
    try:
        summary = train(config, out, train_data=train_data, labels=labels, test_data=test_data,
                        test_targets=targets_in_label_space(labels, test_data.targets), resume=args.resume,
                        execution=execution, progress=not (args.quiet or args.json), console=console)
    except TrainingDiverged as exc:
        console.print(f"[red]wsl-diff train: error:[/red] {exc}")
        return EXIT_DIVERGED
    if args.json:
        print(json.dumps({"out": str(out), **summary}))
    else:
        acc = summary.get("test_accuracy_ema")
        console.print(f"done: {summary['kimg']:.1f} kimg in {summary['seconds_this_call']:.0f} s"
                      + (f", test accuracy of the diffusion posterior {100 * acc:.2f}%" if acc is not None else "")
                      + f" -> {out}")
        rate = summary.get("estimated_noise_rate")
        if rate is not None:
            console.print(f"noise rate that the run's estimated T implies: {100 * rate:.1f}% of the labels (label-free; "
                          "it starts at --assumed-noise-rate and tends to under-estimate, see the README)")
        val = summary.get("validation")
        if val and val["rows"]:
            console.print(f"validation ({val['rows']} held-out rows, their imprecise labels): agreement "
                          f"{100 * val['agreement']:.1f}%, log-likelihood {val['log_lik']:.4f} nats/row")
    return 0
