"""`wsl-diff corrupt`: make a synthetic imprecise label file for a dataset's training split.

    wsl-diff corrupt --dataset digits --supervision noisy --noise sym --rate 0.4 --seed 0 --out sym40.npz
    wsl-diff corrupt --dataset data/cifar10-jpeg.tar.gz --subset 100 --supervision partial --q 0.3 --out p.npz

Writes the labels (.npz or .csv, see label_models.io), then prints a summary: the realised noise
rate, the empirical transition matrix, candidate-set sizes and labelled fractions per class.
With --json only one JSON object (the summary plus "out") goes to stdout.

The dataset and supervision flags are shared with `wsl-diff train` (cli/common.py), which builds
the same label set in memory from the same flags.
"""
from __future__ import annotations

import argparse
import json
from typing import Any

import numpy as np
from rich.console import Console
from rich.table import Table

from label_models.corruption import corrupt
from label_models.io import check_writable_label_path, save_labels
from label_models.summary import summarize

from cli.common import add_dataset_arguments, add_supervision_arguments, print_dataset_notes, spec_from_args
from wsl_diffusion.data.sources import dataset_tag, load_dataset

def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "corrupt",
        help="write a synthetic imprecise label file (noisy, partial, semi-supervised, PU)",
        description="Corrupt the true labels of a dataset's training split into imprecise labels and "
        "write them as a label file (.npz or .csv).",
    )
    add_dataset_arguments(p)
    add_supervision_arguments(p)
    p.add_argument("--out", required=True, help="output label file, .npz or .csv")
    p.add_argument("--json", action="store_true", help="print only a JSON summary object on stdout")
    p.set_defaults(run=run)
    return p


def run(args: argparse.Namespace) -> int:
    # Fail on the cheap checks before loading data or corrupting anything.
    out = check_writable_label_path(args.out)
    spec = spec_from_args(args)
    train = load_dataset(args.dataset, subset=args.subset, on_error=args.on_bad_image)[0]
    print_dataset_notes(train)
    features = None
    if spec.supervision == "noisy" and spec.noise == "instance":
        features = train.images.reshape(len(train), -1).astype(np.float64)  # (N, H*W*C) raw pixels
    labels = corrupt(
        train.targets, num_classes=train.num_classes, spec=spec, features=features,
        dataset_name=dataset_tag(args.dataset, train.class_names),
    )
    save_labels(out, labels)
    summary = summarize(labels)
    summary["out"] = str(out)
    if args.json:
        print(json.dumps(summary))
    else:
        _print_summary(summary, class_names=_class_names(labels.kind, train.class_names))
    return 0


def _class_names(kind: str, names: tuple[str, ...]) -> list[str]:
    return ["negative", "positive"] if kind == "pu" else list(names)


def _fmt(value: float | None, spec: str = ".3f") -> str:
    return "-" if value is None else format(value, spec)


# The spec fields that matter for each supervision kind (the others are unused defaults).
_RELEVANT_FIELDS: dict[str, tuple[str, ...]] = {
    "clean": (),
    "noisy": ("noise", "rate", "class_map"),
    "partial": ("q", "class_dependent"),
    "semi": ("labelled_fraction",),
    "pu": ("positive_classes", "labelled_fraction"),
}


def _spec_line(spec: dict[str, Any]) -> str:
    fields = _RELEVANT_FIELDS.get(spec.get("supervision", ""), ())
    shown = {key: spec[key] for key in fields if spec.get(key) is not None}
    if spec.get("noise") != "asym":
        shown.pop("class_map", None)
    if spec.get("class_dependent"):
        shown.pop("q", None)
    shown["seed"] = spec.get("seed")
    return " ".join(f"{key}={value}" for key, value in shown.items())


def _print_summary(summary: dict[str, Any], *, class_names: list[str]) -> None:
    console = Console()
    overview = Table(title=f"{summary['kind']} labels -> {summary['out']}", show_header=False)
    overview.add_column(style="bold")
    overview.add_column(justify="right")
    overview.add_row("spec", _spec_line(summary["meta"].get("spec", {})))
    overview.add_row("samples", str(summary["num_samples"]))
    overview.add_row("classes", str(summary["num_classes"]))
    overview.add_row("realised noise rate", _fmt(summary["noise_rate"]))
    overview.add_row("mean candidate-set size", _fmt(summary["mean_candidate_set_size"]))
    overview.add_row("labelled fraction", _fmt(summary["labelled_fraction"]))
    if summary["class_prior"] is not None:
        overview.add_row("class prior", ", ".join(f"{v:.3f}" for v in summary["class_prior"]))
    console.print(overview)

    k = summary["num_classes"]
    t = summary["empirical_transition"]
    if t is not None and k <= 10 and summary["kind"] == "noisy":
        table = Table(title="empirical T[y, z] = P(observed z | true y)")
        table.add_column("y \\ z", style="bold")
        for j in range(k):
            table.add_column(class_names[j], justify="right")
        for i, row in enumerate(t):
            table.add_row(class_names[i], *(f"{v:.2f}" if v else "." for v in row))
        console.print(table)

    if summary["samples_per_class"] is not None and k <= 50:
        table = Table(title="per true class")
        table.add_column("class", style="bold")
        table.add_column("samples", justify="right")
        table.add_column("labelled", justify="right")
        table.add_column("labelled fraction", justify="right")
        table.add_column("mean set size", justify="right")
        table.add_column("noise rate", justify="right")
        noise = summary["noise_rate_per_class"] or [None] * k
        for c in range(k):
            table.add_row(
                class_names[c],
                str(summary["samples_per_class"][c]),
                str(summary["labelled_per_class"][c]),
                _fmt(summary["labelled_fraction_per_class"][c]),
                _fmt(summary["mean_candidate_set_size_per_class"][c], ".2f"),
                _fmt(noise[c]),
            )
        console.print(table)
