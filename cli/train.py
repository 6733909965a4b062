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
import os
from pathlib import Path
from typing import Any

from cli.corrupt import (add_dataset_arguments, add_supervision_arguments, dataset_tag, print_dataset_notes,
                         spec_from_args)

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
    m.add_argument("--method", choices=("dmis", "vanilla"), default="dmis")
    m.add_argument("--gen-form", choices=("em", "wdsm"), default="em",
                   help="DMIS generative loss: em (table posteriors, default) or wdsm (paper's weighted DSM)")
    m.add_argument("--topk", type=int, default=2, help="classes kept per sample (default %(default)s)")
    m.add_argument("--lambda-cls", type=float, default=1.0, help="weight of the classification loss")
    m.add_argument("--labelled-share", type=float, default=0.5,
                   help="semi-supervised: share of each batch drawn from the labelled examples when they are "
                        "rarer (default 0.5; 0 = uniform over all examples)")
    m.add_argument("--cls-logits", choices=("elbo", "table"), default="elbo",
                   help="classification-loss logits in nats (elbo, default) or divided by the table's tau")
    m.add_argument("--table-refresh-kimg", type=float, default=None,
                   help="kimg between posterior-table refreshes (default: 16 for semi-supervised labels, else 32)")
    m.add_argument("--sigmas", default="0.4,5",
                   help="classifier interval LO,HI for the posterior table and classification loss")
    m.add_argument("--num-sigmas", type=int, default=6, help="noise levels in that interval")
    m.add_argument("--table-keep-classes", type=int, default=3,
                   help="posterior table: classes kept after the first 2 levels (0 = score all)")
    o = p.add_argument_group("optimisation")
    o.add_argument("--model", choices=("tiny", "small", "medium", "base"), default="small")
    o.add_argument("--batch-size", type=int, default=128)
    o.add_argument("--kimg", type=float, default=None,
                   help="training length in thousands of images (default 256; with --resume: extend the run)")
    o.add_argument("--lr", type=float, default=1e-3)
    o.add_argument("--ema-halflife-kimg", type=float, default=10.0)
    o.add_argument("--seed", type=int, default=0, help="training seed (weights, batches, noise)")
    o.add_argument("--checkpoint-kimg", type=float, default=64.0)
    o.add_argument("--samples-per-class", type=int, default=8)
    o.add_argument("--device", default="cpu", help="cpu, cuda, cuda:N or auto (LOCAL_RANK under torchrun)")
    o.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: all cores)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument("--json", action="store_true", help="print the summary as one JSON object on stdout")
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


def build_config(args: argparse.Namespace):
    from wsl_diffusion.config import TrainConfig
    from wsl_diffusion.posterior import PosteriorConfig

    lo, hi = parse_pair(args.sigmas, "--sigmas")
    supervision = None if args.labels else spec_from_args(args).to_dict()
    # A dataset path is stored absolute so that --resume and `evaluate` find it from any directory.
    dataset = args.dataset
    if dataset != "digits" and Path(dataset).expanduser().exists():
        dataset = str(Path(dataset).expanduser().resolve())
    return TrainConfig(
        dataset=dataset, subset=args.subset, on_bad_image=args.on_bad_image,
        labels_file=str(Path(args.labels).resolve()) if args.labels else None,
        supervision=supervision, method=args.method, gen_form=args.gen_form, topk=args.topk,
        lambda_cls=args.lambda_cls, labelled_share=args.labelled_share, cls_logits=args.cls_logits, model=args.model, batch_size=args.batch_size, total_kimg=args.kimg if args.kimg is not None else TrainConfig.total_kimg,
        lr=args.lr, ema_halflife_kimg=args.ema_halflife_kimg, seed=args.seed,
        posterior=PosteriorConfig(schedule="interval", sigma_lo=lo, sigma_hi=hi, num_sigmas=args.num_sigmas,
                                  keep_classes=args.table_keep_classes or None,
                                  prune_sigmas=min(2, args.num_sigmas - 1) if args.table_keep_classes else 1),
        table_refresh_kimg=args.table_refresh_kimg, checkpoint_every_kimg=args.checkpoint_kimg,
        samples_per_class=args.samples_per_class, device=args.device,
    )


def load_run_labels(config, train):
    """The ImpreciseLabels of a run: from its label file or by corrupting the true labels."""
    from label_models.corruption import CorruptionSpec, corrupt
    from label_models.io import load_labels
    from wsl_diffusion.data.datasets import flat_features

    if config.labels_file:
        labels = load_labels(config.labels_file, num_classes=train.num_classes)
        if labels.kind != "pu":
            labels.validate_against(len(train), train.num_classes)
        elif labels.num_samples != len(train):
            raise ValueError(f"label file {config.labels_file} has {labels.num_samples} rows, "
                             f"the {config.dataset} training split {len(train)}")
        return labels
    spec = CorruptionSpec.from_dict(config.supervision)
    return corrupt(train.targets, num_classes=train.num_classes, spec=spec,
                   features=flat_features(train), dataset_name=dataset_tag(config.dataset, train.class_names))


def run(args: argparse.Namespace) -> int:
    import torch
    from rich.console import Console

    from wsl_diffusion.config import TrainConfig
    from wsl_diffusion.data.datasets import load_dataset, targets_in_label_space
    from wsl_diffusion.training.loop import TrainingDiverged, train

    torch.set_num_threads(args.threads or os.cpu_count() or 1)
    console = Console(stderr=True)
    out = Path(args.out)
    if args.resume:
        cfg_path = out / "config.json"
        if not cfg_path.is_file():
            raise ValueError(f"--resume: {out} has no config.json; is it a run directory?")
        config = TrainConfig.from_dict(json.loads(cfg_path.read_text()))
        if args.kimg is not None:  # the only setting a resume may change: extend the run
            config = config.replace(total_kimg=args.kimg)
    else:
        if args.labels is None and args.supervision is None:
            raise ValueError("say what labels to train on: --supervision KIND (with its flags) or --labels FILE")
        config = build_config(args)
    train_data, test_data = load_dataset(config.dataset, subset=config.subset, on_error=config.on_bad_image)
    labels = load_run_labels(config, train_data)
    if not args.json:  # printed once the inputs are known to be valid: errors stay one line
        print_dataset_notes(train_data)
        console.print_json(config.to_json())
    try:
        summary = train(config, out, train_data=train_data, labels=labels, test_data=test_data,
                        test_targets=targets_in_label_space(labels, test_data.targets), resume=args.resume,
                        progress=not (args.quiet or args.json), console=console)
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
    return 0
