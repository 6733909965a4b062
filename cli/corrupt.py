"""`wsl-diff corrupt`: make a synthetic imprecise label file for a dataset's training split.

    wsl-diff corrupt --dataset digits --supervision noisy --noise sym --rate 0.4 --seed 0 --out sym40.npz
    wsl-diff corrupt --dataset data/cifar10-jpeg.tar.gz --subset 100 --supervision partial --q 0.3 --out p.npz

Writes the labels (.npz or .csv, see label_models.io), then prints a summary: the realised noise
rate, the empirical transition matrix, candidate-set sizes and labelled fractions per class.
With --json only one JSON object (the summary plus "out") goes to stdout.

`add_supervision_arguments` and `spec_from_args` are shared with `wsl-diff train`, which builds the
same label set in memory from the same flags.
"""
from __future__ import annotations

import argparse
import json
import sys
from typing import Any

import numpy as np

from label_models.corruption import BUILTIN_CLASS_MAPS, CorruptionSpec
from label_models.labels import SUPERVISION_KINDS
from label_models.transition import NOISE_MODELS

DATASETS: tuple[str, ...] = ("digits",)  # embedded datasets; --dataset also takes paths
DATASET_HELP = (
    "digits (embedded, default), an image folder ROOT with ROOT/train/<class>/*.png|jpg|jpeg "
    "(optional ROOT/test/<class>/; without it a fixed stratified 80/20 split), a .tar.gz/.tgz/.tar of "
    "such a folder, an .npz (images, labels[, test_images, test_labels, class_names]) or a CIFAR-10 "
    "python-pickle folder (data_batch_1..5, test_batch)"
)
_DEFAULTS = CorruptionSpec(supervision="clean")  # one source of truth for the flag defaults


def parse_class_list(text: str) -> tuple[int, ...]:
    """'0,2,4' -> (0, 2, 4); raises ValueError with the expected form otherwise."""
    parts = [p.strip() for p in str(text).split(",")]
    if not parts or any(not p.lstrip("-").isdigit() for p in parts):
        raise ValueError(f"--positive-classes must be comma-separated class indices like 0,2,4; got {text!r}")
    return tuple(int(p) for p in parts)


def _class_list_type(text: str) -> tuple[int, ...]:
    try:
        return parse_class_list(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"--subset takes a whole number of images per class >= 1; got {text!r}")
    return value


def add_dataset_arguments(parser: argparse.ArgumentParser) -> None:
    """Declare --dataset, --subset and --on-bad-image (shared with `wsl-diff train`)."""
    group = parser.add_argument_group("dataset")
    group.add_argument("--dataset", default="digits", metavar="DATASET", help=DATASET_HELP)
    group.add_argument("--subset", type=_positive_int, default=None, metavar="N",
                       help="keep at most N images per class in each split (the first ones; for CPU-sized runs)")
    group.add_argument("--on-bad-image", choices=("raise", "skip"), default="raise",
                       help="an unreadable image file: stop with an error (default) or skip it and warn")


def dataset_tag(dataset: str, class_names: tuple[str, ...]) -> str:
    """The dataset name recorded in label files and used to pick the built-in asymmetric class map:
    "cifar10" for the 10 CIFAR-10 classes, else the embedded name or the path's base name."""
    from wsl_diffusion.data.sources import dataset_tag as tag

    return tag(dataset, class_names)


def print_dataset_notes(train: Any) -> None:
    """Say on stderr how a loaded dataset was split / what was skipped (stdout stays for --json)."""
    for note in getattr(train, "notes", ()):
        print(f"note: {note}", file=sys.stderr)


def add_supervision_arguments(
    parser: argparse.ArgumentParser, *, seed_flag: str = "--seed", require_supervision: bool = True
) -> None:
    """Declare the flags that define a CorruptionSpec.

    seed_flag: the flag name of the corruption seed (``train`` passes e.g. "--label-seed" to keep
    "--seed" for training); its value is always stored as ``args.corruption_seed``.
    """
    group = parser.add_argument_group("imprecise labels")
    group.add_argument(
        "--supervision",
        choices=SUPERVISION_KINDS,
        required=require_supervision,
        default=None,  # when optional, None = "not given" (e.g. `train --labels FILE` instead)
        help="kind of imprecise label to generate",
    )
    group.add_argument("--noise", choices=NOISE_MODELS, default=_DEFAULTS.noise,
                       help="noise model for --supervision noisy (default %(default)s)")
    group.add_argument("--rate", type=float, default=_DEFAULTS.rate,
                       help="noise rate in [0, 1) (default %(default)s)")
    group.add_argument("--class-map", choices=tuple(BUILTIN_CLASS_MAPS), default=None,
                       help="asymmetric class map (default: the dataset's own)")
    group.add_argument("--q", type=float, default=_DEFAULTS.q,
                       help="partial labels: inclusion probability of each wrong class (default %(default)s)")
    group.add_argument("--class-dependent", action="store_true",
                       help="partial labels: circulant 0.7/0.5/0.3 inclusion of the next classes (ignores --q)")
    group.add_argument("--labelled-fraction", type=float, default=_DEFAULTS.labelled_fraction,
                       help="semi: labelled share per class; pu: labelled share of positives (default %(default)s)")
    group.add_argument("--positive-classes", type=_class_list_type, default=_DEFAULTS.positive_classes,
                       help="pu: comma-separated original classes forming the positive class (default 0,2,4,6,8)")
    group.add_argument(seed_flag, dest="corruption_seed", type=int, default=_DEFAULTS.seed,
                       help="seed of the label corruption (default %(default)s)")


def spec_from_args(args: argparse.Namespace) -> CorruptionSpec:
    """Build (and validate) the CorruptionSpec the flags describe; ValueError on bad values."""
    if args.supervision is None:
        raise ValueError(f"no --supervision given; choose one of {', '.join(SUPERVISION_KINDS)}")
    positives = args.positive_classes
    if isinstance(positives, str):  # set programmatically rather than through argparse
        positives = parse_class_list(positives)
    return CorruptionSpec(
        supervision=args.supervision,
        noise=args.noise,
        rate=args.rate,
        q=args.q,
        class_dependent=args.class_dependent,
        labelled_fraction=args.labelled_fraction,
        positive_classes=tuple(positives),
        seed=args.corruption_seed,
        class_map=args.class_map,
    )


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
    from label_models.corruption import corrupt
    from label_models.io import check_writable_label_path, save_labels
    from label_models.summary import summarize

    # Fail on the cheap checks before loading data or corrupting anything.
    out = check_writable_label_path(args.out)
    spec = spec_from_args(args)
    train = _load_train_split(args.dataset, subset=args.subset, on_error=args.on_bad_image)
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


def _load_train_split(name: str, *, subset: int | None = None, on_error: str = "raise"):
    from wsl_diffusion.data.datasets import load_dataset

    return load_dataset(name, subset=subset, on_error=on_error)[0]


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
    from rich.console import Console
    from rich.table import Table

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
