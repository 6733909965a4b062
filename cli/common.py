"""What several `wsl-diff` subcommands share: the dataset and supervision flags, the thread
count, comma-separated lists, and turning library errors into flag-speaking one-liners.

The library names its parameters in backticks in error messages (e.g. "`total_kimg` must be
> 0"); `translate_error` rewrites each backticked name into the flag that sets it.
"""
from __future__ import annotations

import argparse
import os
import re
import sys
from typing import Any

from label_models.corruption import BUILTIN_CLASS_MAPS, CorruptionSpec
from label_models.labels import SUPERVISION_KINDS
from label_models.transition import NOISE_MODELS

from wsl_diffusion.data.sources import ON_ERROR_CHOICES

DATASET_HELP = (
    "digits (embedded, default), an image folder ROOT with ROOT/train/<class>/*.png|jpg|jpeg "
    "(optional ROOT/test/<class>/; without it a fixed stratified 80/20 split), a .tar.gz/.tgz/.tar of "
    "such a folder, an .npz (images, labels[, test_images, test_labels, class_names]) or a CIFAR-10 "
    "python-pickle folder (data_batch_1..5, test_batch)"
)
_DEFAULTS = CorruptionSpec(supervision="clean")  # one source of truth for the flag defaults
# The network presets' names (wsl_diffusion.model.network.PRESETS), spelled here so that
# subcommands which build no network at import time (benchmark, demo) need not import torch for
# their --help; tests/cli/test_cli_common.py checks that the two stay equal.
MODEL_NAMES = ("tiny", "small", "medium", "base")


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
    group.add_argument("--on-bad-image", choices=ON_ERROR_CHOICES, default="raise",
                       help="an unreadable image file: stop with an error (default) or skip it and warn")


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


def add_threads_argument(parser: argparse.ArgumentParser, *, default_help: str = "all cores") -> None:
    parser.add_argument("--threads", type=int, default=None, help=f"torch CPU threads (default: {default_help})")


def add_output_arguments(parser: argparse.ArgumentParser, *, what: str = "the summary") -> None:
    """--quiet (no progress bars) and --json (`what` as one JSON object on stdout): what the
    commands that train say while they run and when they end."""
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    parser.add_argument("--json", action="store_true", help=f"print {what} as one JSON object on stdout")


def set_threads(threads: int | None) -> None:
    """torch.set_num_threads(threads), or all cores when None; ValueError below 1."""
    import torch  # here, not at the top: `wsl-diff corrupt` never needs torch

    if threads is not None and threads < 1:
        raise ValueError(f"--threads must be >= 1; got {threads}")
    torch.set_num_threads(threads or os.cpu_count() or 1)


def parse_positive_ints(text: str, flag: str) -> list[int]:
    """'50,1,10,10' -> [1, 10, 50] (sorted, unique); ValueError naming `flag` otherwise."""
    try:
        values = [int(t) for t in text.split(",") if t.strip()]
    except ValueError:
        values = []
    if not values or any(v < 1 for v in values):
        raise ValueError(f"{flag} must be comma-separated positive integers like 1,10,50; got {text!r}")
    return sorted(set(values))


def given_flags(parser: argparse.ArgumentParser, argv: list[str]) -> set[str]:
    """The destinations of the flags the user actually typed in `argv` (not the defaults): the
    parser is re-run with every default suppressed, so only given options land in the namespace."""
    saved = [(action, action.default) for action in parser._actions]
    saved_defaults = dict(parser._defaults)
    try:
        for action in parser._actions:
            action.default = argparse.SUPPRESS
        parser._defaults.clear()
        namespace = parser.parse_args(argv)
    finally:
        for action, default in saved:
            action.default = default
        parser._defaults.update(saved_defaults)
    return set(vars(namespace))


# Library parameter names whose flag is not simply "--" + the name with dashes.
PARAMETER_FLAGS: dict[str, str] = {
    "total_kimg": "--kimg",
    "run_dir": "--out",
    "out_dir": "--out",
    "corruption_seed": "--label-seed",
    "checkpoint_every_kimg": "--checkpoint-kimg",
}


def flag_for(parameter: str, parser: argparse.ArgumentParser | None = None) -> str:
    """The flag that sets a library parameter: an explicit alias, else the parser's option whose
    destination is the parameter, else --the-parameter."""
    if parameter in PARAMETER_FLAGS:
        return PARAMETER_FLAGS[parameter]
    for action in (parser._actions if parser is not None else ()):
        if action.dest == parameter and action.option_strings:
            return action.option_strings[-1]
    return "--" + parameter.replace("_", "-")


def translate_error(message: str, parser: argparse.ArgumentParser | None = None) -> str:
    """A library message with every `parameter` in backticks rewritten as its flag."""
    return re.sub(r"`([a-z][a-z0-9_]*)`", lambda m: flag_for(m.group(1), parser), message)
